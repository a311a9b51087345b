"""The concatenation node: datasets one after another, optionally created only when read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from federax.data._elements import merge_specs
from federax.data._node import INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, Node
from federax.data._plan import concat_plans


class Concat(Node):
  """Datasets one after another.

  A part is a node, or a zero-argument function returning one, called only when the
  concatenation is read (`Dataset.concatenate_lazily`, for all the clients of a ClientData).
  """

  def __init__(self, parts: Sequence[Any]):
    self.parts = tuple(parts)
    self.lazy = any(not isinstance(p, Node) for p in self.parts)
    self.path_dependent = self.lazy or any(p.path_dependent for p in self.parts)

  @classmethod
  def of(cls, nodes: Sequence[Node]) -> Concat:
    """The concatenation of `nodes`, flattening nested concatenations into one."""
    parts = []
    for node in nodes:
      parts.extend(node.parts if isinstance(node, Concat) else [node])
    return cls(parts)

  @property
  def op(self) -> str:
    return "concatenate_lazily()" if self.lazy else "concatenate()"

  def parents(self) -> list:
    return [p for p in self.parts if isinstance(p, Node)]

  def immutable(self) -> bool:
    return not self.lazy and super().immutable()  # A lazy part makes new datasets each read.

  def _nodes(self) -> Iterator[Node]:
    for part in self.parts:
      yield part if isinstance(part, Node) else part()

  def cardinality(self) -> int:
    if self.lazy:
      return UNKNOWN_CARDINALITY
    counts = [p.cardinality() for p in self.parts]
    if INFINITE_CARDINALITY in counts:
      return INFINITE_CARDINALITY
    return UNKNOWN_CARDINALITY if UNKNOWN_CARDINALITY in counts else sum(counts)

  def finite(self) -> bool:
    return self.lazy or all(p.finite() for p in self.parts)

  def spec(self) -> Any:
    if self.lazy:
      return next(self._nodes()).spec()
    specs = [p.spec() for p in self.parts]
    merged = specs[0]
    for spec in specs[1:]:
      merged = merge_specs(merged, spec, "concatenate()")
    return merged

  def iterate(self, path):
    for node in self._nodes():
      yield from node.iterate(path)

  def plan(self, path, limit):
    plans, total = [], 0
    for node in self._nodes():
      if limit is None and not node.finite():
        return None
      one = node.plan(path, None if limit is None else limit - total)
      if one is None:
        return None
      plans.append(one)
      total += len(one)
      if limit is not None and total >= limit:
        break
    return concat_plans(plans) if plans else None
