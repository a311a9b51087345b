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

_LOOPS = frozenset({"while", "scan"})
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})


@dataclasses.dataclass
class MapRecord:
  """A client map: `outputs` (its result's leaves, `[n, ...]`) are `jax.vmap(fn)(payload)`."""

  fn: Callable
  payload: Any
  outputs: list
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

  def client_leaves(self, i: jax.Array, positions: list[int]) -> list:
    """The leaves at `positions` of client `i`'s result, computed from its arguments."""
    client = jax.tree_util.tree_map(
        lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), self.payload)
    leaves = jax.tree_util.tree_leaves(self.fn(client))
    return [leaves[p] for p in positions]


class MapRecords:
  """The client maps of one traced program, looked up by their result's leaves."""

  def __init__(self):
    self._by_leaf: dict[int, tuple[MapRecord, int]] = {}

  def remember(self, fn: Callable, payload: Any, result: Any) -> Any:
    """Records `result = jax.vmap(fn)(payload)` (a payload without streams or `Shared`
    leaves); returns `result`."""
    outputs = jax.tree_util.tree_leaves(result)
    record = MapRecord(fn, payload, outputs)
    for position, leaf in enumerate(outputs):
      self._by_leaf[id(leaf)] = (record, position)  # `outputs` keeps the leaf, and its id.
    return result

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
