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
