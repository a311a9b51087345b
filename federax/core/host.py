"""Host values: strings, and the local computations on them, which run in Python and NumPy.

JAX cannot hold a string, so a local computation whose parameter or result holds one (TFF's
`tf.string`: client ids, words) runs on the host, as does one JAX cannot trace that returns a
sequence (a dataset built in Python). It is typed like any other computation
(`(str -> int32)`), and a federated computation may mix it with compiled ones. Inside it, a
string is a Python `str`, a string tensor a NumPy `str_` array, a number a NumPy scalar or
array, a sequence a list of elements with tf.data's `reduce` and `map` (`HostSequence`).
Strings leave a computation as bytes, as TFF returns them.
"""

from __future__ import annotations

from collections.abc import Callable
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


def made_on_host(result: Optional[t.Type]) -> bool:
  """Whether a function JAX cannot trace that returns this type is a host computation: the
  result holds a string, or a sequence (a dataset or list built in Python).

  Example:
    >>> made_on_host(fx.SequenceType(np.float32)), made_on_host(fx.to_type(np.float32))
    (True, False)
  """
  return holds_strings(result) or (result is not None and t.contains(
      result, lambda x: isinstance(x, t.SequenceType)))


class HostSequence(list):
  """A host computation's `T*` argument: its elements in a list, with tf.data's `reduce` and
  `map` (as a JAX computation's `fx.Sequence` has), so TFF's code ports as it is.

  Example:
    >>> HostSequence(['a', 'b', 'c']).reduce('', lambda acc, x: acc + x)
    'abc'
  """

  def reduce(self, initial_state: Any, reduce_func: Callable[[Any, Any], Any]) -> Any:
    """`reduce_func(state, element)` folded over the elements from `initial_state`."""
    state = initial_state
    for element in self:
      state = reduce_func(state, element)
    return state

  def map(self, map_func: Callable) -> HostSequence:
    """The elements' `map_func(element)` (a tuple element as positional arguments, as tf.data)."""
    return HostSequence(map_func(*e) if type(e) is tuple else map_func(e) for e in self)


def user_value(payload: Any, type_spec: t.Type) -> Any:
  """What a host computation receives for `payload`: `str` for a string, NumPy scalars for
  other scalars, NumPy arrays, `HostSequence`s for sequences, and the type's containers for
  structs."""
  if isinstance(type_spec, t.TensorType):
    array = np.asarray(payload)
    if array.ndim:
      return array
    return array.item() if array.dtype.kind == "U" else array[()]
  if isinstance(type_spec, t.SequenceType):
    return HostSequence(user_value(e, type_spec.element) for e in payload)
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
