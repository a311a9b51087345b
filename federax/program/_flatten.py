"""`flatten`: a released value as `{'client_work/train/loss': 1.26, ...}`, shared by managers."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Optional, Union

import jax
import numpy as np

from federax.core.structure import Struct

PathKey = Union[str, int]
Path = tuple[PathKey, ...]
ROOT_NAME = "value"  # The name of a released value that is a single leaf, not a structure.


def is_namedtuple(x: Any) -> bool:
  return isinstance(x, tuple) and hasattr(type(x), "_fields")


def children(node: Any) -> Optional[list[tuple[PathKey, Any]]]:
  """`[(key, child)]` of a container node, in its own order; `None` for a leaf.

  Mappings give their keys (insertion order), namedtuples and dataclasses their field names,
  `fx.Struct` its names (or positions), lists and tuples positions, `None` nothing; other
  registered pytree nodes whatever their pytree keys are.
  """
  if node is None:
    return []
  if isinstance(node, Struct):
    return [(name if name else i, v) for i, (name, v) in enumerate(node.items())]
  if isinstance(node, Mapping):
    return list(node.items())
  if is_namedtuple(node):
    return list(zip(type(node)._fields, node))
  if isinstance(node, (list, tuple)):
    return list(enumerate(node))
  if dataclasses.is_dataclass(node) and not isinstance(node, type):
    return [(f.name, getattr(node, f.name)) for f in dataclasses.fields(node)]
  flat, _ = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
  if len(flat) == 1 and flat[0][0] == ():
    return None
  return [(_key_name(path[0]), child) for path, child in flat]


def _key_name(key: Any) -> PathKey:
  for attribute in ("key", "name", "idx"):
    if hasattr(key, attribute):
      value = getattr(key, attribute)
      return value if isinstance(value, int) else str(value)
  return str(key)


def leaves_with_path(value: Any, prefix: Path = ()) -> list[tuple[Path, Any]]:
  """`[(path, leaf)]` of `value`, depth first; a path is a tuple of keys and positions."""
  kids = children(value)
  if kids is None:
    return [(prefix, value)]
  return [item for key, child in kids for item in leaves_with_path(child, prefix + (key,))]


def _normalize(leaf: Any) -> Any:
  if isinstance(leaf, (np.ndarray, np.generic, jax.Array)):
    array = np.asarray(leaf)
    return array.reshape(())[()] if array.size == 1 else array
  return leaf


def flatten(value: Any) -> dict[str, Any]:
  """Returns `value`'s leaves by name: each path's keys joined with `/` (TFF's naming).

  Arrays with one element become NumPy scalars of their dtype (so `float32` stays `float32`),
  larger arrays stay `np.ndarray`s, Python scalars and strings stay as they are; `None` and empty
  containers contribute nothing. A value that is a single leaf is named `'value'`.

  Args:
    value: a structure of metrics: dicts, lists, tuples, namedtuples, dataclasses, `fx.Struct`,
      pytrees, with array or scalar leaves.

  Returns:
    An insertion-ordered `dict` from name to leaf.

  Raises:
    ValueError: if two leaves get the same name (e.g. `{'a/b': 1, 'a': {'b': 2}}`).

  Example:
    >>> fx.program.flatten({'client_work': {'train': {'loss': np.float32(1.5)}}, 'round': 3})
    {'client_work/train/loss': np.float32(1.5), 'round': 3}
  """
  flat: dict[str, Any] = {}
  for path, leaf in leaves_with_path(value):
    name = "/".join(str(key) for key in path) if path else ROOT_NAME
    if name in flat:
      raise ValueError(f"flatten: two leaves of the released value are both named {name!r}; "
                       "rename a key so that joining keys with '/' stays unique.")
    flat[name] = _normalize(leaf)
  return flat
