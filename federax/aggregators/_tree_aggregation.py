"""Tree aggregation of Gaussian noise on JAX (tensorflow_privacy's `TreeAggregator` and
`EfficientTreeAggregator`): the noise of a cumulative sum over rounds from a binary tree whose
nodes hold independent draws, so `t` rounds' sum carries O(log t) nodes' noise.

Round `t` (0-based) adds leaf `t` to the tree; the cumulative noise of rounds `0..t` is the sum
of the nodes that cover them, one per set bit `d` of `t + 1` (the node over `2^d` leaves).
The plain tree (Dwork et al. 2010) draws one fresh node per round. The efficient tree
(Honaker 2015) builds each node from its own draw plus half its two children,
`node = fresh + (left + right) / 2`, and reads a level-`d` node weighted `1 / (2 - 2^-d)`,
which lowers the cumulative noise's variance from `popcount(t + 1) sigma^2` to
`sum_d sigma^2 / (2 - 2^-d)` over the same bits.

The state has fixed shapes, as a compiled program needs: `level_buffer` holds one node per
level (`float32[depth, *shape]` for each tensor; levels whose bit in `step` is clear hold stale
values and are never read), `step` the number of leaves so far. A tree holds at most
`2^depth - 1` leaves. tensorflow_privacy draws the next leaf ahead (its state holds it); here
each round draws its own leaf, which gives the same distribution.
"""

from __future__ import annotations

import collections
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from federax.aggregators import _gaussian


def max_leaves(depth: int) -> int:
  """The most rounds a tree of `depth` levels holds: `2^depth - 1`."""
  return 2**depth - 1


def initial_state(shapes: Sequence[tuple], depth: int, stddev: Any,
                  noise_key: Any) -> collections.OrderedDict:
  """`<level_buffer=[float32[depth, *shape]...],step=int32,value_generator_state=<noise_key=
  uint32[2],stddev=float32>>`: an empty tree (tfp's `TreeState`, its generator's seeds a key)."""
  return collections.OrderedDict(
      level_buffer=[jnp.zeros((depth,) + tuple(shape), jnp.float32) for shape in shapes],
      step=jnp.int32(0),
      value_generator_state=collections.OrderedDict(
          noise_key=jnp.asarray(noise_key, jnp.uint32),
          stddev=jnp.asarray(stddev, jnp.float32)))


def restarted(state: Any) -> collections.OrderedDict:
  """An empty tree whose noise continues the old one's key stream (tfp's `reset_state`)."""
  return collections.OrderedDict(level_buffer=state["level_buffer"], step=jnp.int32(0),
                                 value_generator_state=state["value_generator_state"])


def level_weights(depth: int, efficient: bool) -> np.ndarray:
  """`float32[depth]`: a node's weight in the cumulative noise, `1 / (2 - 2^-d)` for the
  efficient tree (its nodes' variance is `(2 - 2^-d) sigma^2`), else 1."""
  if not efficient:
    return np.ones(depth, np.float32)
  return (1.0 / (2.0 - 0.5**np.arange(depth))).astype(np.float32)


def _draw(round_key: jax.Array, node: Any, shapes: Sequence[tuple], stddev: jax.Array) -> list:
  """The fresh noise of this round's `node`-th draw: tensor `i` from
  `fold_in(fold_in(round_key, node), i)`, float32, standard deviation `stddev`."""
  node_key = jax.random.fold_in(round_key, node)
  return [_gaussian.normal(jax.random.fold_in(node_key, i), shape, stddev)
          for i, shape in enumerate(shapes)]


def _bit(x: jax.Array, d: Any) -> jax.Array:
  return jnp.bitwise_and(jnp.right_shift(x, d), 1) == 1


def cumsum_and_update(state: Any, efficient: bool) -> tuple[list, collections.OrderedDict]:
  """Adds this round's leaf: `(the cumulative noise of all rounds so far, the next state)`.

  The state's key is split into the next state's key and this round's; the round's draws are
  numbered `0, 1, ...` (the leaf, then one per node it completes in the efficient tree). The
  caller restarts the tree before `step` reaches `2^depth - 1`.
  """
  buffers = state["level_buffer"]
  depth = buffers[0].shape[0]
  shapes = [b.shape[1:] for b in buffers]
  generator = state["value_generator_state"]
  next_key, round_key = jax.random.split(jnp.asarray(generator["noise_key"], jnp.uint32))
  stddev = jnp.asarray(generator["stddev"], jnp.float32)
  step = jnp.asarray(state["step"], jnp.int32)
  leaf = _draw(round_key, 0, shapes, stddev)
  if efficient:
    # The new leaf completes the nodes of the levels whose bits are set in `step` (its left
    # siblings' subtrees): merge upwards, each parent its own draw plus half its children.
    def merging(carry):
      level, _ = carry
      return (level < depth - 1) & _bit(step, level)

    def merge(carry):
      level, node = carry
      fresh = _draw(round_key, level + 1, shapes, stddev)
      left = [jax.lax.dynamic_index_in_dim(b, level, keepdims=False) for b in buffers]
      return level + 1, [f + 0.5 * (l + n) for f, l, n in zip(fresh, left, node)]

    level, node = jax.lax.while_loop(merging, merge, (jnp.int32(0), leaf))
  else:
    # The plain tree's node is one fresh draw, at the level of `step`'s lowest clear bit.
    level = jax.lax.population_count(jnp.bitwise_xor(step, step + 1)) - 1
    node = leaf
  buffers = [jax.lax.dynamic_update_index_in_dim(b, n, level, 0) for b, n in zip(buffers, node)]
  step = step + 1
  # The nodes covering leaves 0..step-1: one per set bit of `step`.
  present = _bit(step, jnp.arange(depth, dtype=jnp.int32)).astype(jnp.float32)
  weights = present * jnp.asarray(level_weights(depth, efficient))
  cumsum = [jnp.tensordot(weights, b, axes=1) for b in buffers]
  return cumsum, collections.OrderedDict(
      level_buffer=buffers, step=step,
      value_generator_state=collections.OrderedDict(noise_key=next_key, stddev=stddev))


def restart_flag(count: jax.Array, period: Optional[int], warmup: int) -> jax.Array:
  """tfp's `PeriodicRoundRestartIndicator` after `count` rounds: `count % period == warmup`."""
  if period is None:
    return jnp.asarray(False)
  return jnp.equal(jnp.remainder(count, period), warmup)


def tree_sizes(rounds: int, period: Optional[int], warmup: int, depth: int) -> list[int]:
  """The rounds each tree holds over the first `rounds` rounds, as the process restarts them:
  after round `c` (1-based) when `c % period == warmup`, and when a tree is full."""
  sizes, step = [], 0
  for count in range(1, rounds + 1):
    step += 1
    if (period is not None and count % period == warmup) or step == max_leaves(depth):
      sizes.append(step)
      step = 0
  if step:
    sizes.append(step)
  return sizes
