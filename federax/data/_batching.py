"""The batching nodes: `batch`, `masked_batch` (fixed size plus a mask) and `padded_batch`."""

from __future__ import annotations

from typing import Any, Optional

import jax
import numpy as np

from federax.core.types import TensorType
from federax.data._elements import (leaf_names, map_spec, prepend, stack_flat, to_numpy,
                                          with_key)
from federax.data._node import Node, Unary
from federax.data._plan import Plan, as_rows


class Batch(Unary):
  """Consecutive elements stacked into batches; planned as an `[m, batch_size]` index."""

  def __init__(self, parent: Node, batch_size: int, drop_remainder: bool):
    super().__init__(parent)
    self.batch_size, self.drop = batch_size, drop_remainder

  def cardinality(self) -> int:
    c, b = self.parent.cardinality(), self.batch_size
    return c if c < 0 else c // b if self.drop else -(-c // b)

  def spec(self) -> Any:
    return map_spec(prepend(self.batch_size if self.drop else None), self.parent.spec())

  def _finish(self, buffer: list) -> Any:
    return jax.tree_util.tree_unflatten(*reversed(stack_flat(buffer, "batch()")))

  def iterate(self, path):
    buffer = []
    for element in self.parent.iterate(path):
      buffer.append(element)
      if len(buffer) == self.batch_size:
        yield self._finish(buffer)
        buffer = []
    if buffer and not self.drop:
      yield self._finish(buffer)

  def _batched_rows(self, path, limit) -> Optional[tuple[Plan, np.ndarray]]:
    """The parent as rows, and its index cut into [m, B] with -1 after the end."""
    if limit is None and not self.parent.finite():
      return None
    parent = self.parent.plan(path, None if limit is None else limit * self.batch_size)
    parent = None if parent is None else as_rows(parent)
    if parent is None:
      return None
    b, n = self.batch_size, len(parent)
    full = n // b if self.drop else -(-n // b)
    idx = np.full(full * b, -1, np.int64)
    idx[:min(n, full * b)] = parent.idx[:full * b]
    return parent, idx.reshape(full, b)

  def plan(self, path, limit):
    cut = self._batched_rows(path, limit)
    return None if cut is None else cut[0].replace(idx=cut[1], mask_key=None).head(limit)


class MaskedBatch(Batch):
  """Batches of exactly `batch_size` rows, zero-padded, with a bool mask feature."""

  def __init__(self, parent: Node, batch_size: int, mask_key: str):
    super().__init__(parent, batch_size, drop_remainder=False)
    self.mask_key = mask_key

  def spec(self) -> Any:
    spec = map_spec(prepend(self.batch_size), self.parent.spec())
    return with_key(spec, self.mask_key, TensorType(np.bool_, [self.batch_size]))

  def _finish(self, buffer: list) -> Any:
    leaves, treedef = stack_flat(buffer, "masked_batch()")
    missing = self.batch_size - len(buffer)
    leaves = [np.concatenate([x, np.zeros((missing,) + x.shape[1:], x.dtype)]) for x in leaves]
    mask = np.arange(self.batch_size) < len(buffer)
    return with_key(treedef.unflatten(leaves), self.mask_key, mask)

  def plan(self, path, limit):
    cut = self._batched_rows(path, limit)
    return None if cut is None else cut[0].replace(idx=cut[1], mask_key=self.mask_key).head(limit)


class PaddedBatch(Batch):
  """Batches of elements of varying shapes, each component padded (never planned)."""

  def __init__(self, parent: Node, batch_size: int, padded_shapes: Any, padding_values: Any,
               drop_remainder: bool):
    super().__init__(parent, batch_size, drop_remainder)
    self.padded_shapes, self.padding_values = padded_shapes, padding_values

  def _per_leaf(self, treedef: Any, value: Any, default: Any, is_shape: bool) -> list:
    if value is None:
      return [default] * treedef.num_leaves
    if not is_shape and np.ndim(value) == 0 and not isinstance(value, (tuple, list, dict)):
      return [value] * treedef.num_leaves
    if is_shape and treedef.num_leaves == 1 and treedef.unflatten([0]) == 0:
      return [value]  # A single-array element: padded_shapes is one shape.
    return treedef.flatten_up_to(value)

  def spec(self) -> Any:
    spec = self.parent.spec()
    leaves, treedef = jax.tree_util.tree_flatten(spec)
    shapes = self._per_leaf(treedef, self.padded_shapes, None, is_shape=True)
    out = []
    for t, shape in zip(leaves, shapes):
      if shape is not None and t.shape is not None:
        t = TensorType(t.dtype, [d if p is None or p == -1 else p for d, p in zip(t.shape, shape)])
      out.append(prepend(self.batch_size if self.drop else None)(t))
    return treedef.unflatten(out)

  def _finish(self, buffer: list) -> Any:
    flats = [jax.tree_util.tree_flatten(to_numpy(e)) for e in buffer]
    treedef = flats[0][1]
    if any(td != treedef for _, td in flats):
      raise ValueError(f"padded_batch(): elements have different structures: {treedef}.")
    shapes = self._per_leaf(treedef, self.padded_shapes, None, is_shape=True)
    values = self._per_leaf(treedef, self.padding_values, None, is_shape=False)
    out = []
    for name, column, shape, value in zip(leaf_names(treedef), zip(*(l for l, _ in flats)),
                                          shapes, values):
      if len({c.ndim for c in column}) > 1:
        raise ValueError(f"padded_batch(): {name} has elements of different ranks: "
                         f"{sorted({c.shape for c in column})}.")
      longest = np.max([c.shape for c in column], axis=0) if column[0].ndim else ()
      target = list(longest) if shape is None else [
          m if p is None or p == -1 else p for m, p in zip(longest, shape)]
      if shape is not None and (len(shape) != len(longest)
                                or any(m > t for m, t in zip(longest, target))):
        raise ValueError(f"padded_batch(): {name} has an element of shape "
                         f"{tuple(int(m) for m in longest)} that does not fit padded_shapes "
                         f"{tuple(shape)}.")
      dtype = np.result_type(*column)
      batch = np.full((len(column), *target), np.zeros((), dtype)[()] if value is None else value,
                      dtype)
      for i, c in enumerate(column):
        batch[(i, *map(slice, c.shape))] = c
      out.append(batch)
    return treedef.unflatten(out)

  plan = Node.plan  # Per element: elements of varying shapes cannot share an index plan.
