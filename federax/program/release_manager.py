"""`ReleaseManager`: where a program's values (metrics, models) go; filtering and grouping ones."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from federax.core.structure import Struct
from federax.program import _flatten


class ReleaseManager(abc.ABC):
  """Releases values from a program: TFF's `tff.program.ReleaseManager`, synchronous.

  Each implementation documents the values and keys it takes; the managers here take a
  structure of metrics and an integer `key`, the round (step) the value belongs to.

  Example:
    >>> class PrintReleaseManager(fx.program.ReleaseManager):
    ...   def release(self, value, key):
    ...     print(key, fx.program.flatten(value))
  """

  @abc.abstractmethod
  def release(self, value: Any, key: Any) -> None:
    """Releases `value` under `key`."""

  def flush(self) -> None:
    """Makes every value released so far durable; `run_training_process` calls it before each
    checkpoint, so what a resumed run does not release again is already on disk."""


class NotFilterableError(ValueError):
  """A filter would remove some but not all fields of a namedtuple, dataclass or pytree node."""


_FILTERED = object()  # Marks a subtree that the filter removed entirely.


class FilteringReleaseManager(ReleaseManager):
  """Releases only the leaves that `filter_fn` keeps: TFF's `tff.program.FilteringReleaseManager`.

  `filter_fn(path) -> bool` sees each leaf's path: a tuple of mapping keys, field names and
  positions, e.g. `('client_work', 'train', 'loss')` (a value that is a single leaf has path
  `()`). Containers left empty are dropped; if nothing is left, nothing is released. Mappings,
  lists, tuples and `fx.Struct`s can lose elements (a list's later elements move up); the fields
  of a namedtuple, dataclass or other pytree node cannot, and losing only some of them raises
  `NotFilterableError`.

  Example:
    >>> csv = fx.program.CSVFileReleaseManager("metrics.csv")
    >>> losses = fx.program.FilteringReleaseManager(csv, lambda path: path[-1] == "loss")
    >>> losses.release({"train": {"loss": 0.5, "accuracy": 0.9}}, key=1)  # Only train/loss.
  """

  def __init__(self, release_manager: ReleaseManager,
               filter_fn: Callable[[tuple[str | int, ...]], bool]):
    if not isinstance(release_manager, ReleaseManager):
      raise TypeError(f"FilteringReleaseManager: `release_manager` must be a ReleaseManager, got "
                      f"{type(release_manager).__name__}.")
    if not callable(filter_fn):
      raise TypeError(f"FilteringReleaseManager: `filter_fn` must be callable, got "
                      f"{type(filter_fn).__name__}.")
    self._release_manager = release_manager
    self._filter_fn = filter_fn

  def flush(self) -> None:
    self._release_manager.flush()

  def release(self, value: Any, key: Any) -> None:
    """Releases what `filter_fn` keeps of `value` to the wrapped manager (nothing if nothing).

    Raises:
      NotFilterableError: if only some fields of a namedtuple, dataclass or pytree are kept.
    """
    filtered = self._filter(value, ())
    if filtered is not _FILTERED:
      self._release_manager.release(filtered, key)

  def _filter(self, node: Any, path: tuple[str | int, ...]) -> Any:
    kids = _flatten.children(node)
    if kids is None:
      return node if self._filter_fn(path) else _FILTERED
    kept = [(k, v) for k, child in kids
            if (v := self._filter(child, path + (k,))) is not _FILTERED]
    if not kept:
      return _FILTERED
    if isinstance(node, Struct):
      return Struct((k if isinstance(k, str) else None, v) for k, v in kept)
    if isinstance(node, Mapping):
      try:
        return type(node)(kept)
      except TypeError:
        return dict(kept)
    if isinstance(node, (list, tuple)) and not _flatten.is_namedtuple(node):
      return type(node)(v for _, v in kept)
    if len(kept) != len(kids):
      dropped = [str(k) for k, _ in kids if k not in dict(kept)]
      raise NotFilterableError(
          f"FilteringReleaseManager: the filter keeps only some fields of the "
          f"{type(node).__qualname__} at {path}, which cannot lose fields; dropped: "
          f"{', '.join(dropped)}. Keep all or none of them, or release a dict instead.")
    values = [v for _, v in kept]
    if _flatten.is_namedtuple(node):
      return type(node)(*values)
    if dataclasses.is_dataclass(node):
      return dataclasses.replace(node, **dict(kept))
    treedef = jax.tree_util.tree_structure(node, is_leaf=lambda x: x is not node)
    return jax.tree_util.tree_unflatten(treedef, values)


class GroupingReleaseManager(ReleaseManager):
  """Releases each value to several managers: TFF's `tff.program.GroupingReleaseManager`.

  Every manager gets the value even if an earlier one fails; the first failure is then raised
  (with the others noted on it).

  Example:
    >>> manager = fx.program.GroupingReleaseManager([
    ...     fx.program.LoggingReleaseManager(),
    ...     fx.program.CSVFileReleaseManager("metrics.csv")])
    >>> manager.release({"train": {"loss": 0.5}}, key=1)
  """

  def __init__(self, release_managers: Sequence[ReleaseManager]):
    release_managers = list(release_managers)
    if not release_managers:
      raise ValueError("GroupingReleaseManager: `release_managers` must not be empty.")
    for i, manager in enumerate(release_managers):
      if not isinstance(manager, ReleaseManager):
        raise TypeError(f"GroupingReleaseManager: release_managers[{i}] must be a ReleaseManager, "
                        f"got {type(manager).__name__}.")
    self._release_managers = release_managers

  def flush(self) -> None:
    for manager in self._release_managers:
      manager.flush()

  def release(self, value: Any, key: Any) -> None:
    """Releases `value` to every manager, in order."""
    errors = []
    for manager in self._release_managers:
      try:
        manager.release(value, key)
      except Exception as e:  # noqa: BLE001  (re-raised below, after the others had their turn)
        errors.append((manager, e))
    if errors:
      first = errors[0][1]
      for manager, error in errors[1:]:
        first.add_note(f"{type(manager).__name__} also failed: {error!r}")
      raise first
