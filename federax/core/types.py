"""The federated type system, printed in TFF's notation.

    float32              TensorType(np.float32)
    int32[?,1]           TensorType(np.int32, (None, 1))
    <a=float32,b=int32>  StructType([('a', np.float32), ('b', np.int32)])
    float32*             SequenceType(np.float32)
    {float32}@CLIENTS    FederatedType(np.float32, CLIENTS)
    float32@SERVER       FederatedType(np.float32, SERVER)
    (float32 -> int32)   FunctionType(np.float32, np.int32)

Types are immutable and hashable. `is_assignable_from` follows TFF: unknown dimensions accept
known ones, a struct's unnamed element accepts a named one, `{T}@G` accepts `T@G`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Optional

import numpy as np

from federax.core.placements import CLIENTS, SERVER, Placement

Shape = Optional[tuple[Optional[int], ...]]

_ALLOWED_DTYPES = frozenset(
    np.dtype(d)
    for d in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
        np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128, np.str_,
    )
)


def _to_dtype(dtype: Any) -> np.dtype:
  """Normalizes a dtype-like (np.float32, 'float32', jnp.bfloat16, str, bytes) to np.dtype."""
  if dtype is str or dtype is bytes or dtype is np.bytes_:
    return np.dtype(np.str_)
  if dtype is float:
    return np.dtype(np.float32)  # TFF's inference for Python floats.
  if dtype is int:
    return np.dtype(np.int32)
  if dtype is bool:
    return np.dtype(np.bool_)
  try:
    result = np.dtype(dtype)
  except TypeError as e:
    raise TypeError(f"Expected a dtype (e.g. np.float32), got {dtype!r}.") from e
  if result.kind in ("U", "S"):
    return np.dtype(np.str_)
  if result not in _ALLOWED_DTYPES and result.name != "bfloat16":
    raise TypeError(f"Unsupported dtype {result} (from {dtype!r}).")
  return result


def dtype_name(dtype: np.dtype) -> str:
  return "str" if dtype.kind == "U" else dtype.name


class Type:
  """Base class of federated types."""

  __slots__ = ()

  def compact_representation(self) -> str:
    return "".join(line.rstrip() for line in _lines(self, formatted=False))

  def formatted_representation(self) -> str:
    """A multi-line form with two-space indentation, as TFF prints large types."""
    return "\n".join(line.rstrip() for line in _lines(self, formatted=True))

  def __str__(self) -> str:
    return self.compact_representation()

  def is_assignable_from(self, source: Type) -> bool:
    """Whether a value of type `source` may be used where this type is expected."""
    raise NotImplementedError

  def is_equivalent_to(self, other: Type) -> bool:
    return self.is_assignable_from(other) and other.is_assignable_from(self)

  def children(self) -> Iterator[Type]:
    return iter(())


class TensorType(Type):
  """A dense array type: a dtype and a shape whose unknown dimensions are `None`.

  Args:
    dtype: a NumPy dtype or anything `np.dtype` accepts; Python `str` is `np.str_`.
    shape: a sequence of ints or `None` (unknown dimension); `None` for unknown rank.

  Example:
    >>> str(fx.TensorType(np.int32, [None, 1]))
    'int32[?,1]'
  """

  __slots__ = ("dtype", "shape")

  def __init__(self, dtype: Any, shape: Iterable[Optional[int]] | None = ()):
    object.__setattr__(self, "dtype", _to_dtype(dtype))
    if shape is not None:
      if isinstance(shape, (int, np.integer)):
        shape = (shape,)
      shape = tuple(None if d is None or d == -1 else int(d) for d in shape)
      if any(d is not None and d < 0 for d in shape):
        raise ValueError(f"TensorType shape dimensions must be >= 0 or None, got {shape}.")
    object.__setattr__(self, "shape", shape)

  def __setattr__(self, name, value):
    raise AttributeError("Types are immutable.")

  def __repr__(self) -> str:
    if self.shape == ():
      return f"TensorType(np.{self.dtype.name})"
    return f"TensorType(np.{self.dtype.name}, {self.shape!r})"

  def __eq__(self, other) -> bool:
    return isinstance(other, TensorType) and (self.dtype, self.shape) == (other.dtype, other.shape)

  def __hash__(self) -> int:
    return hash((TensorType, self.dtype, self.shape))

  @property
  def is_fully_defined(self) -> bool:
    return self.shape is not None and all(d is not None for d in self.shape)

  def is_assignable_from(self, source: Type) -> bool:
    if not isinstance(source, TensorType) or self.dtype != source.dtype:
      return False
    if self.shape is None:
      return True
    if source.shape is None or len(self.shape) != len(source.shape):
      return False
    return all(t is None or t == s for t, s in zip(self.shape, source.shape))


class StructType(Type):
  """An ordered structure of optionally named elements, remembering the Python container.

  Args:
    elements: a mapping, or an iterable of types or `(name, type)` pairs; each type is
      anything `fx.to_type` accepts.
    container_type: the Python container values of this type are returned in (dict,
      OrderedDict, tuple, list, a namedtuple or dataclass class); `None` gives `fx.Struct`.

  Example:
    >>> t = fx.StructType([('a', np.float32), ('b', np.int32)])
    >>> str(t), t.a, t[1]
    ('<a=float32,b=int32>', TensorType(np.float32), TensorType(np.int32))
  """

  __slots__ = ("_elements", "_names", "_name_tuple", "container_type")

  def __init__(self, elements: Any, container_type: type | None = None):
    from federax.core.type_conversions import to_type  # Cycle: to_type builds StructTypes.

    if isinstance(elements, Mapping):
      items = list(elements.items())
    else:
      items = [e if _is_named_pair(e) else (None, e) for e in elements]
    normalized = []
    for name, t in items:
      if name is not None and not isinstance(name, str):
        raise TypeError(f"StructType element names must be str or None, got {name!r}.")
      normalized.append((name or None, to_type(t)))
    names = [n for n, _ in normalized if n is not None]
    if len(set(names)) != len(names):
      raise ValueError(f"StructType element names must be unique, got {names}.")
    object.__setattr__(self, "_elements", tuple(normalized))
    object.__setattr__(self, "_names", {n: i for i, (n, _) in enumerate(normalized) if n})
    object.__setattr__(self, "_name_tuple", tuple(n for n, _ in normalized))
    object.__setattr__(self, "container_type", container_type)

  def __setattr__(self, name, value):
    raise AttributeError("Types are immutable.")

  def items(self) -> tuple[tuple[Optional[str], Type], ...]:
    """The `(name or None, type)` pairs in order."""
    return self._elements

  def names(self) -> tuple[Optional[str], ...]:
    return self._name_tuple

  def index_of(self, name: str) -> int:
    if name not in self._names:
      raise AttributeError(f"{self} has no element named {name!r}.")
    return self._names[name]

  def __len__(self) -> int:
    return len(self._elements)

  def __iter__(self) -> Iterator[Type]:
    return (t for _, t in self._elements)

  def children(self) -> Iterator[Type]:
    return iter(self)

  def __getitem__(self, key: int | str) -> Type:
    if isinstance(key, str):
      return self._elements[self.index_of(key)][1]
    return self._elements[key][1]

  def __getattr__(self, name: str) -> Type:
    if name.startswith("_"):
      raise AttributeError(name)
    return self[self.index_of(name)]

  def __repr__(self) -> str:
    inner = ", ".join(f"({n!r}, {t!r})" if n else repr(t) for n, t in self._elements)
    if self.container_type is None:
      return f"StructType([{inner}])"
    return f"StructType([{inner}], {self.container_type.__name__})"

  def __eq__(self, other) -> bool:
    return (isinstance(other, StructType) and self._elements == other._elements
            and self.container_type is other.container_type)

  def __hash__(self) -> int:
    return hash((StructType, self._elements))

  def is_assignable_from(self, source: Type) -> bool:
    if not isinstance(source, StructType) or len(self) != len(source):
      return False
    return all(
        tn in (None, sn) and tt.is_assignable_from(st)
        for (tn, tt), (sn, st) in zip(self._elements, source._elements))


class SequenceType(Type):
  """A sequence (a client's local dataset) of elements of one type: `T*`."""

  __slots__ = ("element",)

  def __init__(self, element: Any):
    from federax.core.type_conversions import to_type

    element = to_type(element)
    if isinstance(element, (FederatedType, FunctionType, SequenceType)):
      raise TypeError(f"Sequence elements must be tensors or structs of tensors, got {element}.")
    object.__setattr__(self, "element", element)

  def __setattr__(self, name, value):
    raise AttributeError("Types are immutable.")

  def children(self) -> Iterator[Type]:
    yield self.element

  def __repr__(self) -> str:
    return f"SequenceType({self.element!r})"

  def __eq__(self, other) -> bool:
    return isinstance(other, SequenceType) and self.element == other.element

  def __hash__(self) -> int:
    return hash((SequenceType, self.element))

  def is_assignable_from(self, source: Type) -> bool:
    return isinstance(source, SequenceType) and self.element.is_assignable_from(source.element)


class FederatedType(Type):
  """A value placed at `CLIENTS` or `SERVER`.

  Args:
    member: the type of each member (anything `fx.to_type` accepts).
    placement: `fx.CLIENTS` or `fx.SERVER`.
    all_equal: whether all members are equal; defaults to True at SERVER, False at CLIENTS.

  Example:
    >>> str(fx.FederatedType(np.float32, fx.CLIENTS))
    '{float32}@CLIENTS'
  """

  __slots__ = ("member", "placement", "all_equal")

  def __init__(self, member: Any, placement: Placement, all_equal: bool | None = None):
    from federax.core.type_conversions import to_type

    if not isinstance(placement, Placement):
      raise TypeError(f"FederatedType placement must be fx.CLIENTS or fx.SERVER, got {placement!r}.")
    member = to_type(member)
    if isinstance(member, (FederatedType, FunctionType)):
      raise TypeError(f"A federated type's member cannot be {member}; members are local types.")
    if all_equal is None:
      all_equal = placement is SERVER
    object.__setattr__(self, "member", member)
    object.__setattr__(self, "placement", placement)
    object.__setattr__(self, "all_equal", bool(all_equal))

  def __setattr__(self, name, value):
    raise AttributeError("Types are immutable.")

  def children(self) -> Iterator[Type]:
    yield self.member

  def __repr__(self) -> str:
    return f"FederatedType({self.member!r}, {self.placement!r}, all_equal={self.all_equal})"

  def __eq__(self, other) -> bool:
    return (isinstance(other, FederatedType) and self.member == other.member
            and self.placement is other.placement and self.all_equal == other.all_equal)

  def __hash__(self) -> int:
    return hash((FederatedType, self.member, self.placement.name, self.all_equal))

  def is_assignable_from(self, source: Type) -> bool:
    return (isinstance(source, FederatedType) and self.placement is source.placement
            and (not self.all_equal or source.all_equal)
            and self.member.is_assignable_from(source.member))


class FunctionType(Type):
  """The type of a computation: `(parameter -> result)`; `parameter` is None for no argument."""

  __slots__ = ("parameter", "result")

  def __init__(self, parameter: Any, result: Any):
    from federax.core.type_conversions import to_type

    object.__setattr__(self, "parameter", None if parameter is None else to_type(parameter))
    object.__setattr__(self, "result", to_type(result))

  def __setattr__(self, name, value):
    raise AttributeError("Types are immutable.")

  def children(self) -> Iterator[Type]:
    if self.parameter is not None:
      yield self.parameter
    yield self.result

  def __repr__(self) -> str:
    return f"FunctionType({self.parameter!r}, {self.result!r})"

  def __eq__(self, other) -> bool:
    return (isinstance(other, FunctionType) and self.parameter == other.parameter
            and self.result == other.result)

  def __hash__(self) -> int:
    return hash((FunctionType, self.parameter, self.result))

  def is_assignable_from(self, source: Type) -> bool:
    if not isinstance(source, FunctionType):
      return False
    if (self.parameter is None) != (source.parameter is None):
      return False
    if self.parameter is not None and not source.parameter.is_assignable_from(self.parameter):
      return False
    return self.result.is_assignable_from(source.result)


def _is_named_pair(element: Any) -> bool:
  return (isinstance(element, tuple) and not hasattr(element, "_fields") and len(element) == 2
          and (element[0] is None or isinstance(element[0], str)))


# --- TFF's notation ---------------------------------------------------------------------------


def _combine(components: list[list[str]]) -> list[str]:
  """Joins line lists: each component's first line continues the previous last line."""
  lines = [""]
  for component in components:
    lines[-1] += component[0]
    lines.extend(component[1:])
  return lines


def _lines(t: Type, formatted: bool) -> list[str]:
  if isinstance(t, TensorType):
    name = dtype_name(t.dtype)
    if t.shape is None:
      return [f"{name}[?...]"]
    if t.shape:
      return [f"{name}[{','.join('?' if d is None else str(d) for d in t.shape)}]"]
    return [name]
  if isinstance(t, StructType):
    if not len(t):
      return ["<>"]
    parts: list[list[str]] = []
    for i, (name, element) in enumerate(t.items()):
      if i:
        parts.append([",", ""] if formatted else [","])
      element_lines = _lines(element, formatted)
      parts.append(_combine([[f"{name}="], element_lines]) if name else element_lines)
    inner = _combine(parts)
    if formatted:
      return _combine([["<", ""], ["  " + line for line in inner], ["", ">"]])
    return _combine([["<"], inner, [">"]])
  if isinstance(t, SequenceType):
    return _combine([_lines(t.element, formatted), ["*"]])
  if isinstance(t, FederatedType):
    member = _lines(t.member, formatted)
    at = [f"@{t.placement}"]
    return _combine([member, at] if t.all_equal else [["{"], member, ["}"], at])
  if isinstance(t, FunctionType):
    parameter = [""] if t.parameter is None else _lines(t.parameter, formatted)
    return _combine([["("], parameter, [" -> "], _lines(t.result, formatted), [")"]])
  raise TypeError(f"Not a federated type: {t!r}")


# --- Differences, for error messages ----------------------------------------------------------


def differences(expected: Type, actual: Type, path: str = "") -> list[tuple[str, str, str]]:
  """The innermost `(path, expected, actual)` places where `actual` is not assignable.

  Error messages print these instead of two whole types, so the reader sees the difference.
  """
  if expected.is_assignable_from(actual):
    return []
  if isinstance(expected, StructType) and isinstance(actual, StructType) and len(expected) == len(actual):
    found = []
    for i, ((en, et), (an, at)) in enumerate(zip(expected.items(), actual.items())):
      where = f"{path}.{en or an}" if (en or an) else f"{path}[{i}]"
      if en is not None and en != an:
        found.append((where, f"element named {en!r}", f"element named {an!r}"))
      else:
        found.extend(differences(et, at, where))
    if found:
      return found
  if (isinstance(expected, FederatedType) and isinstance(actual, FederatedType)
      and expected.placement is actual.placement and expected.all_equal <= actual.all_equal):
    return differences(expected.member, actual.member, path)
  if isinstance(expected, SequenceType) and isinstance(actual, SequenceType):
    return differences(expected.element, actual.element, f"{path}*")
  return [(path or "(value)", str(expected), str(actual))]


def aligned_like(expected: Type, actual: Type) -> Type:
  """`actual` with mapping structs reordered to `expected`'s names, where the names match.

  Values of mapping containers (dict, OrderedDict) are read by key, so their order carries no
  meaning when a value is converted to an expected type.
  """
  if isinstance(expected, StructType) and isinstance(actual, StructType):
    container = actual.container_type
    if (container is not None and issubclass(container, Mapping) and len(expected) == len(actual)
        and all(expected.names()) and set(expected.names()) == set(actual.names())):
      return StructType([(n, aligned_like(expected[n], actual[n])) for n in expected.names()],
                        container)
    if len(expected) == len(actual):
      return StructType([(n, aligned_like(e, a)) for (n, a), e in zip(actual.items(), expected)],
                        container)
  if isinstance(expected, SequenceType) and isinstance(actual, SequenceType):
    return SequenceType(aligned_like(expected.element, actual.element))
  return actual


def is_numeric(t: Type) -> bool:
  """Whether every tensor in `t` (through structs and placements) has a numeric dtype."""
  if isinstance(t, TensorType):
    return t.dtype.kind in "biufc" and t.dtype != np.bool_
  if isinstance(t, (StructType, FederatedType)):
    return all(is_numeric(c) for c in t.children())
  return False


def has_dtype_kind(t: Type, kinds: str) -> bool:
  """Whether every tensor in `t` has a dtype whose NumPy kind is in `kinds` ('f', 'iu', ...)."""
  if isinstance(t, TensorType):
    return t.dtype.kind in kinds and t.dtype != np.bool_
  if isinstance(t, (StructType, FederatedType)):
    return all(has_dtype_kind(c, kinds) for c in t.children())
  return False


def contains(t: Type, predicate) -> bool:
  return predicate(t) or any(contains(c, predicate) for c in t.children())


def is_dataclass_type(container: Any) -> bool:
  return isinstance(container, type) and dataclasses.is_dataclass(container)


__all__ = [
    "Type", "TensorType", "StructType", "SequenceType", "FederatedType", "FunctionType",
    "CLIENTS", "SERVER", "differences", "is_numeric",
]
