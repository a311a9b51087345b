"""`Struct`, the container for struct values whose type names no Python container, and
`update_struct` (TFF's `tff.structure`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Optional

import jax

from federax.core.errors import error


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


def update_struct(structure: Any, **kwargs: Any) -> Any:
  """A copy of `structure` with the named fields replaced (TFF's `tff.structure.update_struct`).

  Works on dicts (any `Mapping` type), namedtuples, dataclasses, attrs classes and `Struct`s;
  only the first level is updated (a field holding a structure is replaced whole).

  Args:
    structure: a structure with named fields.
    **kwargs: the fields to replace and their new values.

  Returns:
    A new structure of the same type; `structure` is left unchanged.

  Raises:
    KeyError: if `structure` has no field of one of the names.
    TypeError: if `structure` has no named fields (a tuple, a list, a value).

  Example:
    >>> fx.structure.update_struct({'weights': 1, 'round_num': 0}, round_num=1)
    {'weights': 1, 'round_num': 1}
  """
  names = _field_names(structure)
  for key in kwargs:
    if key not in names:
      raise error(KeyError, "update_struct", f"{type(structure).__name__} has no field named "
                  f"{key!r}.", expected=f"one of {[n for n in names if n is not None]}",
                  actual=repr(key))
  if isinstance(structure, Struct):
    return Struct((n, kwargs.get(n, v) if n is not None else v) for n, v in structure.items())
  if isinstance(structure, Mapping):
    return type(structure)({**structure, **kwargs})
  if isinstance(structure, tuple):
    return structure._replace(**kwargs)
  if dataclasses.is_dataclass(structure):
    return dataclasses.replace(structure, **kwargs)
  return type(structure)(**{**{n: getattr(structure, n) for n in names}, **kwargs})


def _field_names(structure: Any) -> list:
  """The names of `structure`'s fields (None for a `Struct`'s unnamed ones)."""
  if isinstance(structure, Struct):
    return [n for n, _ in structure.items()]
  if isinstance(structure, Mapping):
    return list(structure)
  if isinstance(structure, tuple) and hasattr(structure, "_fields"):
    return list(structure._fields)
  if dataclasses.is_dataclass(structure) and not isinstance(structure, type):
    return [f.name for f in dataclasses.fields(structure)]
  if hasattr(type(structure), "__attrs_attrs__"):  # attrs, without importing it
    return [a.name for a in type(structure).__attrs_attrs__]
  raise error(TypeError, "update_struct", "the structure must have named fields.",
              expected="a dict, namedtuple, dataclass, attrs class or fx.Struct",
              actual=f"a {type(structure).__name__}")
