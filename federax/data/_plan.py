"""Index plans: a pipeline's output as stacked source arrays plus an integer index into their rows.

Element i of a plan is `source[idx[i]]`; after a batch, `idx[i, :]` are the rows of batch i, with
-1 for padding. The vectorized operations only rewrite `idx`, so materializing the usual pipeline
is one NumPy gather.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Optional

import jax
import numpy as np

from federax.data._elements import Element, RaggedElementsError, with_key


@dataclasses.dataclass(frozen=True)
class Plan:
  """Element i is `source[idx[i]]`, or for a batched plan the rows `source[idx[i, :]]`."""

  leaves: list  # The flat source arrays, each [N, ...].
  treedef: Any
  idx: np.ndarray  # int64 [m] (rows) or [m, B] (batches of rows; -1 marks padding).
  mask_key: Optional[str] = None  # Batched: None trims -1 rows (ragged), else pads + mask.
  # The leaves are this plan's alone and already its elements in order: leaf row
  # `i * idx.shape[1] + j` is row j of element i, zero where idx is -1 (`_batched_map`). Reading
  # the plan stacked then takes them as they are; any new index (`replace`) clears it.
  laid_out: bool = False

  def __len__(self) -> int:
    return len(self.idx)

  def replace(self, **changes: Any) -> Plan:
    return dataclasses.replace(self, **{"laid_out": False, **changes})

  def head(self, limit: Optional[int]) -> Plan:
    return self if limit is None else self.replace(idx=self.idx[:limit])


def row_index(n: int) -> np.ndarray:
  """The identity index `[0, n)` as int64."""
  return np.arange(n, dtype=np.int64)


def gather(plan: Plan, idx: np.ndarray) -> Any:
  """The source rows `idx` as one element (-1 rows zeroed; a masked plan adds the mask)."""
  valid = idx >= 0
  if bool(np.all(valid)):
    leaves = [leaf[idx] for leaf in plan.leaves]
  else:  # Padding rows read row 0, then are zeroed in place (one copy of the data, not two).
    safe = np.where(valid, idx, 0)
    leaves = [leaf[safe] for leaf in plan.leaves]
    for leaf in leaves:
      leaf[~valid] = np.zeros((), leaf.dtype)  # "" for strings.
  tree = plan.treedef.unflatten(leaves)
  return tree if plan.mask_key is None else with_key(tree, plan.mask_key, valid)


def read(plan: Plan) -> Any:
  """All the plan's elements stacked, padding rows zeroed: one gather, or none if laid out."""
  if not plan.laid_out:
    return gather(plan, plan.idx)
  shape = plan.idx.shape
  return plan.treedef.unflatten([x.reshape(shape + x.shape[1:]) for x in plan.leaves])


def suffix_padded(plan: Plan) -> bool:
  """Whether each batch of a batched plan is its real rows, then only padding (-1) rows."""
  valid = plan.idx >= 0
  counts = valid.sum(axis=1)
  return bool(np.all(valid == (np.arange(valid.shape[1])[None, :] < counts[:, None])))


def plan_elements(plan: Plan) -> Iterator[Element]:
  """The plan's elements one by one (unmasked batches drop their -1 rows)."""
  trim = plan.mask_key is None and plan.idx.ndim == 2
  for row in plan.idx:
    yield gather(plan, row[row >= 0] if trim else row)


def materialize(plan: Plan) -> Any:
  """All the plan's elements stacked, in one gather; raises RaggedElementsError if ragged."""
  if plan.mask_key is None and plan.idx.ndim == 2 and bool(np.any(plan.idx < 0)):
    sizes = sorted(set((plan.idx >= 0).sum(axis=1).tolist()))
    raise RaggedElementsError(
        f"to_stacked(): batches differ in size ({plan.idx.shape[1]} rows and {sizes[0]} rows, "
        "a short batch), so they cannot be stacked. Use masked_batch(batch_size) to "
        "pad and mask it, or batch(batch_size, drop_remainder=True) to drop it.")
  return read(plan)


def as_rows(plan: Plan) -> Optional[Plan]:
  """The same elements as an unbatched plan (materializing batches), or None if ragged."""
  if plan.idx.ndim == 1:
    return plan
  try:
    leaves, treedef = jax.tree_util.tree_flatten(materialize(plan))
  except RaggedElementsError:
    return None
  return Plan(leaves, treedef, row_index(len(plan)))


def concat_plans(plans: list[Plan]) -> Optional[Plan]:
  """One plan of the plans' elements in turn, or None when they cannot share one source."""
  nonempty = [p for p in plans if len(p)] or plans[:1]
  first = nonempty[0]
  if all(p.leaves is first.leaves and p.mask_key == first.mask_key
         and p.idx.shape[1:] == first.idx.shape[1:] for p in nonempty):
    return first.replace(idx=np.concatenate([p.idx for p in nonempty]))
  rows = [as_rows(p) for p in nonempty]
  if any(r is None for r in rows):  # Batches of different sizes: keep them batched.
    return _concat_sources(nonempty)
  if any(r.treedef != rows[0].treedef for r in rows):
    return None
  for column in zip(*(r.leaves for r in rows)):
    if len({(c.dtype, c.shape[1:]) for c in column}) > 1:
      return None
  offsets = np.cumsum([0] + [len(r.leaves[0]) for r in rows[:-1]])
  leaves = [np.concatenate(column) for column in zip(*(r.leaves for r in rows))]
  idx = np.concatenate([r.idx + o for r, o in zip(rows, offsets)])
  return Plan(leaves, rows[0].treedef, idx)


def _concat_sources(plans: list[Plan]) -> Optional[Plan]:
  """Plans of one form over different sources as one plan over their concatenated sources."""
  first = plans[0]
  if any(p.treedef != first.treedef or p.mask_key != first.mask_key
         or p.idx.shape[1:] != first.idx.shape[1:] for p in plans):
    return None
  columns = list(zip(*(p.leaves for p in plans)))
  if any(len({(c.dtype, c.shape[1:]) for c in column}) > 1 for column in columns):
    return None
  offsets = np.cumsum([0] + [len(p.leaves[0]) for p in plans[:-1]])
  idx = np.concatenate([np.where(p.idx >= 0, p.idx + o, -1) for p, o in zip(plans, offsets)])
  return Plan([np.concatenate(c) for c in columns], first.treedef, idx, first.mask_key)


def distinct_elements(plan: Plan) -> tuple[list, np.ndarray]:
  """The plan's distinct elements, and for each element of the plan its position among them.

  A function of the elements (`map`, `filter`) then runs once per distinct source row; the
  returned index spreads its results back over the plan.
  """
  if plan.idx.ndim == 1:
    rows, inverse = np.unique(plan.idx, return_inverse=True)
    return [gather(plan, r) for r in rows], inverse.reshape(-1).astype(np.int64)
  return _batches(plan), row_index(len(plan))


def _batches(plan: Plan) -> list:
  """A batched plan's elements as `plan_elements` gives them, from one gather: each a view of
  it (a gather per batch costs more than the copy for batches of tens of rows)."""
  counts = (plan.idx >= 0).sum(axis=1)
  if plan.mask_key is None and not suffix_padded(plan):  # Padding inside a batch: trim each one.
    return list(plan_elements(plan))
  leaves, treedef = jax.tree_util.tree_flatten(gather(plan, plan.idx))
  if plan.mask_key is not None:
    return [treedef.unflatten([x[i] for x in leaves]) for i in range(len(plan))]
  return [treedef.unflatten([x[i, :n] for x in leaves]) for i, n in enumerate(counts.tolist())]
