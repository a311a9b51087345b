"""Computations: `@fx.computation` (local JAX code) and `@fx.federated_computation`."""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from typing import Any, Optional

import jax
import numpy as np

from federax.core import _host_random
from federax.core import context, host, loops
from federax.core import types as t
from federax.core.errors import FederatedTypeError, without_library_frames
from federax.core.execution import Execution
from federax.core.rows import RowMasked, RowMaskNotHonoured, find_row_masked
from federax.core.sequences import (SequenceIterationError, recording_iterations, to_payload,
                                    to_user)
from federax.core.type_conversions import make_container, to_type, type_of
from federax.core.values import Value, to_value


class TypingExecution(Execution):
  """The execution used while tracing a body at definition time: only types flow.

  Every payload is None, so each hook returns None; the intrinsics have checked the types.
  """

  def __repr__(self) -> str:
    return "TypingExecution()"

  def constant(self, obj, value_type):
    return None

  def project(self, payload, ts, index):
    return None

  def call_local(self, concrete, payload):
    return None

  def call_federated(self, comp, arg):
    return comp.run_body(arg)

  def broadcast(self, payload):
    return None

  def federated_eval(self, member_fn, placement, takes_key):
    return None

  def client_keys(self, key):
    return None

  def map_clients(self, member_fn, payload, all_equal):
    return None

  def zip_clients(self, payloads, all_equal_flags):
    return None

  def federated_sum(self, payload, ts):
    return None

  def federated_mean(self, payload, ts, weight, weight_type):
    return None

  def federated_min(self, payload, ts):
    return None

  def federated_max(self, payload, ts):
    return None

  def federated_stack(self, payload, ts):
    return None

  def federated_aggregate(self, payload, ts, zero, accumulate, merge, report):
    return None

  def federated_secure_sum_bitwidth(self, payload, ts, bits):
    return None

  def federated_secure_modular_sum(self, payload, ts, modulus):
    return None

  def federated_select(self, keys, max_key, server_val, select_fn):
    return None

  def sequence_map(self, fn, seq):
    return None

  def sequence_reduce(self, seq, zero, step):
    return None

  def sequence_sum(self, seq, element_type):
    return None


def callable_name(fn: Any) -> str:
  """The name messages give a function: its `__qualname__`; `partial(f)` for a
  `functools.partial` of `f`; the class name of a callable object.

  Example:
    >>> callable_name(functools.partial(np.reshape, newshape=(2,)))
    'partial(reshape)'
  """
  if isinstance(fn, functools.partial):
    return f"partial({callable_name(fn.func)})"
  name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
  return name if isinstance(name, str) else type(fn).__qualname__


def _parameter_names(fn: Callable) -> list[str]:
  names = []
  for p in inspect.signature(fn).parameters.values():
    if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
      raise TypeError(f"{callable_name(fn)}: computations cannot take *args or **kwargs.")
    if p.default is p.empty:
      names.append(p.name)
  return names


class _Signature:
  """How a Python function's parameters map onto one federated parameter type.

  One parameter takes the value itself; several take the elements of a struct named after
  the parameters (TFF's convention).
  """

  def __init__(self, fn: Callable, declared: tuple):
    self.names = _parameter_names(fn)
    self.declared = None
    if declared:
      types = [to_type(d) for d in declared]
      if len(types) == len(self.names) == 1:
        self.declared = types[0]
      elif len(types) == len(self.names):
        self.declared = t.StructType(list(zip(self.names, types)))
      elif (len(types) == 1 and isinstance(types[0], t.StructType)
            and len(types[0]) == len(self.names) > 1):
        self.declared = types[0]
      else:
        raise TypeError(
            f"{callable_name(fn)} takes {len(self.names)} parameter(s) {self.names} but "
            f"{len(types)} type(s) were declared: {', '.join(map(str, types))}.")

  @property
  def unpacks(self) -> bool:
    return len(self.names) > 1

  def type_of_args(self, args: tuple) -> Optional[t.Type]:
    if not self.names:
      return None
    if len(self.names) == 1:
      return type_of(args[0])
    return t.StructType([(n, type_of(a)) for n, a in zip(self.names, args)])

  def pack(self, args: tuple, kwargs: dict, qualname: str) -> tuple:
    """Positional arguments, one per parameter (kwargs bound by name)."""
    if kwargs:
      missing = [n for n in self.names[len(args):] if n not in kwargs]
      unknown = [k for k in kwargs if k not in self.names]
      if unknown or missing:
        raise TypeError(f"{qualname}: unexpected {unknown} / missing {missing} arguments.")
      args = tuple(args) + tuple(kwargs[n] for n in self.names[len(args):])
    if len(args) == 1 and len(self.names) > 1:
      return tuple(args[0]) if isinstance(args[0], Value) else (args[0],)
    if len(args) != len(self.names):
      raise TypeError(f"{qualname} takes {len(self.names)} argument(s) {self.names}, "
                      f"got {len(args)}.")
    return tuple(args)


class Computation:
  """Base class: a typed function that runs in the current runtime when called."""

  _signature: _Signature
  _fn: Callable

  @property
  def name(self) -> str:
    """The function's name, as messages show it (see `callable_name`)."""
    return callable_name(self._fn)

  @property
  def type_signature(self) -> t.FunctionType:
    raise NotImplementedError

  def _arg_value(self, args: tuple, kwargs: dict) -> Optional[Value]:
    """One `Value` for the arguments of an inline call (inside another computation)."""
    sig = self._signature
    if not sig.names:
      if args or kwargs:
        raise TypeError(f"{self.name} takes no arguments.")
      return None
    if len(args) == 1 and not kwargs and len(sig.names) > 1:
      value = to_value(args[0])
      if isinstance(value.type_signature, t.StructType):
        return value
    values = [to_value(a) for a in sig.pack(args, kwargs, self.name)]
    if len(values) == 1:
      return values[0]
    struct = t.StructType([(n, v.type_signature) for n, v in zip(sig.names, values)])
    payloads = tuple(v.payload for v in values)
    return Value(struct, None if all(p is None for p in payloads) else payloads)

  def _check_argument(self, expected: Optional[t.Type], actual: Optional[t.Type]) -> None:
    if expected is None and actual is None:
      return
    if expected is None or actual is None:  # One of them takes or gives no argument.
      raise FederatedTypeError(
          self.name, "argument has the wrong type.",
          expected="no argument" if expected is None else expected,
          actual="no argument" if actual is None else actual,
          hint=f"the computation's type is {self.type_signature}")
    if not expected.is_assignable_from(actual):
      raise FederatedTypeError(
          self.name, "argument has the wrong type.",
          differences=t.differences(expected, actual),
          hint=f"the computation's type is {self.type_signature}")


# --- Local computations --------------------------------------------------------------------------


class LocalComputation(Computation):
  """A JAX function of pytrees, typed (declared parameter types) or polymorphic.

  Created with `@fx.computation`. Called outside a federated computation it runs (jitted)
  in the current runtime; inside one it applies to unplaced values; `fx.federated_map`
  applies it to each client's value. One on strings, or returning a sequence, runs on the host
  instead (`federax.core.host`).
  """

  def __init__(self, fn: Callable, declared: tuple, result: Any = None,
               row_mask: Optional[Callable] = None):
    functools.update_wrapper(self, fn)
    self._fn = fn
    self._signature = _Signature(fn, declared)
    self._result = None if result is None else to_type(result)
    self._row_mask = row_mask
    self._concrete: dict[Optional[t.Type], ConcreteLocal] = {}
    self._typed = None
    if declared or not self._signature.names:
      self._typed = ConcreteLocal(fn, self._signature, self._signature.declared, self._result,
                                  row_mask)

  @property
  def is_polymorphic(self) -> bool:
    return self._typed is None

  @property
  def type_signature(self) -> t.FunctionType:
    if self._typed is None:
      raise AttributeError(
          f"{self.name} is polymorphic (declared without types); it is typed at "
          "each use. Declare types, e.g. @fx.computation(np.float32), to give it one signature.")
    return self._typed.type_signature

  def __repr__(self) -> str:
    sig = "polymorphic" if self._typed is None else str(self._typed.type_signature)
    return f"<fx.computation {self.name}: {sig}>"

  def concretize(self, parameter: Optional[t.Type]) -> ConcreteLocal:
    """The typed form for an argument of type `parameter` (raises if it does not fit)."""
    if self._typed is not None:
      if parameter is not None and not self._typed.parameter.is_assignable_from(parameter):
        self._check_argument(self._typed.parameter, parameter)
      return self._typed
    if parameter not in self._concrete:
      self._concrete[parameter] = ConcreteLocal(self._fn, self._signature, parameter,
                                                self._result, self._row_mask)
    return self._concrete[parameter]

  def __call__(self, *args, **kwargs):
    if context.in_local_body():
      return self._inline(args, kwargs)
    execution = context.current_execution()
    if execution is None:
      return context.current_runtime().invoke(self, args, kwargs)
    arg = self._arg_value(args, kwargs)
    arg_type = None if arg is None else arg.type_signature
    if arg_type is not None and t.contains(arg_type, lambda x: isinstance(x, t.FederatedType)):
      raise FederatedTypeError(
          self.name, "a local computation was called with a federated value.",
          expected=self._typed.parameter if self._typed else "an unplaced value", actual=arg_type,
          hint="apply it to each member with fx.federated_map(fn, value)")
    concrete = self.concretize(arg_type)
    payload = None if arg is None else arg.payload
    return Value(concrete.result, execution.call_local(concrete, payload))

  def _inline(self, args: tuple, kwargs: dict) -> Any:
    """Called inside another local computation's function: inlined into the caller's trace,
    its argument checked (and converted) as a top-level call's is, its result in its own
    containers."""
    sig = self._signature
    if not sig.names:
      if args or kwargs:
        raise TypeError(f"{self.name} takes no arguments.")
      concrete = self.concretize(None)
      return to_user(concrete(None), concrete.result, context.local_body_execution())
    if len(args) == 1 and not kwargs and sig.unpacks:
      python_arg = args[0]  # One struct for all the parameters.
      actual = _type_of_argument(python_arg, self.name, "argument")
    else:
      packed = sig.pack(args, kwargs, self.name)
      python_arg = packed[0] if len(packed) == 1 else packed
      types = [_type_of_argument(a, self.name, f"argument `{n}`")
               for n, a in zip(sig.names, packed)]
      actual = t.StructType(list(zip(sig.names, types))) if sig.unpacks else types[0]
    parameter = actual if self._typed is None else self._typed.parameter
    if not _converts(parameter, actual):
      raise FederatedTypeError(
          self.name, "argument has the wrong type.",
          differences=t.differences(parameter, actual) or [("(value)", str(parameter),
                                                            str(actual))],
          hint=f"the computation's type is {self._typed.type_signature}" if self._typed else None)
    concrete = self.concretize(parameter)
    if concrete.on_host:  # Python calling Python: its function, on the arguments as given.
      return self._fn(*args, **kwargs)
    return to_user(concrete(to_payload(python_arg, parameter)), concrete.result,
                   context.local_body_execution())


class ConcreteLocal:
  """A local computation at one parameter type: its result type and payload function.

  `on_host` when it runs in Python on NumPy values (`federax.core.host`): its parameter or
  result holds a string, or JAX cannot trace it and it returns a sequence (a dataset built in
  Python). Its result type is then found by running it once on example values, unless declared.

  `row_mask`, when declared, is `fn(batch, mask) -> batch`: how the function takes a batch a
  runtime padded with zero rows (`federax.core.rows`); without it a padded batch raises
  `RowMaskNotHonoured`.
  """

  def __init__(self, fn: Callable, signature: _Signature, parameter: Optional[t.Type],
               result: Optional[t.Type] = None, row_mask: Optional[Callable] = None):
    self.fn = fn
    self.signature = signature
    self.parameter = parameter
    self.row_mask = row_mask
    self.name = callable_name(fn)
    self.on_host = False  # Decided with the result type, below.
    self._converted: Optional[Callable] = None  # `fn` with its loops compiled (`core.loops`).
    if parameter is not None:
      _check_local_type(self.name, "parameter", parameter)
    self.result, self.on_host = _infer_result_type(self, result)
    _check_local_type(self.name, "result", self.result)
    self.type_signature = t.FunctionType(parameter, self.result)

  @property
  def takes_sequences(self) -> bool:
    return self.parameter is not None and t.contains(
        self.parameter, lambda x: isinstance(x, t.SequenceType))

  def call_user(self, payload: Any, on_host: Optional[bool] = None) -> Any:
    """Calls the user's function on a payload; returns the user's raw output.

    The function runs as a local body (`context.use_local_body`): computations it calls are
    inlined, and the execution that called it runs the loops of its sequences. On the host
    (`on_host`, by default the computation's own) it gets host values (`core.host.user_value`).
    """
    if context.in_local_body():
      execution = context.local_body_execution()
    else:
      execution = context.current_execution()
    if self.on_host if on_host is None else on_host:
      convert = host.user_value
    else:
      convert = lambda p, et: to_user(p, et, execution)
    with context.use_local_body(execution):
      try:
        if self._converted is not None:
          return loops.run_converted(lambda: self._call(self._converted, convert, payload))
        try:
          return self._call(self.fn, convert, payload)
        except SequenceIterationError:  # A Python loop over a padded sequence: compile it.
          self._converted = loops.convert(self.fn)
          if self._converted is None:
            raise
          return loops.run_converted(lambda: self._call(self._converted, convert, payload))
      except RowMaskNotHonoured as e:  # A padded batch reached the function's own code.
        if e.consumer is not None:
          raise
        raise RowMaskNotHonoured(self._short_name, e.reason, e.fix) from None

  def _call(self, fn: Callable, convert: Callable, payload: Any) -> Any:
    if self.parameter is None:
      return fn()
    if self.signature.unpacks:
      return fn(*[self._to_user(convert, p, et) for p, et in zip(payload, self.parameter)])
    return fn(self._to_user(convert, payload, self.parameter))

  @property
  def _short_name(self) -> str:
    return self.name.rsplit(".", 1)[-1]

  def _to_user(self, convert: Callable, payload: Any, type_spec: t.Type) -> Any:
    """The user's structure of a payload (`convert`); a padded batch goes through `row_mask`."""
    if find_row_masked(payload) is None:
      return convert(payload, type_spec)
    if isinstance(payload, RowMasked):
      if self.row_mask is None:
        raise RowMaskNotHonoured(self._short_name)
      try:
        return self.row_mask(convert(payload.value, type_spec), payload.mask)
      except RowMaskNotHonoured as e:
        raise RowMaskNotHonoured(e.consumer or self._short_name, e.reason, e.fix) from None
    return make_container(tuple(self._to_user(convert, p, et)
                                for p, et in zip(payload, type_spec)), type_spec)

  def __call__(self, payload: Any) -> Any:
    """Payload in, payload out: traceable by `jax.jit`, `vmap` and `scan`. (A host computation
    is called through `federax.runtime.host`.)"""
    return _from_user(self.call_user(payload), self.result, self.name)

  def __repr__(self) -> str:
    return f"<ConcreteLocal {self.name}: {self.type_signature}>"


class LocalCall:
  """A local computation as an intrinsic's payload function: applies it through the current
  execution's `call_local`, and names it, so an execution may run it its own way (the
  vectorized runtime's host execution compiles a JAX one over all clients at once)."""

  __slots__ = ("computation", "concrete")

  def __init__(self, computation: LocalComputation, concrete: ConcreteLocal):
    self.computation = computation
    self.concrete = concrete

  def __call__(self, payload: Any) -> Any:
    return context.current_execution().call_local(self.concrete, payload)


class FederatedCall:
  """A federated computation of unplaced values as an intrinsic's payload function: runs its
  body on the payload. A named object (not a fresh closure per call), so a runtime that ships
  client functions to other processes pickles it once per (computation, parameter type)."""

  __slots__ = ("computation", "parameter")

  def __init__(self, computation: "FederatedComputation", parameter: Optional[t.Type]):
    self.computation = computation
    self.parameter = parameter

  def __call__(self, payload: Any) -> Any:
    arg = None if self.parameter is None else Value(self.parameter, payload)
    return self.computation.run_body(arg).payload


def _check_local_type(name: str, what: str, type_spec: t.Type) -> None:
  if t.contains(type_spec, lambda x: isinstance(x, (t.FederatedType, t.FunctionType))):
    raise FederatedTypeError(
        name, f"a local (JAX) computation's {what} must be tensors, sequences, or structs of "
        "these.", actual=type_spec,
        hint="apply local computations to federated values with fx.federated_map")


def _from_user(output: Any, type_spec: t.Type, name: str) -> Any:
  try:
    return to_payload(output, type_spec)
  except (ValueError, TypeError) as e:
    raise FederatedTypeError(name, f"the function returned a different structure ({e}).",
                             expected=type_spec, actual=type(output).__name__) from None


def _type_of_argument(value: Any, name: str, what: str) -> t.Type:
  try:
    return type_of(value)
  except TypeError:
    raise FederatedTypeError(name, f"{what} has no federated type.",
                             actual=f"{value!r:.60} (a {type(value).__name__})") from None


def _converts(expected: t.Type, actual: t.Type) -> bool:
  """Whether an inline argument of type `actual` converts to `expected` as a top-level call's
  does: tensors of the same kind or safely castable dtypes (an int literal for a float)."""
  if isinstance(expected, t.TensorType) and isinstance(actual, t.TensorType):
    return (np.can_cast(actual.dtype, expected.dtype, "same_kind")
            and expected.is_assignable_from(t.TensorType(expected.dtype, actual.shape)))
  if isinstance(expected, t.StructType) and isinstance(actual, t.StructType):
    return len(expected) == len(actual) and all(
        en in (None, an) and _converts(et, at)
        for (en, et), (an, at) in zip(expected.items(), actual.items()))
  return expected.is_assignable_from(actual)


def _abstract(type_spec: t.Type, unknown: int) -> Any:
  """An abstract payload of `type_spec`: `unknown` for unknown dimensions, and a sequence is a
  list of `unknown` elements (so what depends on its length is unknown in the result type)."""
  if isinstance(type_spec, t.TensorType):
    if type_spec.shape is None:
      raise FederatedTypeError("fx.computation", "parameters need a known rank.",
                               actual=type_spec)
    shape = tuple(unknown if d is None else d for d in type_spec.shape)
    return jax.ShapeDtypeStruct(shape, type_spec.dtype)
  if isinstance(type_spec, t.SequenceType):
    return [_abstract(type_spec.element, unknown)] * unknown
  return tuple(_abstract(e, unknown) for e in type_spec)


class _ReturnsStrings(Exception):
  """Abstract evaluation met a function returning strings: it runs on the host."""


def _infer_result_type(concrete: ConcreteLocal,
                       declared: Optional[t.Type]) -> tuple[t.Type, bool]:
  """(the result type, whether the computation runs on the host).

  JAX's abstract evaluation types a JAX function. A function on strings runs on the host, as
  does one JAX cannot trace that returns a sequence (a dataset built in Python): its type is
  the declared one, or found by running it on example values.
  """
  if host.holds_strings(concrete.parameter) or host.holds_strings(declared):
    return (declared if declared is not None else _infer_on_host(concrete)), True
  try:
    inferred, on_host = _infer_with_jax(concrete), False
  except _ReturnsStrings:
    inferred, on_host = _infer_on_host(concrete), True
  except FederatedTypeError:
    try:
      inferred = declared if declared is not None else _infer_on_host(concrete)
    except FederatedTypeError:
      inferred = None
    if inferred is None or not host.made_on_host(inferred):
      raise  # Not a host computation: the abstract evaluation's error stands.
    return inferred, True
  if declared is None:
    return inferred, on_host
  if declared.is_assignable_from(inferred):
    return declared, on_host
  if not on_host and host.made_on_host(declared):  # A list for a sequence: built on the host.
    return declared, True
  raise FederatedTypeError(concrete.name, "the function returns values of another type than "
                           "the declared result.", differences=t.differences(declared, inferred))


def _has_unknown(type_spec: Optional[t.Type]) -> bool:
  return type_spec is not None and t.contains(
      type_spec, lambda x: isinstance(x, t.TensorType) and x.shape and None in x.shape)


def _infer_with_jax(concrete: ConcreteLocal) -> t.Type:
  """The result type, by abstract evaluation; a dimension that follows an unknown one is `?`."""
  def run(unknown: int) -> t.Type:
    captured = []

    def traced(payload):
      out = concrete.call_user(payload)
      if out is None:
        raise FederatedTypeError(concrete.name, "the function returned None.",
                                 hint="return the computation's result")
      captured.append(type_of(out))
      if host.holds_strings(captured[-1]):
        raise _ReturnsStrings()
      # The internal tuple form: the user's container (a dataclass, say) need not be a pytree.
      return _from_user(out, captured[-1], concrete.name)

    abstract = None if concrete.parameter is None else _abstract(concrete.parameter, unknown)
    try:
      with _host_random.watch() as seen:
        jax.eval_shape(traced, abstract)
      concrete.draws_host_randomness = seen.drawn
    except (FederatedTypeError, _ReturnsStrings):
      raise
    except Exception as e:  # The user's code failed on the declared types: say which.
      raise FederatedTypeError(
          concrete.name, f"the function fails on arguments of its declared type "
          f"({type(e).__name__}: {e}).", actual=concrete.parameter) from e
    return captured[0]

  with recording_iterations() as iterations:
    first = run(5)
  # A sequence's length matters only to a function that iterates it (reduce and map do not).
  return _merge_unknown(first, run(7)) if _has_unknown(concrete.parameter) or iterations else first


def _infer_on_host(concrete: ConcreteLocal) -> t.Type:
  """The result type of a host computation, from running it on example values (empty strings,
  zeros, empty sequences), twice where the parameter has unknown dimensions."""
  hint = ("declare the result type: @fx.computation(<parameter types>, result=<its type>), "
          "e.g. result=np.int32 or result=(np.str_, [None])")

  def run(unknown: int) -> t.Type:
    try:
      payload = None if concrete.parameter is None else host.example(concrete.parameter, unknown)
      out = concrete.call_user(payload, on_host=True)
    except Exception as e:
      raise FederatedTypeError(
          concrete.name, "the result type of a host computation (one on strings, which runs in "
          "Python) is found by running it once on example values (empty strings, zeros, empty "
          f"sequences), and that failed ({type(e).__name__}: {e}).", actual=concrete.parameter,
          hint=hint) from None
    try:
      return type_of(out)
    except TypeError as e:
      raise FederatedTypeError(concrete.name, f"the function returned a value without a "
                               f"federated type ({e}).", hint=hint) from None

  first = run(5)
  if not _has_unknown(concrete.parameter):
    return first
  try:
    return _merge_unknown(first, run(7))
  except (ValueError, TypeError):
    raise FederatedTypeError(concrete.name, "the structure of the result depends on the sizes "
                             "of the argument.", hint=hint) from None


def _merge_unknown(a: t.Type, b: t.Type) -> t.Type:
  if isinstance(a, t.TensorType) and isinstance(b, t.TensorType) and a.dtype == b.dtype and (
      a.shape is not None and b.shape is not None and len(a.shape) == len(b.shape)):
    return t.TensorType(a.dtype, [x if x == y else None for x, y in zip(a.shape, b.shape)])
  if isinstance(a, t.SequenceType) and isinstance(b, t.SequenceType):
    return t.SequenceType(_merge_unknown(a.element, b.element))
  if isinstance(a, t.StructType) and isinstance(b, t.StructType) and a.names() == b.names():
    return t.StructType([(n, _merge_unknown(x, y)) for (n, x), y in zip(a.items(), b)],
                        a.container_type)
  raise ValueError(f"{a} and {b} differ")


def computation(*args, result: Any = None, row_mask: Optional[Callable] = None) -> Any:
  """Declares a local computation: a pure JAX function of tensors and structures.

  Use as `@fx.computation` (polymorphic: typed at each use) or `@fx.computation(T1, T2)`
  with one type per parameter (anything `fx.to_type` accepts), or TFF's way on a function:
  `fx.computation(fn, T1, T2)`.

  A computation whose parameter or result holds a string runs on the host, in Python on NumPy
  values (JAX cannot hold strings; `federax.core.host`), as does one JAX cannot trace that
  returns a dataset (a `Dataset` or list). Its result type is found by running it once on
  example values (empty strings, zeros, empty sequences); `result=` declares it where that
  cannot work (`@fx.computation(np.str_, result=(np.int32, [2]))` for a parser).

  `row_mask=fn` is for a function that masks padded rows: `fn(batch, mask) -> batch` says how
  it takes a batch the vectorized runtime padded with zero rows (`mask` is bool[B], True for
  real rows). Without it, a short last batch (`batch(20)`) sends the call to the sequential
  runtime, which passes the real short batch (`federax.core.rows`).

  Example:
    >>> @fx.computation(np.float32)
    ... def add_half(x):
    ...   return x + 0.5
    >>> str(add_half.type_signature)
    '(float32 -> float32)'
    >>> float(add_half(1.0))
    1.5
    >>> @fx.computation(np.str_)
    ... def length(word):
    ...   return len(word)
    >>> str(length.type_signature), int(length('federated'))
    ('(str -> int32)', 9)
  """
  if args and callable(args[0]) and not _is_type_spec(args[0]):  # TFF's `computation(fn, *T)`
    return LocalComputation(args[0], args[1:], result, row_mask)
  return lambda fn: LocalComputation(fn, args, result, row_mask)


def _is_type_spec(obj: Any) -> bool:
  if isinstance(obj, t.Type):
    return True
  try:
    to_type(obj)
    return True
  except TypeError:
    return False


# --- Federated computations ----------------------------------------------------------------------


class FederatedComputation(Computation):
  """A function whose body calls intrinsics and other computations.

  Created with `@fx.federated_computation(*types)`; traced at definition, so its
  `type_signature` is known and misuse is reported before any call.
  """

  def __init__(self, fn: Callable, declared: tuple):
    functools.update_wrapper(self, fn)
    self._fn = fn
    self._signature = _Signature(fn, declared)
    self._traced: dict[Optional[t.Type], t.FunctionType] = {}
    self._type = None
    if declared or not self._signature.names:
      self._type = self._trace(self._signature.declared)

  @property
  def type_signature(self) -> t.FunctionType:
    if self._type is None:
      raise AttributeError(
          f"{self.name} is polymorphic (declared without types); declare the "
          "parameter types, e.g. @fx.federated_computation(fx.FederatedType(np.float32, "
          "fx.CLIENTS)), to give it a type signature.")
    return self._type

  @property
  def is_polymorphic(self) -> bool:
    return self._type is None

  def __repr__(self) -> str:
    sig = "polymorphic" if self._type is None else str(self._type)
    return f"<fx.federated_computation {self.name}: {sig}>"

  def signature_for(self, parameter: Optional[t.Type]) -> t.FunctionType:
    """The type signature for an argument of type `parameter` (tracing if polymorphic)."""
    if self._type is not None:
      self._check_argument(self._type.parameter, parameter)
      return self._type
    if parameter not in self._traced:
      self._traced[parameter] = self._trace(parameter)
    return self._traced[parameter]

  def _trace(self, parameter: Optional[t.Type]) -> t.FunctionType:
    with context.use_execution(TypingExecution()):
      try:
        result = self.run_body(None if parameter is None else Value(parameter, None))
      except FederatedTypeError as e:
        raise e.with_traceback(without_library_frames(e.__traceback__)) from None
    return t.FunctionType(parameter, result.type_signature)

  def run_body(self, arg: Optional[Value]) -> Value:
    """Runs the Python body on `arg` under the current execution; returns the result."""
    if arg is None:
      out = self._fn()
    elif self._signature.unpacks:
      out = self._fn(*arg)
    else:
      out = self._fn(arg)
    if out is None:
      raise FederatedTypeError(self.name, "the body returned None.",
                               hint="return the computation's result")
    return to_value(out)

  def __call__(self, *args, **kwargs):
    if context.in_local_body():
      raise FederatedTypeError(
          self.name, "a federated computation cannot be called inside a local computation "
          "(@fx.computation), whose values are JAX arrays.",
          hint="call it from a @fx.federated_computation, or make it a @fx.computation")
    execution = context.current_execution()
    if execution is None:
      return context.current_runtime().invoke(self, args, kwargs)
    arg = self._arg_value(args, kwargs)
    self.signature_for(None if arg is None else arg.type_signature)
    return execution.call_federated(self, arg)


def federated_computation(*args) -> Any:
  """Declares a federated computation; with types, traced (and type-checked) at once.

  Use as `@fx.federated_computation(T1, T2, ...)` with one type per parameter, or bare for
  a function without parameters (or a polymorphic one, typed at first inline use), or call
  it TFF's way on a function: `fx.federated_computation(fn, T1, T2, ...)`.

  Example:
    >>> @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
    ... def get_average_temperature(sensor_readings):
    ...   return fx.federated_mean(sensor_readings)
    >>> str(get_average_temperature.type_signature)
    '({float32}@CLIENTS -> float32@SERVER)'
  """
  if args and callable(args[0]) and not _is_type_spec(args[0]):  # TFF's `(fn, *types)` call
    return FederatedComputation(args[0], args[1:])
  return lambda fn: FederatedComputation(fn, args)


_wrapped_functions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def as_computation(fn: Any) -> Computation:
  """A computation for `fn`: itself if it is one, else a polymorphic local computation."""
  if isinstance(fn, Computation):
    return fn
  if callable(fn):
    try:
      return _wrapped_functions[fn]
    except (KeyError, TypeError):
      pass
    comp = LocalComputation(fn, ())
    try:
      _wrapped_functions[fn] = comp  # So each use of one function shares its typed forms.
    except TypeError:
      pass
    return comp
  raise TypeError(f"Expected a computation or a Python function, got {fn!r}.")
