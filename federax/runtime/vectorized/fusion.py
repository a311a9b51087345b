"""Client maps recomputed inside the loop over clients of the reduction that consumes them.

On one CPU device a reduction over the clients is a loop (`reductions`). When its input is
the output of a `federated_map`, the map's `[n, ...]` result is written in full before the
loop reads it back, row by row: for a secure sum of a 1M-parameter model's 32-bit encodings,
split into four 8-bit limbs, that is 1.7 GB at 100 clients, written and read once each. XLA
does not move a producer into a loop that consumes it, so the runtime does: it remembers each
map's function and arguments (`MapRecord`), and a reduction whose every input leaf comes from
one remembered map calls the function on client `i` inside its loop instead of reading row
`i`. The vmapped result then has no user left and XLA drops it.

Only cheap maps are recomputed: no matrix product, convolution or loop in the client's step,
so recomputing is never dearer than reading (an encoding, a scaling, a clip). Each client's
values are computed by the same function as the vmapped map computes them, row by row:
integers are the same; floats are the same operations, which XLA may fuse differently (a
float sum may differ in its last bit).

A recomputed map's own wide arguments (`LOOP_MIN_ROW` elements a client or more) that an
elementwise map made are recomputed in turn: a weighted mean's weighting, then a secure sum's
encoding, run from the clients' updates in the sum's loop, and the weighted updates (400 MB for
a 1M-parameter model at 100 clients) are neither written nor read. Only elementwise maps, as
their results may have other readers: recomputing a reduction (a norm), a transform (an FFT)
or random draws would repeat work, not save a read. Narrow arguments (a client's weight, its
norm) are read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Optional

import jax
import numpy as np
from jax.extend import core as jex
from jax.extend.core import jaxprs_in_params

from federax.runtime.vectorized import streaming
from federax.runtime.vectorized.plan import step_cost
from federax.runtime.vectorized.reductions import LOOP_MIN_ROW

_LOOPS = frozenset({"while", "scan"})
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})
# What a map recomputed for the map it feeds may do (`MapRecord._recomputed`): elementwise
# arithmetic and shape changes, each element computed from its own inputs.
_ELEMENTWISE = frozenset({
    "add", "sub", "mul", "div", "rem", "neg", "abs", "sign", "max", "min", "pow", "integer_pow",
    "square", "sqrt", "rsqrt", "exp", "log", "log1p", "expm1", "tanh", "logistic", "floor",
    "ceil", "round", "is_finite", "nextafter", "clamp", "select_n", "convert_element_type",
    "bitcast_convert_type", "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "xor",
    "shift_left", "shift_right_logical", "shift_right_arithmetic", "broadcast_in_dim",
    "reshape", "squeeze", "expand_dims", "copy", "copy_p", "stop_gradient"})


@dataclasses.dataclass
class MapRecord:
  """A client map: `outputs` (its result's leaves, `[n, ...]`) are `jax.vmap(fn)(payload)`."""

  fn: Callable
  payload: Any
  outputs: list
  # leaf -> (the map that made it, its position in that map's result), or None.
  producer: Callable[[Any], Optional[tuple["MapRecord", int]]] = lambda leaf: None
  index: int = 0  # Maps traced before this one, in its program.
  _step: Any = None  # One client's step, traced once (`step`).

  def step(self) -> Any:
    """The jaxpr of one client's step."""
    if self._step is None:
      self._step = jax.make_jaxpr(self.fn)(streaming.one_client(self.payload)).jaxpr
    return self._step

  def cheap(self) -> bool:
    """Whether a client's step has no matrix product, convolution or loop."""
    cost = step_cost(self.step())
    return cost.flops == 0 and not cost.convolves and not _has_loop(self.step())

  def bounds(self) -> list:
    """For each leaf of the map's result, the largest value it can hold when the map computes
    it as a bitwise AND with a non-negative constant (`x & 255`: at most 255, at least 0), else
    None: a bound proven from the client's step, not from its values."""
    return [_mask_of(self.step(), v) for v in self.step().outvars]

  def producers(self) -> list:
    """The maps recomputed for a client with this one, this one's own arguments' first."""
    found: dict = {}  # id -> record, in order
    for leaf in jax.tree_util.tree_leaves(self.payload):
      producer = self._recomputed(leaf)
      if producer is not None:
        for record in [producer[0]] + producer[0].producers():
          found.setdefault(id(record), record)
    return list(found.values())

  def _recomputed(self, leaf) -> Optional[tuple[MapRecord, int]]:
    """(the map to recompute `leaf` with for a client, its position), or None to read it: a
    wide argument made by an elementwise map (see the module's docstring)."""
    if not leaf.ndim or leaf.size // leaf.shape[0] < LOOP_MIN_ROW:
      return None
    found = self.producer(leaf)
    # A map passing an argument through is remembered as its maker: only earlier maps count.
    if found is None or found[0].index >= self.index or not _elementwise(found[0].step()):
      return None
    return found

  def client_leaves(self, i: jax.Array, positions: list[int]) -> list:
    """The leaves at `positions` of client `i`'s result, computed from its arguments: each
    argument read at row `i`, or recomputed for client `i` by the map that made it (see the
    module's docstring)."""
    leaves, treedef = jax.tree_util.tree_flatten(self.payload)
    client = [None] * len(leaves)
    wanted: dict = {}  # id(producer) -> (producer, [(argument index, position)])
    for j, leaf in enumerate(leaves):
      found = self._recomputed(leaf)
      if found is None:
        client[j] = jax.lax.dynamic_index_in_dim(leaf, i, keepdims=False)
      else:
        wanted.setdefault(id(found[0]), (found[0], []))[1].append((j, found[1]))
    for producer, pairs in wanted.values():  # One call of each producer for all its leaves.
      for (j, _), value in zip(pairs, producer.client_leaves(i, [p for _, p in pairs])):
        client[j] = value
    result = jax.tree_util.tree_leaves(self.fn(jax.tree_util.tree_unflatten(treedef, client)))
    return [result[p] for p in positions]


class MapRecords:
  """The client maps of one traced program, looked up by their result's leaves."""

  def __init__(self):
    self._by_leaf: dict[int, tuple[MapRecord, int]] = {}
    self._count = 0

  def remember(self, fn: Callable, payload: Any, result: Any) -> Any:
    """Records `result = jax.vmap(fn)(payload)` (a payload without streams or `Shared`
    leaves); returns `result`."""
    outputs = jax.tree_util.tree_leaves(result)
    self._count += 1
    record = MapRecord(fn, payload, outputs, self.producer, self._count)
    for position, leaf in enumerate(outputs):
      self._by_leaf[id(leaf)] = (record, position)  # `outputs` keeps the leaf, and its id.
    return result

  def producer(self, leaf) -> Optional[tuple[MapRecord, int]]:
    """(the map whose result holds `leaf`, its position there), or None."""
    found = self._by_leaf.get(id(leaf))
    return found if found is not None and found[0].outputs[found[1]] is leaf else None

  def source(self, leaves: list) -> Optional[tuple[MapRecord, list[int]]]:
    """(the cheap map all of `leaves` come from, their positions in its result), or None."""
    found = [self._by_leaf.get(id(leaf)) for leaf in leaves]
    if not leaves or any(f is None for f in found):
      return None
    record = found[0][0]
    if any(r is not record or r.outputs[p] is not leaf
           for (r, p), leaf in zip(found, leaves)):
      return None
    if not record.cheap():
      return None
    return record, [p for _, p in found]


def _mask_of(jaxpr, var) -> Optional[int]:
  """The constant `m >= 0` when `var` is `x & m` in `jaxpr` (looking through calls), else None."""
  if not isinstance(var, jex.Var):
    return None
  for eqn in jaxpr.eqns:
    if not any(out is var for out in eqn.outvars):
      continue
    if eqn.primitive.name == "and":
      masks = [int(np.asarray(x.val)) for x in eqn.invars
               if isinstance(x, jex.Literal) and np.ndim(x.val) == 0
               and np.issubdtype(np.asarray(x.val).dtype, np.integer)]
      return max(masks) if masks and max(masks) >= 0 else None
    subs = list(jaxprs_in_params(eqn.params))
    if eqn.primitive.name in _CALLS and len(subs) == 1:  # A call: its result is its jaxpr's.
      position = next(j for j, out in enumerate(eqn.outvars) if out is var)
      return _mask_of(subs[0], subs[0].outvars[position])
    return None  # Anything else (a conditional's branches, a loop) proves nothing here.
  return None


def _has_loop(jaxpr) -> bool:
  return any(eqn.primitive.name in _LOOPS or any(_has_loop(sub) for sub in
                                                  jaxprs_in_params(eqn.params))
             for eqn in jaxpr.eqns)


def _elementwise(jaxpr) -> bool:
  """Whether `jaxpr` (and every jaxpr it calls) holds only `_ELEMENTWISE` operations."""
  for eqn in jaxpr.eqns:
    subs = list(jaxprs_in_params(eqn.params))
    if eqn.primitive.name in _CALLS and len(subs) == 1:
      if not _elementwise(subs[0]):
        return False
    elif eqn.primitive.name not in _ELEMENTWISE:
      return False
  return True
