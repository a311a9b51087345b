"""`MemoryReleaseManager`: keeps released values in memory, for notebooks and tests."""

from __future__ import annotations

import copy
from collections.abc import Hashable
from typing import Any

import jax

from federax.program.release_manager import ReleaseManager


def _copy(value: Any) -> Any:
  """A copy of `value`'s containers and mutable leaves; JAX arrays are immutable and shared."""
  def copy_leaf(leaf):
    return leaf if isinstance(leaf, jax.Array) else copy.deepcopy(leaf)
  return jax.tree.map(copy_leaf, value)


class MemoryReleaseManager(ReleaseManager):
  """Keeps each released value by key: TFF's `tff.program.MemoryReleaseManager`.

  Values are copied in and out (containers rebuilt, NumPy arrays copied), so later changes to
  a released array, or to what `values` returned, do not change what was released. Releasing a key again replaces its value.

  Example:
    >>> manager = fx.program.MemoryReleaseManager()
    >>> manager.release({"loss": 0.5}, key=1)
    >>> manager.values()
    {1: {'loss': 0.5}}
  """

  def __init__(self):
    self._values: dict[Hashable, Any] = {}

  def release(self, value: Any, key: Hashable) -> None:
    """Stores a copy of `value` under `key` (replacing any value already there)."""
    self._values[key] = _copy(value)

  def values(self) -> dict[Hashable, Any]:
    """Returns a copy of the released values, by key, in the order they were first released."""
    return {key: _copy(value) for key, value in self._values.items()}

  def remove_all(self) -> None:
    """Forgets every released value."""
    self._values.clear()
