"""Python arguments in and results out, checked against the computation's types.

The runtimes share these walks over a type; they differ only in how a list of client
values and a sequence are represented, which they pass in as `Representation` hooks.
"""

from __future__ import annotations

from collections.abc import Sequence as PySequence
from typing import Any, Optional, Protocol

import jax
import numpy as np

from federax.core import types as t
from federax.core.errors import FederatedTypeError
from federax.core.type_conversions import elements_of, make_container


class Representation(Protocol):
  def whole_clients(self, values: list, member_type: t.Type, where: str,
                    op: str) -> Optional[Any]: ...
  def clients(self, members: list, member_type: t.Type, where: str, values: list) -> Any: ...
  def sequence(self, elements: Any, seq_type: t.SequenceType, where: str) -> Any: ...
  def client_list(self, payload: Any, member_type: t.Type, n: int) -> list: ...
  def sequence_list(self, payload: Any, seq_type: t.SequenceType) -> list: ...


class ArgumentError(FederatedTypeError):
  pass


def tensor(x: Any, tt: t.TensorType, where: str, op: str) -> np.ndarray:
  """`x` as a NumPy array of `tt`'s dtype; raises if the kind or shape does not fit."""
  if tt.dtype.kind == "U":
    arr = strings(x, tt, where, op)
  elif isinstance(x, jax.core.Tracer):  # A call under a JAX transformation: keep it traced.
    return _traced_tensor(x, tt, where, op)
  elif x is None:
    raise ArgumentError(op, f"{where}: no value (None) was given.", expected=tt)
  else:
    try:
      arr = np.asarray(x)
    except Exception as e:
      raise ArgumentError(op, f"{where}: cannot be read as an array ({e}).", expected=tt,
                          actual=type(x).__name__) from None
    if arr.dtype.kind not in "biufc" or not np.can_cast(arr.dtype, tt.dtype, "same_kind"):
      raise ArgumentError(op, f"{where}: the dtype does not convert to {tt.dtype}.",
                          expected=tt, actual=f"{arr.dtype} {_short(x)}",
                          hint=_cast_hint(arr.dtype, tt.dtype))
    arr = arr.astype(tt.dtype, copy=False)
  if not tt.is_assignable_from(t.TensorType(tt.dtype, arr.shape)):
    raise ArgumentError(op, f"{where}: the shape does not fit.", expected=tt,
                        actual=t.TensorType(tt.dtype, arr.shape))
  return arr


def strings(x: Any, tt: t.TensorType, where: str, op: str) -> np.ndarray:
  """`x` (str, bytes, or an array of them, bytes as UTF-8) as a NumPy `str_` array."""
  arr = np.asarray(x)
  if arr.dtype.kind == "S":
    return np.char.decode(arr, "utf-8")
  if arr.dtype.kind == "O":
    flat = arr.reshape(-1)
    if all(isinstance(s, (str, bytes)) for s in flat):
      decoded = [s.decode("utf-8") if isinstance(s, bytes) else s for s in flat]
      return np.array(decoded, np.str_).reshape(arr.shape)
  if arr.dtype.kind != "U":
    raise ArgumentError(op, f"{where}: expected strings.", expected=tt,
                        actual=f"{arr.dtype} {_short(x)}")
  return arr


def _traced_tensor(x: jax.Array, tt: t.TensorType, where: str, op: str) -> jax.Array:
  if x.dtype.kind not in "biufc" or not np.can_cast(x.dtype, tt.dtype, "same_kind"):
    raise ArgumentError(op, f"{where}: the dtype does not convert to {tt.dtype}.",
                        expected=tt, actual=f"traced {x.dtype}{list(x.shape)}",
                        hint=_cast_hint(x.dtype, tt.dtype))
  if not tt.is_assignable_from(t.TensorType(tt.dtype, x.shape)):
    raise ArgumentError(op, f"{where}: the shape does not fit.", expected=tt,
                        actual=t.TensorType(tt.dtype, x.shape))
  return x.astype(tt.dtype) if x.dtype != tt.dtype else x


def _cast_hint(source: np.dtype, target: np.dtype) -> Optional[str]:
  if source.kind == "f" and target.kind in "iu":
    return "floats do not convert to integers implicitly; cast first"
  return None


def is_traced(payload: Any) -> bool:
  """Whether any leaf of `payload` is a JAX tracer (a call inside `jax.jit`, `grad`, `vmap`)."""
  return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(payload))


def _short(x: Any) -> str:
  text = repr(x)
  return text if len(text) < 60 else text[:57] + "..."


def local(x: Any, ts: t.Type, where: str, op: str) -> Any:
  """A tensor or struct as the internal tuple form with NumPy leaves."""
  if isinstance(ts, t.TensorType):
    return tensor(x, ts, where, op)
  if isinstance(ts, t.StructType):
    try:
      parts = elements_of(x, ts)
    except ValueError as e:
      raise ArgumentError(op, f"{where}: {e}.", expected=ts, actual=_short(x)) from None
    names = ts.names()
    return tuple(local(p, et, f"{where}.{names[i] or i}" if names[i] else f"{where}[{i}]", op)
                 for i, (p, et) in enumerate(zip(parts, ts)))
  raise ArgumentError(op, f"{where}: unexpected type.", actual=ts)


def argument(x: Any, ts: t.Type, rep: Representation, where: str, op: str,
             counts: dict) -> Any:
  """Any argument: placed, sequence, or struct of these. `counts` collects client counts."""
  if isinstance(ts, t.FederatedType):
    if ts.placement.name == "CLIENTS" and not ts.all_equal:
      if isinstance(x, np.ndarray) and x.ndim:  # One row per client (strings as object arrays).
        x = list(x)
      if not isinstance(x, PySequence) or isinstance(x, (str, bytes)):
        raise ArgumentError(op, f"{where}: a value at CLIENTS is a list with one entry per client.",
                            expected=ts, actual=_short(x))
      counts[where] = len(x)
      whole = rep.whole_clients(x, ts.member, where, op)  # A cached or streamed cohort.
      if whole is not None:
        return whole
      members = [argument(m, ts.member, rep, f"{where}[client {i}]", op, counts)
                 for i, m in enumerate(x)]
      return rep.clients(members, ts.member, where, x)
    return argument(x, ts.member, rep, where, op, counts)
  if isinstance(ts, t.SequenceType):
    return rep.sequence(sequence_elements(x, ts, where, op), ts, where)
  if isinstance(ts, t.StructType) and t.contains(
      ts, lambda c: isinstance(c, (t.FederatedType, t.SequenceType))):
    try:
      parts = elements_of(x, ts)
    except ValueError as e:
      raise ArgumentError(op, f"{where}: {e}.", expected=ts, actual=_short(x)) from None
    return tuple(argument(p, et, rep, f"{where}.{n}" if n else f"{where}[{i}]", op, counts)
                 for i, ((n, et), p) in enumerate(zip(ts.items(), parts)))
  return local(x, ts, where, op)


def sequence_elements(x: Any, ts: t.SequenceType, where: str, op: str) -> Any:
  """A dataset stays as is (the representation stacks it); a list becomes checked payloads."""
  if hasattr(x, "element_spec"):
    from federax.core.type_conversions import to_type

    spec = t.aligned_like(ts.element, to_type(x.element_spec))
    if not ts.element.is_assignable_from(spec):
      raise ArgumentError(op, f"{where}: the dataset's elements do not fit.",
                          differences=t.differences(ts.element, spec))
    return x
  if isinstance(x, np.ndarray) and x.ndim >= 1:
    x = list(x)
  if not isinstance(x, PySequence) or isinstance(x, (str, bytes)):
    raise ArgumentError(op, f"{where}: a sequence is a list of elements or a dataset.",
                        expected=ts, actual=_short(x))
  return [local(e, ts.element, f"{where}[element {i}]", op) for i, e in enumerate(x)]


def check_counts(counts: dict, op: str) -> Optional[int]:
  if not counts:
    return None
  sizes = set(counts.values())
  if len(sizes) > 1:
    detail = ", ".join(f"{k} has {v}" for k, v in counts.items())
    raise ArgumentError(op, f"client values disagree on the number of clients: {detail}.",
                        hint="pass one entry per client, the same clients for every argument")
  return sizes.pop()


# --- Results -------------------------------------------------------------------------------------


def to_python(payload: Any, ts: t.Type, rep: Representation, n: int) -> Any:
  """A result payload as Python: NumPy arrays and scalars in the user's containers."""
  if isinstance(ts, t.FederatedType):
    if ts.placement.name == "CLIENTS" and not ts.all_equal:
      return [to_python(m, ts.member, rep, n) for m in rep.client_list(payload, ts.member, n)]
    return to_python(payload, ts.member, rep, n)
  if isinstance(ts, t.SequenceType):
    return [to_python(e, ts.element, rep, n) for e in rep.sequence_list(payload, ts)]
  if isinstance(ts, t.StructType):
    return make_container(tuple(to_python(p, et, rep, n) for p, et in zip(payload, ts)), ts)
  if isinstance(payload, jax.core.Tracer):
    return payload
  if ts.dtype.kind == "U":
    return as_bytes(payload)
  arr = np.asarray(payload)  # An array converts itself: `jax.device_get` costs 7 us more a leaf.
  return arr[()] if arr.ndim == 0 else arr


def as_bytes(strings: Any) -> Any:
  """Strings as TFF returns them: `bytes` (UTF-8) for a scalar, else an object array of bytes.

  Example:
    >>> as_bytes(np.array(['a', 'bc']))
    array([b'a', b'bc'], dtype=object)
  """
  arr = np.asarray(strings)
  if arr.ndim == 0:
    return str(arr[()]).encode("utf-8")
  out = np.empty(arr.shape, object)
  out.reshape(-1)[:] = [str(s).encode("utf-8") for s in arr.reshape(-1)]
  return out
