"""Rewrites of a traced program into operations XLA:CPU runs fast inside rolled loops.

Convolutions: JAX differentiates a convolution into convolutions with permuted dimension
numbers: the kernel gradient contracts over the examples, so its input is labelled 'f01b'.
In straight-line code XLA:CPU rewrites such convolutions into its canonical layout and runs them
with Eigen; inside a rolled loop (`while`, `scan`, `fori_loop`) it does not, and emits a naive
loop nest, about 30x slower (benchmarks/results/learning_rounds.md: 344 ms against 11.8 ms per
batch for the EMNIST CNN's second convolution). `for_xla_cpu(fn)` writes each
such convolution as transposes around a convolution in the canonical layout, (batch,
spatial..., feature) x (spatial..., in, out): the same sums, in a form XLA:CPU runs fast in
loops too.

Max pooling's gradient: JAX's is XLA's select-and-scatter, 4.8 ms of a 24 ms EMNIST CNN step
on this CPU. Where the windows tile the input (window = stride, no padding), `for_xla_cpu`
computes it as a reshape, a first-maximum one-hot and a multiply: the same values (ties go to
the first element of the window, as XLA's `ge` selection does).

Threefry draws of several dimensions (a dropout mask): XLA:CPU compiles the hash of a draw
shaped (20, 12, 12, 64) (the EMNIST CNN's conv dropout) into a loop nest whose optimization
took 0.6-0.8 of the 3.3-3.5 CPU seconds of W2's round compile (docs/performance.md).
`for_xla_cpu` draws such bits flat and reshapes them: the same bits, since Threefry counts by
flat index, in a one-dimensional kernel compiled in a fraction of the time.

A client's rows (`ClientRows`): a client loop (`lax.map` over the clients) slices each client's
data out of the cohort's `[n, ...]` arrays before its body runs, and a sequence loop in the
body (`fori_loop` over the client's batches) then carries that slice as an operand: XLA:CPU
copies it, the client's whole dataset, for every client of every round (20 MB a round for the
seed tutorial's 10 writers, about 1.5 ms of a 7 ms round). `run_for_xla_cpu` takes a client's
arguments as `ClientRows` (the cohort's array and the client's index) and reads them where they
are used: a `while` loop gets the cohort's array and reads the client's row inside its body,
where XLA fuses the read into the batch's; any other operation reads the row first, as before.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import numpy as np
from jax import lax
from jax.extend import core as jex

_CONV = jex.primitives.conv_general_dilated_p
_JIT = jex.primitives.jit_p
_SCATTER = "select_and_scatter_add"
_RANDOM_BITS = jex.primitives.random_bits_p
_WHILE = jex.primitives.while_p


class ClientRows:
  """Client `i`'s row of a cohort's `[n, ...]` array, read where `run_for_xla_cpu` uses it
  (not a pytree: a leaf of the client's arguments)."""

  __slots__ = ("cohort", "i")

  def __init__(self, cohort: jax.Array, i: jax.Array):
    self.cohort, self.i = cohort, i

  def read(self) -> jax.Array:
    return lax.dynamic_index_in_dim(self.cohort, self.i, keepdims=False)


def _row_read(x: Any) -> Any:
  return x.read() if isinstance(x, ClientRows) else x


def _canonical_specs(ndim: int) -> lax.ConvDimensionNumbers:
  spatial = tuple(range(1, ndim - 1))
  return lax.ConvDimensionNumbers(lhs_spec=(0, ndim - 1) + spatial,
                                  rhs_spec=(ndim - 1, ndim - 2) + tuple(range(ndim - 2)),
                                  out_spec=(0, ndim - 1) + spatial)


def _is_canonical(params: dict, ndim: int) -> bool:
  return tuple(params["dimension_numbers"]) == tuple(_canonical_specs(ndim))


def _canonical_conv(lhs, rhs, **params):
  """The convolution `params` describe, computed in the canonical layout."""
  lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
  ndim = len(lhs_spec)
  lhs = lax.transpose(lhs, (lhs_spec[0],) + tuple(lhs_spec[2:]) + (lhs_spec[1],))
  rhs = lax.transpose(rhs, tuple(rhs_spec[2:]) + (rhs_spec[1], rhs_spec[0]))
  out = _CONV.bind(lhs, rhs, **dict(params, dimension_numbers=_canonical_specs(ndim)))
  # Canonical output axes are (batch, spatial..., feature); put each where out_spec wants it.
  where = [0] * ndim
  where[out_spec[0]], where[out_spec[1]] = 0, ndim - 1
  for i, axis in enumerate(out_spec[2:]):
    where[axis] = 1 + i
  return lax.transpose(out, tuple(where))


def _tiled_max_pool_gradient(source, operand, *, window_dimensions, **_):
  """select-and-scatter-add of a max pool whose windows tile `operand`."""
  tiles = [n // k for n, k in zip(operand.shape, window_dimensions)]
  split = [d for pair in zip(tiles, window_dimensions) for d in pair]
  rank = operand.ndim
  to_end = [2 * i for i in range(rank)] + [2 * i + 1 for i in range(rank)]
  windows = lax.transpose(operand.reshape(split), to_end).reshape(
      tiles + [int(np.prod(window_dimensions))])
  first_max = jax.nn.one_hot(jax.numpy.argmax(windows, axis=-1), windows.shape[-1],
                             dtype=source.dtype)
  spread = (first_max * source[..., None]).reshape(tiles + list(window_dimensions))
  back = np.argsort(to_end)
  return lax.transpose(spread, tuple(back)).reshape(operand.shape)


def _flat_random_bits(keys, *, bit_width: int, shape: tuple):
  """`random_bits` of one key, drawn flat and reshaped to `shape`."""
  flat = _RANDOM_BITS.bind(keys, bit_width=bit_width, shape=(int(np.prod(shape)),))
  return flat.reshape(shape)


def _threefry_draw_of_dimensions(eqn) -> bool:
  """A `random_bits` draw of several dimensions from one Threefry key (flat, the same bits)."""
  key = eqn.invars[0].aval
  # A key of another implementation (rbg's XLA bit generator) may draw by shape.
  return len(eqn.params["shape"]) > 1 and key.shape == () and str(key.dtype) == "key<fry>"


def _tiles(eqn) -> bool:
  p = eqn.params
  shape = eqn.invars[1].aval.shape
  return (str(p["select_prim"]) == "ge" and tuple(p["window_dimensions"]) == tuple(
      p["window_strides"]) and all(lo == hi == 0 for lo, hi in p["padding"])
          and all(n % k == 0 for n, k in zip(shape, p["window_dimensions"])))


def _rewritable(eqn) -> bool:
  if eqn.primitive.name == _SCATTER:
    return _tiles(eqn)
  if eqn.primitive is _RANDOM_BITS:
    return _threefry_draw_of_dimensions(eqn)
  return (eqn.primitive is _CONV and eqn.params["batch_group_count"] == 1
          and not _is_canonical(eqn.params, len(eqn.params["dimension_numbers"].lhs_spec)))


def needs_rewrite(jaxpr) -> bool:
  """Whether `jaxpr` (or a `jit` inside it) has a convolution outside the canonical layout,
  a tiled max pool's gradient or a Threefry draw of several dimensions."""
  for eqn in jaxpr.eqns:
    if _rewritable(eqn):
      return True
    if eqn.primitive is _JIT and needs_rewrite(eqn.params["jaxpr"].jaxpr):
      return True
  return False


def _evaluate(jaxpr, consts, *args) -> list:
  """Runs `jaxpr` with the rewrites, `jit` calls inlined (so theirs are rewritten too)."""
  env: dict = {}

  def read(v):
    return v.val if isinstance(v, jex.Literal) else env[v]

  env.update(zip(jaxpr.constvars, consts))
  env.update(zip(jaxpr.invars, args))
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    if any(isinstance(x, ClientRows) for x in invals):
      if eqn.primitive is _WHILE:
        env.update(zip(eqn.outvars, _while_reading_rows(eqn.params, invals)))
        continue
      if eqn.primitive is _JIT:  # Inlined, so that its loops read the rows too.
        inner = eqn.params["jaxpr"]
        env.update(zip(eqn.outvars, _evaluate(inner.jaxpr, inner.consts, *invals)))
        continue
      invals = [_row_read(x) for x in invals]
      for v, x in zip(eqn.invars, invals):  # Read once: the later uses take this read.
        if not isinstance(v, jex.Literal):
          env[v] = x
    if _rewritable(eqn):
      outs = [_REWRITES[eqn.primitive.name](*invals, **eqn.params)]
    elif eqn.primitive is _JIT and needs_rewrite(eqn.params["jaxpr"].jaxpr):
      inner = eqn.params["jaxpr"]
      outs = _evaluate(inner.jaxpr, inner.consts, *invals)
    else:
      with eqn.ctx.manager:
        outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
      if not eqn.primitive.multiple_results:
        outs = [outs]
    env.update(zip(eqn.outvars, outs))
  return [_row_read(read(v)) for v in jaxpr.outvars]  # An argument returned as it is.


def _while_reading_rows(params: dict, invals: list) -> list:
  """A `while` whose constants hold `ClientRows`, traced again with each row read inside the
  condition and the body (the cohort's array is the loop's operand, not a copy of the row)."""
  cn, bn = params["cond_nconsts"], params["body_nconsts"]
  cond_consts, body_consts = invals[:cn], invals[cn:cn + bn]
  init = [_row_read(x) for x in invals[cn + bn:]]
  cond_jaxpr, body_jaxpr = params["cond_jaxpr"], params["body_jaxpr"]
  cond = lambda carry: _evaluate(cond_jaxpr.jaxpr, cond_jaxpr.consts, *cond_consts, *carry)[0]
  body = lambda carry: _evaluate(body_jaxpr.jaxpr, body_jaxpr.consts, *body_consts, *carry)
  return list(lax.while_loop(cond, body, init))


_REWRITES = {_SCATTER: _tiled_max_pool_gradient, _CONV.name: _canonical_conv,
             _RANDOM_BITS.name: _flat_random_bits}


def for_xla_cpu(fn: Callable) -> Callable:
  """`fn` with its convolutions in XLA:CPU's canonical layout, its tiled max pools' gradients
  as reshapes and its Threefry draws flat (same values). Traces `fn` once per call, so call it
  while tracing (inside `jit`)."""

  @functools.wraps(fn)
  def wrapped(*args: Any):
    return run_for_xla_cpu(jax.make_jaxpr(fn, return_shape=True)(*args), *args)

  return wrapped


def run_for_xla_cpu(traced, *args: Any):
  """Runs `traced = jax.make_jaxpr(fn, return_shape=True)(...)` on `args` (arguments of the
  traced shapes) with the rewrites: `for_xla_cpu(fn)(*args)` for a trace made beforehand."""
  closed, out_shape = traced
  outs = _evaluate(closed.jaxpr, closed.consts, *jax.tree_util.tree_leaves(args))
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), outs)
