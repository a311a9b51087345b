"""The Gaussian sum query on JAX (tensorflow_privacy's `GaussianSumQuery`): its state, the
global-L2 clipping of one record, and the noise added once to the sum, from a key in the state."""

from __future__ import annotations

import collections
from typing import Any

import jax
import jax.numpy as jnp


def initial_state(l2_norm_clip: Any, stddev: Any, noise_key: Any) -> collections.OrderedDict:
  """`<l2_norm_clip=float32,stddev=float32,noise_key=uint32[2]>`: tfp's state and the key the
  next round's noise is drawn from (split every round)."""
  return collections.OrderedDict(l2_norm_clip=jnp.asarray(l2_norm_clip, jnp.float32),
                                 stddev=jnp.asarray(stddev, jnp.float32),
                                 noise_key=jnp.asarray(noise_key, jnp.uint32))


def global_norm(value: Any) -> jax.Array:
  """The L2 norm of all of `value`'s tensors as one vector, in float32."""
  leaves = [jnp.asarray(x).astype(jnp.float32) for x in jax.tree_util.tree_leaves(value)]
  return jnp.sqrt(sum((jnp.sum(jnp.square(x)) for x in leaves), jnp.float32(0.0)))


def scale_of_norm(norm: Any, l2_norm_clip: Any) -> jax.Array:
  """`clip / max(norm, clip)`: the factor clipping multiplies a value of L2 norm `norm` by."""
  return l2_norm_clip / jnp.maximum(norm, l2_norm_clip)


def clip_scale(value: Any, l2_norm_clip: Any) -> tuple[jax.Array, jax.Array]:
  """`(clip / max(norm, clip), norm)`: the factor `clip` multiplies `value` by, in float32."""
  norm = global_norm(value)
  return scale_of_norm(norm, l2_norm_clip), norm


def scaled(value: Any, scale: jax.Array) -> Any:
  """`value * scale`, each tensor in its dtype."""
  return jax.tree_util.tree_map(lambda x: x * scale.astype(x.dtype), value)


def clip(value: Any, l2_norm_clip: Any) -> tuple[Any, jax.Array]:
  """`(value * clip / max(norm, clip), norm)`: `tf.clip_by_global_norm`'s projection.

  A value with a NaN or infinite entry has a NaN or infinite norm and comes out with NaN
  entries (it reaches the aggregate as NaN, as in TFF).
  """
  scale, norm = clip_scale(value, l2_norm_clip)
  return scaled(value, scale), norm


def normal(key: jax.Array, shape: tuple, stddev: Any, dtype: Any = jnp.float32) -> jax.Array:
  """`normal(key, shape) * stddev` drawn in float32 and cast to `dtype`.

  The draw is rounded before it is scaled: fused with the scaling, XLA may fold the normal's
  last multiplication into it (a rounding fewer) in one program and not in another, and the
  same key would give other bits on the two runtimes.
  """
  draw = jax.lax.optimization_barrier(jax.random.normal(key, shape, jnp.float32))
  return (draw * jnp.asarray(stddev, jnp.float32)).astype(dtype)


def noised(total: Any, state: Any) -> tuple[Any, collections.OrderedDict]:
  """`total` plus Gaussian noise of `state.stddev`, and the state with its key advanced.

  The state's key is split into the next state's key and this round's; tensor `j` of `total`
  (in `jax.tree_util` order) gets `normal(fold_in(round_key, j)) * stddev`, drawn in float32
  and cast to the tensor's dtype (tfp's `random_normal_initializer` then `cast`). The same key
  gives the same noise on every runtime.
  """
  next_key, round_key = jax.random.split(jnp.asarray(state["noise_key"], jnp.uint32))
  leaves, tree = jax.tree_util.tree_flatten(total)
  stddev = jnp.asarray(state["stddev"], jnp.float32)
  out = []
  for j, x in enumerate(leaves):
    x = jnp.asarray(x)
    out.append(x + normal(jax.random.fold_in(round_key, j), x.shape, stddev, x.dtype))
  new_state = initial_state(state["l2_norm_clip"], stddev, next_key)
  return jax.tree_util.tree_unflatten(tree, out), new_state

