"""Several reductions of one client's tensor in one read of it.

On XLA:CPU, `jnp.sum(x)`, `jnp.max(x)` and `jnp.min(x)` of one client's row each read the row
on its own, and a sum or a float max first copies a row sliced out of the clients' `[n, ...]`
values. One variadic `lax.reduce` computes them together, reading the row in place: the L2 and
L-inf norms of 100 clients' 800K-element rows take 21 ms on 2 cores as one reduction, 34 ms as
two run one client after another, 63 ms as two vmapped (`python -m benchmarks.aggregator_pieces`:
`norms_one_pass`, `norms_loop`, `norms_vmapped`).

The tensor is reduced as rows of at most `ROW` elements, then the rows' results are reduced
again: a float sum then accumulates at most `ROW` values in one running sum (as accurate as
`jnp.sum`'s pairwise sum on 1M-element tensors; one running sum over all of them lost about
100 times more).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

ROW = 2048
"""The most elements of a tensor that one partial result accumulates in turn."""


def row_length(size: int) -> int:
  """The largest divisor of `size` up to `ROW`: a tensor of `size` elements is reduced as
  rows of it."""
  return next(c for c in range(min(size, ROW), 0, -1) if size % c == 0)


def reduce(operands: Sequence[jax.Array], identities: Sequence, combines: Sequence[Callable]
           ) -> tuple:
  """`combines[k]` over every element of `operands[k]`, for every `k` (arrays of one shape,
  each the elementwise function of a client's tensor to reduce), in one pass; `identities[k]`
  for an empty tensor. Each combine must be associative and commutative (an addition, a
  maximum, a minimum)."""
  size = operands[0].size
  if size == 0:
    return tuple(jnp.asarray(i, x.dtype) for i, x in zip(identities, operands))
  rows = [x.reshape(-1, row_length(size)) for x in operands]
  inits = tuple(jnp.asarray(i, x.dtype) for i, x in zip(identities, operands))
  combine = lambda a, b: tuple(c(p, q) for c, p, q in zip(combines, a, b))  # noqa: E731
  parts = jax.lax.reduce(tuple(rows), inits, combine, (1,))
  return jax.lax.reduce(parts, inits, combine, (0,))


def extremes(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`(jnp.min(x), jnp.max(x))` in one pass (for an empty `x`: the dtype's largest and
  smallest values, +-inf for floats). A NaN entry makes both NaN."""
  if jnp.issubdtype(x.dtype, jnp.floating):
    high, low = jnp.inf, -jnp.inf
  else:
    info = jnp.iinfo(x.dtype)
    high, low = info.max, info.min
  return reduce([x, x], [high, low], [jnp.minimum, jnp.maximum])
