"""The pipeline node protocol: each `Dataset` operation streams its elements or plans them."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Optional

import jax
import numpy as np

from federax.core.datasets import INFINITE_CARDINALITY as INFINITE_CARDINALITY
from federax.core.datasets import UNKNOWN_CARDINALITY as UNKNOWN_CARDINALITY
from federax.core.rows import pad_rows
from federax.data._elements import (Element, RaggedElementsError, empty_from_spec, stack_flat,
                                    to_numpy)
from federax.data._plan import Plan, materialize, plan_elements, read, row_index


def min_limit(a: Optional[int], b: Optional[int]) -> Optional[int]:
  """The smaller of two element limits, where `None` means unbounded."""
  return b if a is None else a if b is None else min(a, b)


class Node:
  """One operation of a pipeline, which can stream or plan its elements.

  `iterate(path)` streams the elements; `plan(path, limit)` vectorizes, returning a `Plan` of
  exactly `min(limit, length)` elements (all if `limit` is None), or None when it cannot.
  `path` holds the epoch numbers of the enclosing repeats, which seed reshuffles.
  """

  path_dependent = False  # Whether the elements depend on the enclosing repeat epochs.

  @property
  def op(self) -> str:
    """The `Dataset` method that made this node, for messages."""
    return f"{type(self).__name__.lower()}()"

  def parents(self) -> list:
    return []

  def cardinality(self) -> int:
    raise NotImplementedError

  def immutable(self) -> bool:
    """Whether every read gives the same elements: the arrays it reads from are read-only
    (`_elements.read_only`) and functions of elements are pure (as `Dataset` asks)."""
    parents = self.parents()
    return bool(parents) and all(p.immutable() for p in parents)

  def length_cause(self) -> str:
    """The operation, nearest the source, that makes the length unknown or infinite."""
    for parent in self.parents():
      if parent.cardinality() < 0:
        return parent.length_cause()
    return self.op

  def finite(self) -> bool:
    return self.cardinality() != INFINITE_CARDINALITY

  def spec(self) -> Any:
    raise NotImplementedError

  def iterate(self, path: tuple) -> Iterator[Element]:
    raise NotImplementedError

  def plan(self, path: tuple, limit: Optional[int]) -> Optional[Plan]:
    # Fallback: stream the elements and stack them into a new source, if they share a shape.
    if limit is None and not self.finite():
      return None
    elements = list(itertools.islice(self.iterate(path), limit))
    if not elements:
      return None
    try:
      leaves, treedef = stack_flat(elements, "")
    except RaggedElementsError:
      return None
    return Plan(leaves, treedef, row_index(len(elements)))

  def elements(self) -> Iterator[Element]:
    plan = self.plan((), None) if self.finite() else None
    return plan_elements(plan) if plan is not None else self.iterate(())

  def stacked(self) -> Any:
    if not self.finite():
      raise ValueError("to_stacked(): the dataset is infinite (repeat() without a count); "
                       "bound it with take(n) or repeat(count).")
    plan = self.plan((), None)
    if plan is not None:
      return materialize(plan)
    elements = list(self.iterate(()))
    if not elements:
      return empty_from_spec(self.spec())
    leaves, treedef = stack_flat(elements, "to_stacked()")
    return treedef.unflatten(leaves)


  def padded_stacked(self) -> tuple[Any, Optional[np.ndarray]]:
    """`(stacked, rows)`: `stacked()` with batches of different sizes padded with zero rows
    to the largest, and their row mask (None when nothing was padded); see
    `Dataset.to_padded_stacked`."""
    if not self.finite():
      return self.stacked(), None  # Raises.
    plan = self.plan((), None)
    if plan is not None:
      if plan.idx.ndim == 2 and plan.mask_key is None and bool(np.any(plan.idx < 0)):
        return read(plan), plan.idx >= 0
      return materialize(plan), None
    elements = list(self.iterate(()))
    if not elements:
      return empty_from_spec(self.spec()), None
    try:
      leaves, treedef = stack_flat(elements, "to_stacked()")
      return treedef.unflatten(leaves), None
    except RaggedElementsError:
      flags = tuple(bool(t.shape) and t.shape[0] is None
                    for t in jax.tree_util.tree_leaves(self.spec()))
      return pad_rows([to_numpy(e) for e in elements], flags, "to_padded_stacked()")


class Unary(Node):
  """An operation on one parent; by default it keeps the parent's length and spec."""

  def __init__(self, parent: Node):
    self.parent = parent
    self.path_dependent = parent.path_dependent

  def parents(self) -> list:
    return [self.parent]

  def cardinality(self) -> int:
    return self.parent.cardinality()

  def finite(self) -> bool:
    return self.parent.finite()

  def spec(self) -> Any:
    return self.parent.spec()
