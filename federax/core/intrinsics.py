"""The federated intrinsics: TFF's names and type rules; runtimes carry them out.

Each intrinsic checks its arguments' types (so misuse is reported when a federated
computation is defined, at the user's line), computes the result type, and asks the current
execution for the result's payload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import numpy as np

from federax.core import context
from federax.core import types as t
from federax.core.computations import (Computation, FederatedCall, FederatedComputation,
                                       LocalCall, LocalComputation, as_computation)
from federax.core.errors import FederatedTypeError
from federax.core.placements import CLIENTS, SERVER, Placement
from federax.core.values import Value, to_value

KEY_TYPE = t.TensorType(np.uint32, [2])


def _execution():
  execution = context.current_execution()
  if execution is None:
    raise RuntimeError(
        "federated intrinsics can only be called inside a @fx.federated_computation body.")
  return execution


def _broadcast(payload: Any) -> Any:
  return None if payload is None else _execution().broadcast(payload)


def _not_in_local_body(op: str) -> None:
  if context.in_local_body():
    raise FederatedTypeError(
        op, "federated intrinsics cannot be called inside a local computation (@fx.computation), "
        "whose values are JAX arrays.",
        hint="call intrinsics in a @fx.federated_computation and pass their results to the "
        "local computation")


def _arg(op: str, name: str, obj: Any) -> Value:
  _not_in_local_body(op)
  try:
    return to_value(obj)
  except TypeError as e:
    raise FederatedTypeError(op, f"argument `{name}` is not a federated value ({e}).") from None


def _placed(op: str, name: str, value: Value, placement: Optional[Placement],
            hint: Optional[str] = None) -> t.FederatedType:
  ts = value.type_signature
  if not isinstance(ts, t.FederatedType) or (placement is not None and ts.placement is not placement):
    where = f"{{T}}@{placement}" if placement is not None else "a federated value T@CLIENTS or T@SERVER"
    raise FederatedTypeError(op, f"argument `{name}` must be placed at {placement or 'a placement'}.",
                             expected=where, actual=ts, hint=hint)
  return ts


def _unplaced(op: str, name: str, value: Value) -> t.Type:
  ts = value.type_signature
  if t.contains(ts, lambda x: isinstance(x, t.FederatedType)):
    raise FederatedTypeError(op, f"argument `{name}` must be an unplaced value.", actual=ts,
                             hint="federated values are combined with federated_map / federated_zip")
  return ts


def _function(op: str, name: str, fn: Any, parameter: Optional[t.Type]):
  """(payload -> payload callable, result type) for `fn` applied to values of `parameter`."""
  comp = as_computation(fn)
  declared = _declared_parameter(comp)
  parameter = _named_like(declared, parameter)
  if not comp.is_polymorphic and not _accepts(declared, parameter):
    if declared is None or parameter is None:  # One of them takes or gives no argument.
      shown = {"expected": _or_no_argument(declared), "actual": _or_no_argument(parameter)}
    else:
      shown = {"differences": t.differences(declared, parameter)}
    raise FederatedTypeError(
        op, f"`{name}` ({comp.name}) does not accept the values it is applied to.", **shown)
  if isinstance(comp, FederatedComputation):
    signature = comp.signature_for(parameter)
    if t.contains(signature.result, lambda x: isinstance(x, t.FederatedType)):
      raise FederatedTypeError(op, f"`{name}` must return an unplaced value.",
                               actual=signature.result)
    return FederatedCall(comp, parameter), signature.result
  concrete = comp.concretize(parameter)
  return LocalCall(comp, concrete), concrete.result


def _or_no_argument(parameter: Optional[t.Type]) -> Any:
  return "no argument" if parameter is None else parameter


def _accepts(declared: Optional[t.Type], parameter: Optional[t.Type]) -> bool:
  if declared is None or parameter is None:
    return declared is None and parameter is None
  return declared.is_assignable_from(parameter)


def _declared_parameter(comp: Computation) -> Optional[t.Type]:
  try:
    return comp.type_signature.parameter
  except AttributeError:  # Polymorphic: typed by what it is applied to.
    return None


def _named_like(declared: Optional[t.Type], given: Optional[t.Type]) -> Optional[t.Type]:
  """Intrinsics pass `<acc, element>` positionally: take the function's parameter names."""
  if (isinstance(declared, t.StructType) and isinstance(given, t.StructType)
      and len(declared) == len(given) and not any(given.names())):
    return t.StructType(list(zip(declared.names(), given)), given.container_type)
  return given


def _implicit_zip(op: str, value: Value) -> Value:
  """A struct of federated values at one placement, zipped (TFF's implicit zip)."""
  if isinstance(value.type_signature, t.StructType) and len(value.type_signature) and all(
      isinstance(e, (t.FederatedType, t.StructType)) for e in value.type_signature):
    return federated_zip(value, _op=op)
  return value


# --- Placement -----------------------------------------------------------------------------------


def federated_value(value: Any, placement: Placement) -> Value:
  """Places an unplaced value: `T -> T@placement` (all-equal).

  Example: `fx.federated_value(1.0, fx.CLIENTS)` has type `float32@CLIENTS`.
  """
  op = "federated_value"
  v = _arg(op, "value", value)
  ts = _unplaced(op, "value", v)
  if not isinstance(placement, Placement):
    raise FederatedTypeError(op, "`placement` must be fx.CLIENTS or fx.SERVER.",
                             actual=repr(placement))
  payload = _broadcast(v.payload) if placement is CLIENTS else v.payload
  return Value(t.FederatedType(ts, placement, all_equal=True), payload)


def federated_eval(fn: Any, placement: Placement) -> Value:
  """Evaluates a no-argument computation at `placement`: `( -> T) -> T@SERVER | {T}@CLIENTS`.

  If `fn` takes one argument it receives a JAX PRNG key (`uint32[2]`): at CLIENTS, client `i`
  gets `fold_in(fold_in(PRNGKey(seed), call_index), i)` where `seed` is the runtime's seed and
  `call_index` counts `federated_eval`s in the body, so both runtimes draw the same numbers.
  """
  op = "federated_eval"
  _not_in_local_body(op)
  if not isinstance(placement, Placement):
    raise FederatedTypeError(op, "`placement` must be fx.CLIENTS or fx.SERVER.",
                             actual=repr(placement))
  comp = as_computation(fn)
  takes_key = len(comp._signature.names) == 1
  member_fn, result = _function(op, "fn", comp, KEY_TYPE if takes_key else None)
  if placement is CLIENTS and isinstance(comp, LocalComputation):
    _check_no_host_randomness(op, comp, KEY_TYPE if takes_key else None)
  result_type = t.FederatedType(result, placement, all_equal=placement is SERVER)
  return Value(result_type, _execution().federated_eval(member_fn, placement, takes_key))


def _check_no_host_randomness(op: str, comp: LocalComputation,
                              parameter: Optional[t.Type]) -> None:
  """Raises if `comp` drew from a host generator when traced: its clients would all agree."""
  if getattr(comp.concretize(parameter), "draws_host_randomness", False):
    raise FederatedTypeError(
        op, f"`fn` ({comp.name}) drew random numbers from Python's `random` or NumPy's "
        "global generator while it was traced (an unseeded Keras initializer does this): they "
        "are constants of the program, so every client would get the same values, and other "
        "values in another process.",
        hint="give every client its own values from the key federated_eval passes: "
        "def fn(key): ... jax.random.normal(key, shape) (or keras.random.normal(shape, "
        "seed=key)); or, for the same weights everywhere, build the model once outside the "
        "computation and return its initial_weights (or seed its initializers)")


def federated_broadcast(value: Any) -> Value:
  """Sends a server value to every client: `T@SERVER -> T@CLIENTS`."""
  op = "federated_broadcast"
  v = _arg(op, "value", value)
  ts = _placed(op, "value", v, SERVER, hint="only server values are broadcast; client values "
               "are already at the clients")
  return Value(t.FederatedType(ts.member, CLIENTS, all_equal=True), _broadcast(v.payload))


def federated_client_keys(key: Any) -> Value:
  """Per-client PRNG keys from a server key: client `i` gets `jax.random.fold_in(key, i)`.

  `uint32[2]@SERVER -> {uint32[2]}@CLIENTS`. Runs are reproducible from the server key on any
  runtime. (A federax extension; TFF has no keys.)
  """
  op = "federated_client_keys"
  v = _arg(op, "key", key)
  ts = _placed(op, "key", v, SERVER)
  if not ts.member.is_assignable_from(KEY_TYPE) or not KEY_TYPE.is_assignable_from(ts.member):
    raise FederatedTypeError(op, "`key` must be a raw JAX key (jax.random.PRNGKey).",
                             expected=t.FederatedType(KEY_TYPE, SERVER), actual=ts)
  return Value(t.FederatedType(KEY_TYPE, CLIENTS), _execution().client_keys(v.payload))


# --- Maps and zips -------------------------------------------------------------------------------


def federated_map(fn: Any, arg: Any) -> Value:
  """Applies `fn` to every member: `(T -> U), {T}@CLIENTS -> {U}@CLIENTS` (or at SERVER).

  `fn` is a computation or a Python function (made a polymorphic local computation). A
  struct of federated values at one placement is zipped first, so
  `federated_map(fn, (model_at_clients, data_at_clients))` passes each client its pair.
  """
  op = "federated_map"
  v = _implicit_zip(op, _arg(op, "arg", arg))
  ts = _placed(op, "arg", v, None, hint="to apply a function to an unplaced value, call it")
  member_fn, result = _function(op, "fn", fn, ts.member)
  execution = _execution()
  if ts.placement is SERVER:
    return Value(t.FederatedType(result, SERVER), member_fn(v.payload) if v.payload is not None
                 else None)
  result_type = t.FederatedType(result, CLIENTS, all_equal=False)
  return Value(result_type, execution.map_clients(member_fn, v.payload, ts.all_equal))


def federated_zip(value: Any, *, _op: str = "federated_zip") -> Value:
  """Zips a struct of federated values at one placement: `<{A}@C,{B}@C> -> {<A,B>}@C`.

  Names and the Python container are kept; nested structs are zipped recursively.
  """
  v = _arg(_op, "value", value)
  ts = v.type_signature
  if not isinstance(ts, t.StructType) or not len(ts):
    raise FederatedTypeError(_op, "expects a non-empty struct of federated values.", actual=ts)
  elements = []
  for i, (name, et) in enumerate(ts.items()):
    element = v[i]
    if isinstance(et, t.StructType):
      element = federated_zip(element, _op=_op)
    if not isinstance(element.type_signature, t.FederatedType):
      raise FederatedTypeError(_op, f"element {name or i} is not a federated value.",
                               expected="a federated value", actual=element.type_signature)
    elements.append((name, element))
  placements = {e.type_signature.placement for _, e in elements}
  if len(placements) != 1:
    found = ", ".join(f"element {name or i} at {e.type_signature.placement}"
                      for i, (name, e) in enumerate(elements))
    raise FederatedTypeError(
        _op, "all elements must be placed at the same placement.",
        expected="every element at one placement (all at CLIENTS, or all at SERVER)",
        actual=f"{found} ({ts})",
        hint="broadcast server values to the clients (fx.federated_broadcast) before zipping")
  placement = placements.pop()
  all_equal = all(e.type_signature.all_equal for _, e in elements)
  member = t.StructType([(n, e.type_signature.member) for n, e in elements], ts.container_type)
  payloads = tuple(e.payload for _, e in elements)
  if all(p is None for p in payloads):
    payload = None
  elif placement is SERVER or all_equal:
    payload = payloads
  else:
    payload = _execution().zip_clients(payloads, [e.type_signature.all_equal for _, e in elements])
  return Value(t.FederatedType(member, placement, all_equal), payload)


# --- Aggregations --------------------------------------------------------------------------------


def _clients_numeric(op: str, value: Any, kinds: str = "biuf", what: str = "numeric") -> tuple:
  v = _arg(op, "value", value)
  ts = _placed(op, "value", v, CLIENTS, hint="server values are already aggregated")
  if not t.has_dtype_kind(ts.member, kinds):
    raise FederatedTypeError(op, f"the value must hold only {what} tensors.",
                             expected=f"{{{what} tensors}}@CLIENTS", actual=ts)
  return v, ts


def federated_sum(value: Any) -> Value:
  """Sums client values at the server: `{T}@CLIENTS -> T@SERVER` (numeric `T`)."""
  v, ts = _clients_numeric("federated_sum", value)
  return Value(t.FederatedType(ts.member, SERVER), _execution().federated_sum(v.payload, ts))


def federated_mean(value: Any, weight: Any = None) -> Value:
  """The (weighted) mean of client values: `{T}@CLIENTS[, {w}@CLIENTS] -> T@SERVER`.

  `T` must hold floating tensors; `weight`, if given, is a numeric scalar per client and the
  result is `sum(w_i * x_i) / sum(w_i)`.
  """
  op = "federated_mean"
  v, ts = _clients_numeric(op, value, kinds="fc", what="floating-point")
  w_payload, w_type = None, None
  if weight is not None:
    w = _arg(op, "weight", weight)
    w_type = _placed(op, "weight", w, CLIENTS)
    if not (isinstance(w_type.member, t.TensorType) and w_type.member.shape == ()
            and t.is_numeric(w_type.member)):
      raise FederatedTypeError(op, "`weight` must be a numeric scalar per client.",
                               expected="{float32}@CLIENTS", actual=w_type)
    w_payload = w.payload
  payload = _execution().federated_mean(v.payload, ts, w_payload, w_type)
  return Value(t.FederatedType(ts.member, SERVER), payload)


def federated_min(value: Any) -> Value:
  """The elementwise minimum over clients: `{T}@CLIENTS -> T@SERVER`."""
  v, ts = _clients_numeric("federated_min", value)
  return Value(t.FederatedType(ts.member, SERVER), _execution().federated_min(v.payload, ts))


def federated_max(value: Any) -> Value:
  """The elementwise maximum over clients: `{T}@CLIENTS -> T@SERVER`."""
  v, ts = _clients_numeric("federated_max", value)
  return Value(t.FederatedType(ts.member, SERVER), _execution().federated_max(v.payload, ts))


def federated_stack(value: Any) -> Value:
  """Every client's value at the server, stacked: `{T}@CLIENTS -> T'@SERVER` (numeric `T`).

  Each tensor of `T` gains a leading client axis, of unknown size in the type (its size is the
  number of clients, known only at run time); client `i`'s value is row `i`. The server then
  sees every client's value, so this is NOT compatible with secure aggregation: it serves rules
  that need all the values at once (a coordinate-wise median, Krum), in simulation or with a
  trusted server. A federax extension; TFF has none. Zero clients raise a ValueError.

  Example:
    >>> @fx.federated_computation(fx.FederatedType(fx.TensorType(np.float32, [2]), fx.CLIENTS))
    ... def stack(values):
    ...   return fx.federated_stack(values)
    >>> print(stack.type_signature)
    ({float32[2]}@CLIENTS -> float32[?,2]@SERVER)
    >>> stack([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    array([[1., 2.],
           [3., 4.],
           [5., 6.]], dtype=float32)
  """
  v, ts = _clients_numeric("federated_stack", value)
  return Value(t.FederatedType(with_client_axis(ts.member), SERVER),
               _execution().federated_stack(v.payload, ts))


def with_client_axis(member: t.Type) -> t.Type:
  """`member` with a leading dimension of unknown size on every tensor (`federated_stack`'s
  result): `<a=float32[3],b=int32>` -> `<a=float32[?,3],b=int32[?]>`."""
  if isinstance(member, t.TensorType):
    return t.TensorType(member.dtype, None if member.shape is None else (None, *member.shape))
  return t.StructType([(name, with_client_axis(e)) for name, e in member.items()],
                      member.container_type)


def federated_aggregate(value: Any, zero: Any, accumulate: Any, merge: Any, report: Any) -> Value:
  """The general aggregation: `{V}@CLIENTS, A, (<A,V>->A), (<A,A>->A), (A->R) -> R@SERVER`.

  Clients' values are accumulated into partial aggregates starting from `zero`, partials
  are merged, and `report` makes the result. Runtimes may group clients differently, so
  `accumulate` and `merge` must describe one associative, commutative aggregation.
  """
  op = "federated_aggregate"
  v = _arg(op, "value", value)
  ts = _placed(op, "value", v, CLIENTS, hint="federated_aggregate reduces client values")
  z = _arg(op, "zero", zero)
  a_type = _unplaced(op, "zero", z)
  acc_fn, acc_result = _function(op, "accumulate", accumulate, t.StructType([a_type, ts.member]))
  _same(op, "accumulate", a_type, acc_result)
  merge_fn, merge_result = _function(op, "merge", merge, t.StructType([a_type, a_type]))
  _same(op, "merge", a_type, merge_result)
  report_fn, result = _function(op, "report", report, a_type)
  payload = _execution().federated_aggregate(v.payload, ts, z.payload, acc_fn, merge_fn, report_fn)
  return Value(t.FederatedType(result, SERVER), payload)


def _same(op: str, name: str, expected: t.Type, actual: t.Type) -> None:
  if not (expected.is_assignable_from(actual) and actual.is_assignable_from(expected)):
    raise FederatedTypeError(
        op, f"`{name}` must return the accumulator's type (the type of `zero`).",
        differences=t.differences(expected, actual) or [("(value)", str(expected), str(actual))])


def _static_ints(op: str, name: str, obj: Any, member: t.Type, low: int, high: int) -> Any:
  """A Python int (or structure matching `member`) checked into [low, high]."""
  def check(x):
    if isinstance(x, Value) or not isinstance(x, (int, np.integer)):
      raise FederatedTypeError(op, f"`{name}` must be a Python int or a structure of ints "
                               "known when the computation is defined.", actual=repr(x))
    if not low <= int(x) <= high:
      raise FederatedTypeError(op, f"`{name}` must lie in [{low}, {high}].", actual=int(x))
    return int(x)

  if isinstance(obj, (int, np.integer)) or isinstance(obj, Value):
    return check(obj)
  from federax.core.type_conversions import map_structure
  try:
    return map_structure(lambda _, x: check(x), member, obj, to_user=False)
  except ValueError as e:
    raise FederatedTypeError(op, f"`{name}` must match the value's structure ({e}).",
                             expected=member, actual=repr(obj)) from None


def federated_secure_sum_bitwidth(value: Any, bitwidth: Any) -> Value:
  """A sum the server sees only in total: `{T}@CLIENTS, bitwidth -> T@SERVER` (integer `T`).

  Every client value must lie in `[0, 2**bitwidth - 1]` (checked: a value outside raises,
  as TFF's reference does); the result is the exact sum. `bitwidth` is an int or a structure
  of ints matching `T`.
  """
  op = "federated_secure_sum_bitwidth"
  v, ts = _clients_numeric(op, value, kinds="iu", what="integer")
  bits = _static_ints(op, "bitwidth", bitwidth, ts.member, 1, 62)
  payload = _execution().federated_secure_sum_bitwidth(v.payload, ts, bits)
  return Value(t.FederatedType(ts.member, SERVER), payload)


def federated_secure_modular_sum(value: Any, modulus: Any) -> Value:
  """`sum(x_i mod m) mod m`, exact: `{T}@CLIENTS, modulus -> T@SERVER` (integer `T`).

  The modular semantics of the secure aggregation protocol; no intermediate overflows.
  `modulus` is an int in [2, 2**31 - 1] or a structure of such ints matching `T`.
  """
  op = "federated_secure_modular_sum"
  v, ts = _clients_numeric(op, value, kinds="iu", what="integer")
  mod = _static_ints(op, "modulus", modulus, ts.member, 2, 2**31 - 1)
  payload = _execution().federated_secure_modular_sum(v.payload, ts, mod)
  return Value(t.FederatedType(ts.member, SERVER), payload)


# --- Select --------------------------------------------------------------------------------------


def federated_select(client_keys: Any, max_key: Any, server_val: Any, select_fn: Any) -> Value:
  """Sends each client the server slices for its keys: `{int32[k]}@CLIENTS, int32@SERVER,
  T@SERVER, (<T,int32> -> U) -> {U*}@CLIENTS`.

  Client `i` receives the sequence `[select_fn(server_val, key) for key in client_keys[i]]`;
  every key must lie in `[0, max_key)`.
  """
  op = "federated_select"
  keys = _arg(op, "client_keys", client_keys)
  keys_type = _placed(op, "client_keys", keys, CLIENTS)
  km = keys_type.member
  if not (isinstance(km, t.TensorType) and km.dtype == np.int32 and km.shape is not None
          and len(km.shape) == 1):
    raise FederatedTypeError(op, "`client_keys` must be a vector of int32 keys per client.",
                             expected="{int32[k]}@CLIENTS", actual=keys_type)
  if isinstance(max_key, (int, np.integer)):
    max_key = federated_value(np.int32(max_key), SERVER)
  mk = _arg(op, "max_key", max_key)
  mk_type = _placed(op, "max_key", mk, SERVER)
  if mk_type.member != t.TensorType(np.int32):
    raise FederatedTypeError(op, "`max_key` must be an int32 at the server.",
                             expected="int32@SERVER", actual=mk_type)
  sv = _arg(op, "server_val", server_val)
  sv_type = _placed(op, "server_val", sv, SERVER)
  fn, result = _function(op, "select_fn", select_fn,
                         t.StructType([sv_type.member, t.TensorType(np.int32)]))
  payload = _execution().federated_select(keys.payload, mk.payload, sv.payload, fn)
  return Value(t.FederatedType(t.SequenceType(result), CLIENTS), payload)


# --- Sequences -----------------------------------------------------------------------------------


def _sequence_op(op: str, value: Any, body: Callable[[Value], Value]) -> Value:
  """Applies an unplaced sequence operator, mapping it over a federated sequence."""
  v = _arg(op, "value", value)
  ts = v.type_signature
  if isinstance(ts, t.FederatedType) and isinstance(ts.member, t.SequenceType):
    # Placed sequences: the operator runs on each member's sequence.
    inner = lambda p: body(Value(ts.member, p)).payload
    result = body(Value(ts.member, None)).type_signature
    if ts.placement is SERVER:
      return Value(t.FederatedType(result, SERVER), None if v.payload is None else inner(v.payload))
    return Value(t.FederatedType(result, CLIENTS),
                 _execution().map_clients(inner, v.payload, ts.all_equal))
  if not isinstance(ts, t.SequenceType):
    raise FederatedTypeError(op, "argument `value` must be a sequence.",
                             expected="T* or {T*}@CLIENTS", actual=ts)
  return body(v)


def sequence_map(fn: Any, value: Any) -> Value:
  """Applies `fn` to every element: `(T -> U), T* -> U*` (also on `{T*}@CLIENTS`)."""
  op = "sequence_map"

  def body(seq: Value) -> Value:
    element_fn, result = _function(op, "fn", fn, seq.type_signature.element)
    payload = None if seq.payload is None else _execution().sequence_map(element_fn, seq.payload)
    return Value(t.SequenceType(result), payload)

  return _sequence_op(op, value, body)


def sequence_reduce(value: Any, zero: Any, op_fn: Any) -> Value:
  """Folds a sequence: `T*, A, (<A,T> -> A) -> A` (also on `{T*}@CLIENTS`)."""
  op = "sequence_reduce"
  z = _arg(op, "zero", zero)
  a_type = _unplaced(op, "zero", z)

  def body(seq: Value) -> Value:
    step, result = _function(op, "op", op_fn, t.StructType([a_type, seq.type_signature.element]))
    _same(op, "op", a_type, result)
    payload = None if seq.payload is None else _execution().sequence_reduce(seq.payload, z.payload,
                                                                            step)
    return Value(a_type, payload)

  return _sequence_op(op, value, body)


def sequence_sum(value: Any) -> Value:
  """Sums a sequence's elements: `T* -> T` (numeric `T`; also on `{T*}@CLIENTS`)."""
  op = "sequence_sum"

  def body(seq: Value) -> Value:
    element = seq.type_signature.element
    if not t.is_numeric(element):
      raise FederatedTypeError(op, "the elements must be numeric.", expected="numeric T*",
                               actual=seq.type_signature)
    payload = None if seq.payload is None else _execution().sequence_sum(seq.payload, element)
    return Value(element, payload)

  return _sequence_op(op, value, body)


__all__ = [
    "federated_value", "federated_eval", "federated_broadcast", "federated_map", "federated_zip",
    "federated_sum", "federated_mean", "federated_min", "federated_max", "federated_stack",
    "federated_aggregate",
    "federated_secure_sum_bitwidth", "federated_secure_modular_sum", "federated_select",
    "federated_client_keys", "sequence_map", "sequence_reduce", "sequence_sum",
]
