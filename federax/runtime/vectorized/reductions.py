"""Reductions over the client axis: a sum, minimum or maximum of `[n, ...]` arrays.

XLA:CPU (jaxlib 0.10) runs a reduction over a leading axis through its YNNPACK fusion, which is
slow for wide rows: summing 10 clients' 1.2M-parameter updates takes about 30 times as long as
adding the rows one after another, 100 clients' 1M-parameter updates about 40 times
(`python -m benchmarks.client_reductions`; min and max alike). On one CPU device the clients
are therefore combined in a loop, in client order (the sequential runtime's order too);
elsewhere (GPU, or a client axis sharded over devices, where a loop would gather every shard)
the plain reduction stays.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

LOOP_MIN_ROW = 4096
"""Rows (one client's elements) narrower than this reduce in one op: the loop pays off on
wide rows, and a narrow row's reduction is fast either way."""


def _accumulator_dtype(dtype) -> jnp.dtype:
  """float16/bfloat16 rows are added in float32, as XLA's own reductions do."""
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4:
    return jnp.dtype(jnp.float32)
  return dtype


def _by_loop(x: jax.Array, combine: Callable) -> jax.Array:
  acc_dtype = _accumulator_dtype(x.dtype)
  first = x[0].astype(acc_dtype)
  out = jax.lax.fori_loop(1, x.shape[0], lambda i, acc: combine(acc, x[i].astype(acc_dtype)),
                          first)
  return out.astype(x.dtype)


def _use_loop(x: jax.Array, looped: bool) -> bool:
  return looped and x.ndim >= 1 and x.shape[0] > 1 and x.size // x.shape[0] >= LOOP_MIN_ROW


def client_sum(x: jax.Array, looped: bool) -> jax.Array:
  """`x.sum(axis=0)` in `x`'s dtype; `looped`: on one CPU device (see the module docstring)."""
  if _use_loop(x, looped):
    return _by_loop(x, jnp.add)
  return jnp.sum(x, axis=0, dtype=x.dtype)


def client_min(x: jax.Array, looped: bool) -> jax.Array:
  return _by_loop(x, jnp.minimum) if _use_loop(x, looped) else jnp.min(x, axis=0)


def client_max(x: jax.Array, looped: bool) -> jax.Array:
  return _by_loop(x, jnp.maximum) if _use_loop(x, looped) else jnp.max(x, axis=0)


def client_sum_and_extremes(x: jax.Array, looped: bool) -> tuple:
  """`(x.sum(axis=0), x.min(), x.max())`: with `looped`, in one pass over the clients (a
  secure sum checks its values' range as it adds them)."""
  if not _use_loop(x, looped):
    return jnp.sum(x, axis=0, dtype=x.dtype), jnp.min(x), jnp.max(x)

  def step(i, acc):
    total, smallest, largest = acc
    return total + x[i], jnp.minimum(smallest, x[i]), jnp.maximum(largest, x[i])

  total, smallest, largest = jax.lax.fori_loop(1, x.shape[0], step, (x[0], x[0], x[0]))
  return total, jnp.min(smallest), jnp.max(largest)


def client_sum_and_range(x: jax.Array, looped: bool) -> tuple:
  """`(x.sum(axis=0), low, high)` for an integer `x`, where every entry of `x` lies in
  `[0, 2**b - 1]` exactly when `low >= 0` and `high <= 2**b - 1` (any `b`): with `looped`, in
  one pass over the clients that ORs them (a negative entry sets the OR's sign bit, an entry
  above `2**b - 1` a bit from `b` up), and `low`, `high` are the OR's extremes; otherwise
  `x`'s own. The OR is one accumulator where the extremes take two; it is not reduced with
  an OR, which XLA:CPU cannot compile for every shape."""
  if not _use_loop(x, looped):
    return jnp.sum(x, axis=0, dtype=x.dtype), jnp.min(x), jnp.max(x)

  def step(i, acc):
    total, bits = acc
    return total + x[i], bits | x[i]

  total, bits = jax.lax.fori_loop(1, x.shape[0], step, (x[0], x[0]))
  return total, jnp.min(bits), jnp.max(bits)
