"""Between Python and federated types: `to_type`, `type_of`, and struct containers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from federax.core import types as t
from federax.core.structure import Struct


def _is_namedtuple(x: Any) -> bool:
  cls = x if isinstance(x, type) else type(x)
  return issubclass(cls, tuple) and hasattr(cls, "_fields")


def _is_dtype_like(spec: Any) -> bool:
  if spec in (int, float, bool, str, bytes):
    return True
  if isinstance(spec, np.dtype):
    return True
  if isinstance(spec, type) and issubclass(spec, np.generic):
    return True
  return hasattr(spec, "dtype") and isinstance(spec, type)  # jnp scalar types such as jnp.float32.


def _is_shape_like(shape: Any) -> bool:
  return shape is None or (isinstance(shape, (list, tuple)) and all(
      d is None or isinstance(d, (int, np.integer)) for d in shape))


def _mapping_items(mapping: Mapping) -> list:
  """A plain dict's items sorted by key, as JAX orders them; other mappings keep their order.

  JAX returns plain dicts (from `tree_map`, `grad`, ...) with sorted keys, so sorting them
  here makes a function's result type independent of how it built its dicts. Use an
  OrderedDict to keep an order of your own.
  """
  if type(mapping) is dict:
    try:
      return sorted(mapping.items())
    except TypeError:  # Keys of mixed types: keep the given order.
      return list(mapping.items())
  return list(mapping.items())


def to_type(spec: Any) -> t.Type:
  """Converts a type specification to a federated `Type`.

  Accepts a `Type`; a dtype (`np.float32`, `jnp.int32`, `float`, `str`); a `(dtype, shape)`
  pair; a `jax.ShapeDtypeStruct`; and dicts, lists, tuples, namedtuples, dataclass instances
  and `fx.Struct`s of these (which become `StructType`s remembering the container).

  Example:
    >>> str(fx.to_type((np.int32, [None, 1])))
    'int32[?,1]'
    >>> str(fx.to_type({'x': (np.float32, [784]), 'y': np.int32}))
    '<x=float32[784],y=int32>'
  """
  if isinstance(spec, t.Type):
    return spec
  if _is_dtype_like(spec):
    return t.TensorType(spec)
  if isinstance(spec, jax.ShapeDtypeStruct):
    return t.TensorType(spec.dtype, spec.shape)
  if (isinstance(spec, tuple) and not _is_namedtuple(spec) and len(spec) == 2
      and _is_dtype_like(spec[0]) and _is_shape_like(spec[1])):
    return t.TensorType(spec[0], spec[1])
  if isinstance(spec, Struct):
    return t.StructType([(n, to_type(v)) for n, v in spec.items()])
  if _is_namedtuple(spec):
    return t.StructType([(f, to_type(getattr(spec, f))) for f in spec._fields], type(spec))
  if isinstance(spec, Mapping):
    return t.StructType([(k, to_type(v)) for k, v in _mapping_items(spec)], type(spec))
  if isinstance(spec, (list, tuple)):
    return t.StructType([to_type(v) for v in spec], type(spec))
  if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
    return t.StructType(
        [(f.name, to_type(getattr(spec, f.name))) for f in dataclasses.fields(spec)], type(spec))
  raise TypeError(
      f"Cannot convert {spec!r} (a {type(spec).__name__}) to a federated type. Expected a "
      "dtype, a (dtype, shape) pair, a fx type, or a dict/list/tuple/namedtuple/dataclass of these.")


def type_of(value: Any) -> t.Type:
  """The federated type of a Python, NumPy or JAX value.

  Python `int` is `int32` (`int64` when it does not fit), `float` is `float32`, `str` and
  `bytes` are `str`; arrays keep their dtype and shape; containers become `StructType`s that
  remember the container; a `jax.ShapeDtypeStruct` is its tensor type; a dataset (an object with `element_spec`) is a `SequenceType`;
  a federated `Value` has its `type_signature`.

  Example:
    >>> str(fx.type_of({'a': 1.0, 'b': np.zeros([2, 3], np.int32)}))
    '<a=float32,b=int32[2,3]>'
  """
  if hasattr(value, "type_signature") and isinstance(value.type_signature, t.Type):
    return value.type_signature
  if isinstance(value, bool):
    return t.TensorType(np.bool_)
  if isinstance(value, int):
    return t.TensorType(np.int32 if -2**31 <= value < 2**31 else np.int64)
  if isinstance(value, float):
    return t.TensorType(np.float32)
  if isinstance(value, (str, bytes)):
    return t.TensorType(np.str_)
  if isinstance(value, (np.ndarray, np.generic, jax.Array, jax.ShapeDtypeStruct)):
    return t.TensorType(value.dtype, value.shape)
  if hasattr(value, "element_spec") and not isinstance(value, type):
    return t.SequenceType(to_type(value.element_spec))
  if isinstance(value, Struct):
    return t.StructType([(n, type_of(v)) for n, v in value.items()])
  if _is_namedtuple(value):
    return t.StructType([(f, type_of(getattr(value, f))) for f in value._fields], type(value))
  if isinstance(value, Mapping):
    return t.StructType([(k, type_of(v)) for k, v in _mapping_items(value)], type(value))
  if isinstance(value, (list, tuple)):
    return t.StructType([type_of(v) for v in value], type(value))
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return t.StructType(
        [(f.name, type_of(getattr(value, f.name))) for f in dataclasses.fields(value)], type(value))
  raise TypeError(f"Cannot infer a federated type for {value!r} (a {type(value).__name__}).")


# --- Struct payloads ---------------------------------------------------------------------------
# Inside the runtimes a struct value is a plain tuple of its elements in order. These two
# functions move between that form and the user's container at the edges.


def elements_of(value: Any, struct_type: t.StructType) -> tuple:
  """The elements of a user's struct value, in `struct_type`'s order, as a tuple.

  Mappings, namedtuples and dataclasses are read by name; sequences by position.
  """
  n = len(struct_type)
  names = struct_type.names()
  if isinstance(value, Struct):
    value_names = [name for name, _ in value.items()]
    if len(value) == n and all(a is None or a == b for a, b in zip(names, value_names)):
      return tuple(value)
  elif isinstance(value, Mapping):
    if all(names) and set(value) == set(names):
      return tuple(value[k] for k in names)
    raise ValueError(f"expected a mapping with keys {list(names)}, got keys {list(value)}")
  elif _is_namedtuple(value) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
    fields = value._fields if _is_namedtuple(value) else [f.name for f in dataclasses.fields(value)]
    if all(names) and list(fields) == list(names):
      return tuple(getattr(value, k) for k in names)
    if not any(names) and len(fields) == n:
      return tuple(getattr(value, k) for k in fields)
    raise ValueError(f"expected fields {list(names)}, got {list(fields)}")
  elif isinstance(value, (list, tuple)):
    if len(value) == n:
      return tuple(value)
    raise ValueError(f"expected {n} elements, got {len(value)}")
  raise ValueError(f"expected a structure of {n} elements, got {type(value).__name__}")


def make_container(elements: tuple, struct_type: t.StructType) -> Any:
  """Builds the user's container for `struct_type` from its elements."""
  container = struct_type.container_type
  names = struct_type.names()
  if container is None:
    return Struct(zip(names, elements))
  kind = _CONTAINER_KINDS.get(container) or _container_kind(container)
  if kind == "positional":
    return container(*elements)
  if kind == "keywords":
    return container(**dict(zip(names, elements)))
  if kind == "mapping":
    items = list(zip(names, elements))
    return container(items) if container is not dict else dict(items)
  return container(elements)


_CONTAINER_KINDS: dict = {}  # Container class -> how `make_container` builds it.


def _container_kind(container: type) -> str:
  if _is_namedtuple(container):
    kind = "positional"
  elif dataclasses.is_dataclass(container):
    kind = "keywords"
  elif issubclass(container, Mapping):
    kind = "mapping"
  elif issubclass(container, (list, tuple)):
    kind = "sequence"
  else:
    kind = "positional"
  _CONTAINER_KINDS[container] = kind
  return kind


def map_structure(fn: Callable[[t.TensorType, Any], Any], type_spec: t.Type, value: Any,
                  *, to_user: bool) -> Any:
  """Applies `fn(tensor_type, leaf)` to every tensor of a local value.

  With `to_user=False` the value is a user's structure and the result is the internal
  tuple form; with `to_user=True` it goes the other way.
  """
  if isinstance(type_spec, t.TensorType):
    return fn(type_spec, value)
  if isinstance(type_spec, t.StructType):
    if to_user:
      return make_container(tuple(
          map_structure(fn, et, v, to_user=True) for et, v in zip(type_spec, value)), type_spec)
    return tuple(map_structure(fn, et, v, to_user=False)
                 for et, v in zip(type_spec, elements_of(value, type_spec)))
  raise TypeError(f"expected a tensor or struct type, got {type_spec}")
