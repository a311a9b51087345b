"""Host values: strings, and the local computations on them, which run in Python and NumPy.

JAX cannot hold a string, so a local computation whose parameter or result holds one (TFF's
`tf.string`: client ids, words) runs on the host, as does one that returns a sequence (a
dataset built from a client id: `(str -> T*)`). It is typed like any other computation
(`(str -> int32)`), and a federated computation may mix it with compiled ones. Inside it, a
string is a Python `str`, a string tensor a NumPy `str_` array, a number a NumPy scalar or
array, a sequence a list of elements. Strings leave a computation as bytes, as TFF returns them.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from federax.core import types as t
from federax.core.type_conversions import make_container


def holds_strings(type_spec: Optional[t.Type]) -> bool:
  """Whether a string tensor occurs anywhere in `type_spec`.

  Example:
    >>> holds_strings(fx.to_type({'id': str, 'x': np.float32}))
    True
  """
  return type_spec is not None and t.contains(
      type_spec, lambda x: isinstance(x, t.TensorType) and x.dtype.kind == "U")


def runs_on_host(parameter: Optional[t.Type], result: Optional[t.Type]) -> bool:
  """Whether a local computation of this type runs on the host: a string in or out, or a
  sequence out (its length is known only once it is built).

  Example:
    >>> runs_on_host(fx.to_type(str), fx.to_type(np.int32))
    True
    >>> runs_on_host(fx.to_type(np.int32), fx.SequenceType(np.float32))
    True
    >>> runs_on_host(fx.to_type(np.int32), fx.to_type(np.float32))
    False
  """
  return holds_strings(parameter) or holds_strings(result) or (result is not None and t.contains(
      result, lambda x: isinstance(x, t.SequenceType)))


def user_value(payload: Any, type_spec: t.Type) -> Any:
  """What a host computation receives for `payload`: `str` for a string, NumPy scalars for
  other scalars, NumPy arrays, lists for sequences, and the type's containers for structs."""
  if isinstance(type_spec, t.TensorType):
    array = np.asarray(payload)
    if array.ndim:
      return array
    return array.item() if array.dtype.kind == "U" else array[()]
  if isinstance(type_spec, t.SequenceType):
    return [user_value(e, type_spec.element) for e in payload]
  if isinstance(type_spec, t.StructType):
    return make_container(tuple(user_value(p, e) for p, e in zip(payload, type_spec)), type_spec)
  raise TypeError(f"a host computation cannot take a value of type {type_spec}")


def example(type_spec: t.Type, unknown: int) -> Any:
  """A payload of `type_spec` to run a host computation on while typing it: empty strings,
  zeros, empty sequences; unknown dimensions have size `unknown` (unknown rank: a scalar)."""
  if isinstance(type_spec, t.TensorType):
    shape = () if type_spec.shape is None else tuple(
        unknown if d is None else d for d in type_spec.shape)
    return np.zeros(shape, type_spec.dtype)
  if isinstance(type_spec, t.SequenceType):
    return []
  if isinstance(type_spec, t.StructType):
    return tuple(example(e, unknown) for e in type_spec)
  raise TypeError(f"a host computation cannot take a value of type {type_spec}")
