"""Deferred bounds: a zeroing or clipping wrapper hands the factory inside it each client's
value as given plus a per-client bound, instead of a bounded copy of every value.

Why: on the vectorized runtime a bounded copy of the clients' values (`[n, d]`) is written out
whenever something other than an elementwise operation reads it: the next wrapper's norm (a
reduction), a weighted mean's dot product. For a 1M-parameter model at 100 clients that is
400 MB written and read again per wrapper. With a deferred bound, each wrapper computes its
norm from the values as given (a zeroed value's norm is 0, whatever its order), and the bound
is applied once, where the innermost factory first reads the values: an elementwise map that
XLA fuses into that factory's own (the weighting of `MeanFactory`), or its own norm (the
clipping scale of `DifferentiallyPrivateFactory`).

A bound is `<bool,float32>` (zeroed, divisor) per client: the bounded value is 0 where `zeroed`,
else `value / divisor` (divisor 1 unless clipped; `x / 1 == x` exactly, so the results are the
bounded copy's, bit for bit). A factory takes deferred bounds through `_deferred_create`; one
that has none gets the bounded values as before (`apply`), so any inner factory composes.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import types as t

BOUND_TYPE = t.StructType([t.TensorType(np.bool_), t.TensorType(np.float32)])
"""`<bool,float32>`: (zeroed, divisor)."""


class Deferred(NamedTuple):
  """An aggregation taking values with deferred bounds: `initialize` is the process's own;
  `step(state, value, bound, weight=None)` (in a federated computation's body, `bound` a
  `{BOUND_TYPE}@CLIENTS`) returns what the process's `next` would on the bounded values.

  `raw_norm`: None, or the order (1.0, 2.0, inf) of a norm of the values as given that the
  aggregation measures: an outer wrapper may compute it in its own map, beside its own norm,
  and pass it as `step(..., weight, given_norm)` (a `{float32}@CLIENTS`), so that each client's
  value is read once for both norms (two maps would be two passes over every client's value).
  """

  initialize: Any
  step: Callable
  raw_norm: Optional[float] = None


def deferred_create(factory: Any, value_type: t.Type, weight_type: Optional[t.Type],
                    clips: bool) -> Optional[Deferred]:
  """`factory`'s aggregation of deferred bounds, or None if it takes none.

  Args:
    clips: whether a bound's divisor may differ from 1 (a clipping wrapper outside); a factory
      that could not stay exact with it (one whose own norm would be the divisor's rounding
      away from the bounded value's) declines.
  """
  create = getattr(factory, "_deferred_create", None)
  return None if create is None else create(value_type, weight_type, clips)


def apply(value: Any, bound: Any, clips: bool) -> Any:
  """One client's bounded value: zeros if zeroed, else `value / divisor` (if `clips`)."""
  zeroed, divisor = bound

  def leaf(x):
    kept = x / divisor.astype(x.dtype) if clips else x
    return jnp.where(zeroed, jnp.zeros_like(x), kept)

  return jax.tree_util.tree_map(leaf, value)


def norm_of(value: Any, bound: Any, clips: bool, norm_fn: Callable[[Any], jax.Array]
            ) -> jax.Array:
  """`norm_fn` of one client's bounded value. Without clipping outside, from the value as
  given (a zeroed value's norm is 0), so the bounded value is not written out for it."""
  if bound is None:
    return norm_fn(value)
  if clips:  # norm(x / d) is not norm(x) / d to the last bit: measured on the bounded value.
    return norm_fn(apply(value, bound, clips))
  return jnp.where(bound[0], jnp.float32(0.0), norm_fn(value))
