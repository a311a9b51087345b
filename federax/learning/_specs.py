"""Abstract values for federax types: what `jax.eval_shape`/`make_jaxpr` need to trace a model."""

from __future__ import annotations

from typing import Any

import jax
from jax.extend import core as jex_core
import numpy as np

from federax.core import types as t
from federax.core.type_conversions import make_container


def abstract_value(type_spec: t.Type, unknown: int = 1) -> Any:
  """A pytree of `jax.ShapeDtypeStruct` in `type_spec`'s containers; `?` dims become `unknown`."""
  if isinstance(type_spec, t.TensorType):
    shape = tuple(unknown if d is None else d for d in type_spec.shape)
    return jax.ShapeDtypeStruct(shape, type_spec.dtype)
  if isinstance(type_spec, t.StructType):
    return make_container(tuple(abstract_value(c, unknown) for c in type_spec.children()),
                          type_spec)
  raise TypeError(f"expected a tensor or struct type, got {type_spec}")


def uses_argument(fn, *args, index: int = 0) -> bool:
  """Whether `fn(*args)` reads its `index`-th argument (e.g. a PRNG key), by tracing it once."""
  closed = jax.make_jaxpr(fn)(*args)
  jaxpr = closed.jaxpr
  leaves_before = sum(len(jax.tree_util.tree_leaves(a)) for a in args[:index])
  count = len(jax.tree_util.tree_leaves(args[index]))
  wanted = set(jaxpr.invars[leaves_before:leaves_before + count])
  used = {v for eqn in jaxpr.eqns for v in eqn.invars if not isinstance(v, jex_core.Literal)}
  used |= {v for v in jaxpr.outvars if not isinstance(v, jex_core.Literal)}
  return bool(wanted & used)


KEY = jax.ShapeDtypeStruct((2,), np.uint32)


def initial_key(seed: int) -> np.ndarray:
  """`jax.random.PRNGKey(seed)` as a uint32[2] NumPy array, made on the host for the default
  threefry keys and a seed in [0, 2**31): `[0, seed]`. Called eagerly, JAX's version compiles
  two small XLA programs at a process's start-up (benchmarks/results/first_round.md).

  Example:
    >>> initial_key(42)
    array([ 0, 42], dtype=uint32)
  """
  if (jax.config.jax_default_prng_impl == "threefry2x32" and isinstance(seed, (int, np.integer))
      and 0 <= seed < 2**31):
    return np.array([0, seed], np.uint32)
  return np.asarray(jax.random.PRNGKey(seed), np.uint32)  # Other keys or seeds: JAX's own.
