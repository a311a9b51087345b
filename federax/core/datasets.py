"""TEMPORARY (replaced by the layers branch's version at merge)."""
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class StackableDataset(Protocol):
  @property
  def element_spec(self) -> Any: ...
  def cardinality(self) -> int: ...
  def to_stacked(self) -> Any: ...
