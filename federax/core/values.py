"""`Value`: a typed handle on data inside a federated computation's body."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from federax.core import context
from federax.core import types as t
from federax.core.errors import FederatedTypeError
from federax.core.structure import Struct
from federax.core.type_conversions import _is_namedtuple, type_of

_NO_ARITHMETIC = (
    "federated values have no arithmetic or Python truth value inside a federated computation; "
    "do the math in an @fx.computation and apply it with fx.federated_map (or call it on an "
    "unplaced value)")


class Value:
  """A value inside a federated computation: its `type_signature` plus the runtime's payload.

  Struct values expose their elements as `v.name`, `v[i]`, and unpack like tuples; on a
  federated struct (`{<a=..,b=..>}@CLIENTS`) `v.a` is the federated value of the member.
  During definition-time tracing the payload is `None`: only types flow.
  """

  __slots__ = ("type_signature", "payload")

  def __init__(self, type_signature: t.Type, payload: Any):
    object.__setattr__(self, "type_signature", type_signature)
    object.__setattr__(self, "payload", payload)

  def __setattr__(self, name, value):
    raise AttributeError("fx.Value is immutable.")

  def __repr__(self) -> str:
    return f"<fx.Value {self.type_signature}>"

  def _struct_type(self) -> t.StructType:
    ts = self.type_signature
    member = ts.member if isinstance(ts, t.FederatedType) else ts
    if not isinstance(member, t.StructType):
      raise FederatedTypeError("element access", f"a value of type {ts} has no elements.",
                               hint="only struct values (or federated structs) have elements")
    return member

  def __getattr__(self, name: str) -> Value:
    if name.startswith("__"):
      raise AttributeError(name)
    struct = self._struct_type()
    if name not in struct.names():
      raise AttributeError(
          f"{self.type_signature} has no element named {name!r}; names: {list(struct.names())}")
    return self[struct.index_of(name)]

  def __getitem__(self, key: int | str) -> Value:
    struct = self._struct_type()
    if isinstance(key, str):
      if key not in struct.names():
        raise KeyError(f"{self.type_signature} has no element named {key!r}")
      key = struct.index_of(key)
    if not -len(struct) <= key < len(struct):
      raise IndexError(f"index {key} out of range for {self.type_signature}")
    key %= len(struct)
    ts = self.type_signature
    if isinstance(ts, t.FederatedType):
      member = t.FederatedType(struct[key], ts.placement, ts.all_equal)
      payload = context.current_execution().project(self.payload, ts, key)
      return Value(member, payload)
    return Value(struct[key], None if self.payload is None else self.payload[key])

  def __len__(self) -> int:
    return len(self._struct_type())

  def __iter__(self):
    return (self[i] for i in range(len(self)))

  def __bool__(self):
    raise TypeError(f"{self!r}: {_NO_ARITHMETIC}")

  def _no_arithmetic(self, *_):
    raise TypeError(f"{self!r}: {_NO_ARITHMETIC}")

  __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _no_arithmetic
  __truediv__ = __rtruediv__ = __floordiv__ = __pow__ = __neg__ = __matmul__ = _no_arithmetic
  __lt__ = __le__ = __gt__ = __ge__ = _no_arithmetic
  __array__ = _no_arithmetic


def contains_value(obj: Any) -> bool:
  if isinstance(obj, Value):
    return True
  if isinstance(obj, Struct):
    return any(contains_value(v) for v in obj)
  if isinstance(obj, Mapping):
    return any(contains_value(v) for v in obj.values())
  if isinstance(obj, (list, tuple)):
    return any(contains_value(v) for v in obj)
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return any(contains_value(getattr(obj, f.name)) for f in dataclasses.fields(obj))
  return False


def _items(obj: Any) -> tuple[list, type | None]:
  if isinstance(obj, Struct):
    return list(obj.items()), None
  if _is_namedtuple(obj):
    return list(zip(obj._fields, obj)), type(obj)
  if isinstance(obj, Mapping):
    return list(obj.items()), type(obj)
  if isinstance(obj, (list, tuple)):
    return [(None, v) for v in obj], type(obj)
  fields = dataclasses.fields(obj)
  return [(f.name, getattr(obj, f.name)) for f in fields], type(obj)


def to_value(obj: Any) -> Value:
  """Wraps a Python constant, or a structure holding `Value`s, as a `Value`.

  A structure of values keeps its container (`(a, b)` is `<A,B>` returned as a tuple); a
  constant becomes an unplaced tensor or struct (`1.0` is `float32`).
  """
  if isinstance(obj, Value):
    return obj
  if contains_value(obj):
    items, container = _items(obj)
    values = [(name, to_value(v)) for name, v in items]
    struct_type = t.StructType([(n, v.type_signature) for n, v in values], container)
    payloads = tuple(v.payload for _, v in values)
    return Value(struct_type, None if all(p is None for p in payloads) else payloads)
  value_type = type_of(obj)
  if isinstance(value_type, t.SequenceType):
    raise FederatedTypeError(
        "federated computation", "datasets cannot be captured as constants in a computation body.",
        hint="pass the dataset as an argument declared with fx.SequenceType")
  execution = context.current_execution()
  return Value(value_type, execution.constant(obj, value_type) if execution else None)


def constant_payload(obj: Any, value_type: t.Type) -> Any:
  """Internal tuple form of a Python constant, with NumPy leaves of the type's dtypes."""
  from federax.core.type_conversions import map_structure

  return map_structure(lambda tt, leaf: np.asarray(leaf, dtype=tt.dtype), value_type, obj,
                       to_user=False)
