"""`Struct`: the container for struct values whose type names no Python container."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Optional

import jax


@jax.tree_util.register_pytree_node_class
class Struct:
  """An immutable sequence of optionally named values, like TFF's `tff.structure.Struct`.

  Elements are read by position (`s[0]`), by name (`s.a` or `s['a']`), and iterate in order.

  Example:
    >>> s = fx.Struct([('a', 1), ('b', 2)])
    >>> s.a, s[1], list(s)
    (1, 2, [1, 2])
  """

  __slots__ = ("_items", "_index")

  def __init__(self, items: Iterable[tuple[Optional[str], Any]]):
    items = tuple(items)
    object.__setattr__(self, "_items", items)
    object.__setattr__(self, "_index", {n: i for i, (n, _) in enumerate(items) if n})

  @classmethod
  def unnamed(cls, *values: Any) -> Struct:
    return cls((None, v) for v in values)

  @classmethod
  def named(cls, **values: Any) -> Struct:
    return cls(values.items())

  def __setattr__(self, name, value):
    raise AttributeError("Struct is immutable.")

  def items(self) -> tuple[tuple[Optional[str], Any], ...]:
    return self._items

  def __len__(self) -> int:
    return len(self._items)

  def __iter__(self) -> Iterator[Any]:
    return (v for _, v in self._items)

  def __getitem__(self, key: int | str | slice) -> Any:
    if isinstance(key, str):
      if key not in self._index:
        raise KeyError(f"Struct has no element named {key!r}; names: {list(self._index)}.")
      return self._items[self._index[key]][1]
    if isinstance(key, slice):
      return Struct(self._items[key])
    return self._items[key][1]

  def __getattr__(self, name: str) -> Any:
    if name.startswith("_"):
      raise AttributeError(name)
    if name not in self._index:
      raise AttributeError(f"Struct has no element named {name!r}; names: {list(self._index)}.")
    return self._items[self._index[name]][1]

  def __eq__(self, other) -> bool:
    return isinstance(other, Struct) and self._items == other._items

  def __hash__(self) -> int:
    return hash(self._items)

  def __repr__(self) -> str:
    inner = ", ".join(f"{n}={v!r}" if n else repr(v) for n, v in self._items)
    return f"Struct({inner})"

  def tree_flatten(self):
    return [v for _, v in self._items], tuple(n for n, _ in self._items)

  @classmethod
  def tree_unflatten(cls, names, values):
    return cls(zip(names, values))
