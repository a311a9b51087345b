"""The element-wise and positional nodes: repeat, map, filter, take, skip, enumerate, unbatch."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Optional

import jax
import numpy as np

from federax.core.types import TensorType
from federax.data._elements import (RaggedElementsError, call_with_element, map_spec,
                                          merge_specs, spec_of, stack_flat, to_numpy)
from federax.data._node import (INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, Node, Unary,
                                      min_limit)
from federax.data._batched_map import Outputs
from federax.data._plan import (Plan, concat_plans, distinct_elements, materialize,
                                      plan_elements, row_index, suffix_padded)


class Repeat(Unary):
  """The parent `count` times (`None`: forever); epoch e runs with path `path + (e,)`."""

  def __init__(self, parent: Node, count: Optional[int]):
    super().__init__(parent)
    self.count = count

  @property
  def op(self) -> str:
    return "repeat() without a count" if self.count is None else f"repeat({self.count})"

  def cardinality(self) -> int:
    c = self.parent.cardinality()
    if self.count == 0 or c == 0:
      return 0
    if c == INFINITE_CARDINALITY or (self.count is None and c > 0):
      return INFINITE_CARDINALITY
    return UNKNOWN_CARDINALITY if c == UNKNOWN_CARDINALITY else c * self.count

  def finite(self) -> bool:
    return self.cardinality() == 0 or (self.count is not None and self.parent.finite())

  def _epochs(self):
    return itertools.count() if self.count is None else range(self.count)

  def iterate(self, path):
    for epoch in self._epochs():
      empty = True
      for element in self.parent.iterate(path + (epoch,)):
        empty = False
        yield element
      if empty:  # Repeating an empty dataset is empty, not an endless loop.
        return

  def plan(self, path, limit):
    if limit is None and not self.finite():
      return None
    if not self.parent.finite():
      return self.parent.plan(path + (0,), limit)
    if not self.parent.path_dependent:  # Every epoch is the same: tile one plan.
      one = self.parent.plan(path + (0,), None)
      if one is None or not len(one):
        return one
      reps = self.count if limit is None else min(self.count or limit, -(-limit // len(one)))
      return one.replace(idx=np.concatenate([one.idx] * reps)).head(limit)
    plans, total = [], 0
    for epoch in self._epochs():
      one = self.parent.plan(path + (epoch,), None if limit is None else limit - total)
      if one is None:
        return None
      if not len(one):
        break
      plans.append(one)
      total += len(one)
      if limit is not None and total >= limit:
        break
    if not plans:
      return self.parent.plan(path + (0,), 0)
    merged = concat_plans(plans)
    return None if merged is None else merged.head(limit)


class Map(Unary):
  """`fn` applied to each element; planned by calling `fn` once per distinct source row."""

  def __init__(self, parent: Node, fn: Callable[..., Any]):
    super().__init__(parent)
    self.fn = fn
    self._spec = None

  def spec(self) -> Any:
    # Nodes are immutable, so the first element's structure is found once, not on every call.
    if self._spec is None:
      self._spec = self._infer_spec()
    return self._spec

  def _infer_spec(self) -> Any:
    parent = self.parent.spec()
    source = next(self.parent.iterate(()), None)
    if source is None:  # Empty: try the function on a zero element of the parent's spec.
      try:
        return spec_of(to_numpy(call_with_element(self.fn, map_spec(
            lambda t: np.zeros([d or 0 for d in (t.shape or ())], t.dtype), parent))))
      except Exception as e:
        raise ValueError("map(): cannot infer the element_spec of a mapped empty dataset; "
                         f"calling the function on a zero element failed: {e!r}.") from e
    spec = spec_of(to_numpy(call_with_element(self.fn, source)))
    if not any(t.shape is not None and None in t.shape for t in jax.tree_util.tree_leaves(parent)):
      return spec
    # A dimension that varies upstream (a batch's, after batch()) is read from the first element
    # only: call the function again with those dimensions one longer, and leave unknown what
    # changes, so the short last batch still fits `element_spec`.
    try:
      grown = spec_of(to_numpy(call_with_element(self.fn, _grow_unknown(source, parent))))
      return merge_specs(spec, grown, "map()")
    except Exception:  # pylint: disable=broad-except
      return spec  # The function needs the first element's sizes: nothing more can be told.

  def iterate(self, path):
    for element in self.parent.iterate(path):
      yield to_numpy(call_with_element(self.fn, element))

  def plan(self, path, limit):
    parent = self.parent.plan(path, limit)
    if parent is None or not len(parent):
      return None
    if parent.idx.ndim == 2 and (parent.mask_key is not None or suffix_padded(parent)):
      batches = Outputs(self.fn, parent)  # Call fn once per batch.
      laid_out = batches.laid_out()
      if laid_out is not None:
        return laid_out
      outputs, idx = batches.trees, row_index(len(parent))
    else:
      inputs, idx = distinct_elements(parent)  # Call fn once per distinct source row.
      outputs = [to_numpy(call_with_element(self.fn, x)) for x in inputs]
    try:
      leaves, treedef = stack_flat(outputs, "map()")
    except RaggedElementsError:
      return _batches_of_rows(outputs, idx)
    return Plan(leaves, treedef, idx)


def _batches_of_rows(outputs: list, idx: np.ndarray) -> Optional[Plan]:
  """Outputs that differ only in their number of rows (`batch(20).map(fn)`'s short last
  batch) as a batched plan, as `batch()` plans them: their rows concatenated into one source,
  and an `[m, B]` index with -1 after each element's rows. None if they differ otherwise."""
  flats = [jax.tree_util.tree_flatten(o) for o in outputs]
  treedef = flats[0][1]
  counts = []
  for leaves, other in flats:
    sizes = {x.shape[0] if x.ndim else None for x in leaves}
    if other != treedef or len(sizes) != 1 or None in sizes:
      return None
    counts.append(sizes.pop())
  columns = list(zip(*(leaves for leaves, _ in flats)))
  if any(len({(x.dtype, x.shape[1:]) for x in column}) > 1 for column in columns):
    return None
  counts = np.asarray(counts)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  width = np.arange(max(counts.max(initial=0), 1))
  rows = np.where(width[None, :] < counts[:, None], starts[:, None] + width[None, :], -1)
  return Plan([np.concatenate(c) for c in columns], treedef, rows[idx])


def _grow_unknown(element: Any, spec: Any) -> Any:
  """`element` with every dimension its spec leaves unknown made one longer (the last entry
  repeated, so the values stay ones the function has seen)."""
  def grow(x, t):
    x = np.asarray(x)
    for axis, d in enumerate(t.shape or ()):
      if d is None:
        n = x.shape[axis]
        x = (np.take(x, list(range(n)) + [n - 1], axis=axis) if n else
             np.zeros(x.shape[:axis] + (1,) + x.shape[axis + 1:], x.dtype))
    return x
  return jax.tree_util.tree_map(grow, element, spec)


class Filter(Unary):
  """The elements for which `predicate` is true; planned by masking the index."""

  def __init__(self, parent: Node, predicate: Callable[..., Any]):
    super().__init__(parent)
    self.predicate = predicate

  def cardinality(self) -> int:
    c = self.parent.cardinality()
    return 0 if c == 0 else UNKNOWN_CARDINALITY

  def _keep(self, element: Any) -> bool:
    return bool(np.asarray(call_with_element(self.predicate, element)))

  def iterate(self, path):
    return (x for x in self.parent.iterate(path) if self._keep(x))

  def plan(self, path, limit):
    if not self.parent.finite():
      return None
    parent = self.parent.plan(path, None)
    if parent is None:
      return None
    inputs, which = distinct_elements(parent)
    keep = np.array([self._keep(x) for x in inputs], bool)[which]
    return parent.replace(idx=parent.idx[keep]).head(limit)


class Take(Unary):
  """The first `count` elements."""

  def __init__(self, parent: Node, count: int):
    super().__init__(parent)
    self.count = count

  def cardinality(self) -> int:
    c = self.parent.cardinality()
    return self.count if c == INFINITE_CARDINALITY else c if c < 0 else min(c, self.count)

  def finite(self) -> bool:
    return True

  def iterate(self, path):
    return itertools.islice(self.parent.iterate(path), self.count)

  def plan(self, path, limit):
    return self.parent.plan(path, min_limit(self.count, limit))


class Skip(Unary):
  """All but the first `count` elements."""

  def __init__(self, parent: Node, count: int):
    super().__init__(parent)
    self.count = count

  def cardinality(self) -> int:
    c = self.parent.cardinality()
    return c if c < 0 else max(c - self.count, 0)

  def iterate(self, path):
    return itertools.islice(self.parent.iterate(path), self.count, None)

  def plan(self, path, limit):
    if limit is None and not self.parent.finite():
      return None
    parent = self.parent.plan(path, None if limit is None else limit + self.count)
    return None if parent is None else parent.replace(idx=parent.idx[self.count:])


class Enumerate(Unary):
  """`(int64 counter, element)` pairs, counting from `start`."""

  def __init__(self, parent: Node, start: int):
    super().__init__(parent)
    self.start = start

  def spec(self) -> Any:
    return (TensorType(np.int64), self.parent.spec())

  def iterate(self, path):
    for i, element in enumerate(self.parent.iterate(path), self.start):
      yield (np.int64(i), element)

  def plan(self, path, limit):
    parent = self.parent.plan(path, limit)
    if parent is None:
      return None
    try:
      elements = materialize(parent)
    except RaggedElementsError:
      return None
    counter = np.arange(self.start, self.start + len(parent), dtype=np.int64)
    leaves, treedef = jax.tree_util.tree_flatten((counter, elements))
    return Plan(leaves, treedef, row_index(len(parent)))


class Unbatch(Unary):
  """Each element split along its leading axis; planned by flattening a batched index."""

  def cardinality(self) -> int:
    c = self.parent.cardinality()
    if c < 0:
      return c
    dims = {t.shape[0] if t.shape else None for t in jax.tree_util.tree_leaves(self.parent.spec())}
    return c * dims.pop() if len(dims) == 1 and None not in dims else UNKNOWN_CARDINALITY

  def spec(self) -> Any:
    return map_spec(lambda t: TensorType(t.dtype, None if t.shape is None else t.shape[1:]),
                    self.parent.spec())

  def iterate(self, path):
    for element in self.parent.iterate(path):
      leaves, treedef = jax.tree_util.tree_flatten(element)
      lengths = {np.shape(x)[0] for x in leaves}
      if len(lengths) > 1:
        raise ValueError(f"unbatch(): the components of an element have different leading "
                         f"dimensions {sorted(lengths)}; they must share one.")
      for i in range(lengths.pop()):
        yield treedef.unflatten([x[i] for x in leaves])

  def plan(self, path, limit):
    if not self.parent.finite():
      return None
    parent = self.parent.plan(path, None)
    if parent is None:
      return None
    if parent.idx.ndim == 2 and parent.mask_key is None:  # Rows of batches: flatten the index.
      idx = parent.idx.reshape(-1)
      return parent.replace(idx=idx[idx >= 0]).head(limit)
    try:
      leaves, treedef = jax.tree_util.tree_flatten(materialize(parent))
    except RaggedElementsError:
      return None
    if len({x.shape[:2] for x in leaves}) > 1:
      return None
    leaves = [x.reshape((-1,) + x.shape[2:]) for x in leaves]
    return Plan(leaves, treedef, row_index(len(leaves[0]))).head(limit)


class Cache(Unary):
  """The parent's elements computed once and kept, as tf.data's `cache()`.

  Like tf.data, the first pass is what is kept: a shuffle below the cache is not redone for
  later epochs of an enclosing `repeat`, and a random `map` below it is not re-run.
  """

  def __init__(self, parent: Node):
    super().__init__(parent)
    self.path_dependent = False  # Every epoch sees the kept first pass.
    self._plans: dict = {}
    self._stacked = None
    self._padded = None

  def plan(self, path, limit):
    del path  # The first pass is kept for every epoch, as tf.data does.
    if limit not in self._plans:
      self._plans[limit] = self.parent.plan((), limit)
    return self._plans[limit]

  def iterate(self, path):
    plan = self.plan(path, None) if self.finite() else None
    return plan_elements(plan) if plan is not None else self.parent.iterate(())

  def stacked(self) -> Any:
    if self._stacked is None:
      self._stacked = _read_only(super().stacked())
    return self._stacked

  def padded_stacked(self):
    if self._padded is None:
      stacked, rows = super().padded_stacked()
      self._padded = (self.stacked(), None) if rows is None else _read_only((stacked, rows))
    return self._padded


def _read_only(tree: Any) -> Any:
  for leaf in jax.tree_util.tree_leaves(tree):
    if isinstance(leaf, np.ndarray):
      leaf.flags.writeable = False  # Shared by every later call: nobody may change it.
  return tree
