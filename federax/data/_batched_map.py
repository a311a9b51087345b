"""`map` over a batched plan: the function once per batch, its results laid out without copies.

`batch(20).map(fn)`, TFF's way, calls `fn` once per batch, every time the pipeline is read.
The batches are read in one gather into a private `[m, B, ...]` array per feature (padding rows
zeroed) and `fn` gets views of it. A result that is still that memory (`fn` reshaped or selected
a feature, as `batch_format_fn` does) is kept where it lies: the gathered array, reinterpreted,
is already every batch's result stacked and padded. Other results are written once into one
preallocated array per feature. Either way the plan is `laid_out`, so reading it stacked or
padded takes those arrays as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import jax
import numpy as np

from federax.data._elements import call_with_element
from federax.data._plan import Plan, gather, row_index


class Outputs:
  """`fn`'s results on every batch of a plan, flat, and how to lay them out.

  Attributes:
    trees: each batch's result as `to_numpy` gives it (for the general path).
  """

  def __init__(self, fn: Callable[..., Any], plan: Plan, gathered: Any = None):
    """`gathered`: the plan's batches as `gather(plan, plan.idx)` gives them, if read already
    (`_cohort` gathers them into a cohort's arrays)."""
    valid = plan.idx >= 0
    self.counts = valid.sum(axis=1)
    self.width = plan.idx.shape[1]
    masked = plan.mask_key is not None
    if gathered is None:
      gathered = gather(plan, plan.idx)
    inputs, in_def = jax.tree_util.tree_flatten(gathered)
    self.inputs = inputs
    self.flats: list[list] = []
    self.treedefs: list = []
    counts = self.counts.tolist()
    for i, n in enumerate(counts):
      views = [x[i] for x in inputs] if masked else [x[i, :n] for x in inputs]
      leaves, treedef = jax.tree_util.tree_flatten(
          call_with_element(fn, in_def.unflatten(views)))
      self.flats.append([np.asarray(x) for x in leaves])
      self.treedefs.append(treedef)
    # A masked batch hands `fn` all its rows, padding included.
    self.rows = [self.width] * len(counts) if masked else counts

  @property
  def trees(self) -> list:
    return [d.unflatten(f) for d, f in zip(self.treedefs, self.flats)]

  def laid_out(self) -> Optional[Plan]:
    """The results as a laid-out plan, as `map()` plans them; None for the general path
    (structures or shapes that `stack_flat` or `_batches_of_rows` must judge)."""
    treedef = self.treedefs[0]
    if any(d != treedef for d in self.treedefs):
      return None
    m = len(self.flats)
    columns = list(zip(*self.flats)) if treedef.num_leaves else []
    if all(len({c.shape for c in column}) == 1 for column in columns):  # Stackable.
      leaves = [self._in_place(column, full=True) for column in columns]
      leaves = [np.stack(c) if x is None else x for x, c in zip(leaves, columns)]
      return Plan(leaves, treedef, row_index(m), laid_out=True)
    counts = []
    for flat in self.flats:
      sizes = {x.shape[0] if x.ndim else None for x in flat}
      if len(sizes) != 1 or None in sizes:
        return None
      counts.append(sizes.pop())
    if any(len({(x.dtype, x.shape[1:]) for x in column}) > 1 for column in columns):
      return None
    counts = np.asarray(counts)
    width = max(counts.max(initial=0), 1)
    # In place, a result's rows are `width` apart: only when the largest batch is a full one.
    in_place = [self._in_place(column, full=False) if width == self.width else None
                for column in columns]
    leaves = [x.reshape((m * width,) + x.shape[2:]) if x is not None else
              _fill(column, width) for x, column in zip(in_place, columns)]
    grid = np.arange(m * width, dtype=np.int64).reshape(m, width)
    idx = np.where(np.arange(width)[None, :] < counts[:, None], grid, -1)
    return Plan(leaves, treedef, idx, laid_out=True)

  def _in_place(self, column: tuple, full: bool) -> Optional[np.ndarray]:
    """The `[m, B, ...]` array that the column's results already lie in, or None.

    Result i lies in place if it is C-contiguous, starts where batch i of a gathered input
    starts, has that batch's rows (all B with `full`), and rows of the input's size in bytes:
    then the input, reinterpreted as rows of the result's shape and dtype, holds every result
    at its place and zeros in the padding rows.
    """
    first = column[0]
    if first.ndim == 0 or not first.flags.c_contiguous or first.dtype.hasobject:
      return None
    start = first.ctypes.data
    base = next((x for x in self.inputs if x.ndim >= 2 and x.ctypes.data == start), None)
    if base is None or not base.flags.c_contiguous or base.dtype.hasobject:
      return None
    m = base.shape[0]
    row = first.dtype.itemsize * int(np.prod(first.shape[1:], dtype=np.int64))
    if base.nbytes != m * self.width * row:
      return None
    owner = base if base.base is None else base.base
    tail, dtype = first.shape[1:], first.dtype
    strides = (row,) + first.strides[1:]  # C order: rows `row` bytes apart.
    rows = [self.width] * m if full else self.rows
    for x, n in zip(column, rows):  # The cheap tests first: most results fail one or none.
      if (x.base is not owner or x.shape != (n,) + tail or x.strides != strides
          or x.dtype != dtype):
        return None
    stride = self.width * row  # Results `width` rows apart.
    if any(x.ctypes.data != start + i * stride for i, x in enumerate(column)):
      return None
    return base.reshape(-1).view(np.uint8).view(dtype).reshape((m, self.width) + tail)


def _fill(column: tuple, width: int) -> np.ndarray:
  """Results of different row counts written into one zero-padded `[m * width, ...]` array."""
  first = column[0]
  out = np.zeros((len(column), width) + first.shape[1:], first.dtype)
  for o, x in zip(out, column):
    o[:x.shape[0]] = x
  return out.reshape((len(column) * width,) + first.shape[1:])
