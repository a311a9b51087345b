"""Bodies that hold strings: run in Python on the host, their string-free parts compiled.

A string cannot enter a JAX program, so the vectorized runtime runs a federated computation
whose values include strings (client ids, words) as host orchestration: the body runs eagerly,
client values are lists as in the sequential runtime, and host computations run in Python. Each
string-free part is handed to a compiled program of its own, as a call of the vectorized
runtime: a nested federated computation (a whole FedAvg round fed by a dataset computation),
a `federated_map` of a JAX computation over the clients, and the sums, means, minima, maxima
and stacks over them. So a round mixes host and compiled parts, and never falls back to the
sequential runtime.

The Ray runtime runs such bodies the same way on its driver, its compiled parts being Ray calls
(client data sent to the workers): both runtimes are a `CompiledRuntime`.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any, Optional, Protocol

from federax.core import context, intrinsics
from federax.core import types as t
from federax.core.computations import FederatedComputation, LocalCall, federated_computation
from federax.core.execution import HostOnly
from federax.core.host import holds_strings
from federax.core.placements import CLIENTS
from federax.core.sequences import SequenceIterationError
from federax.core.values import Value, contains_value
from federax.runtime import _convert, _invoke, host
from federax.runtime._base import RuntimeOptions
from federax.runtime.sequential import SequentialExecution, SequentialRuntime, _Lists
from federax.runtime.vectorized.stacking import Unstackable


class CompiledRuntime(Protocol):
  """What host orchestration needs of the runtime that runs its string-free parts."""

  options: RuntimeOptions
  host_bodies: weakref.WeakSet
  """Federated computations found to hold strings inside their body (`HostOnly`)."""

  @property
  def host_runtime(self) -> SequentialRuntime:
    """The runtime whose execution the host parts use (jitted local computations)."""

  def compiled_call(self, comp: FederatedComputation, signature: t.FunctionType,
                    python_arg: Any, clients: Optional[int] = None) -> Any:
    """`comp(python_arg)` compiled: Python argument in, Python result out (`clients`: the
    client count when no argument is placed at CLIENTS). Raises `HostOnly` if the body holds
    strings, `Unstackable` if the client data cannot be stacked, and `SequenceIterationError`
    if a local computation in it iterates a sequence."""

  def warn_fallback(self, why: str, comp: FederatedComputation,
                    hint: Optional[str] = None) -> None:
    """Says (once) that `comp` runs client by client, and why."""


class HostDataset:
  """A dataset on the host: iterated as element payloads by host code, and handed whole (to be
  stacked by the program's representation) to a compiled part."""

  __slots__ = ("source", "element_type", "where")

  def __init__(self, source: Any, element_type: t.Type, where: str):
    self.source = source
    self.element_type = element_type
    self.where = where

  def __iter__(self):
    for i, element in enumerate(self.source):
      yield _convert.local(element, self.element_type, f"{self.where}[element {i}]", "dataset")


class HostLists(_Lists):
  """The host's representation: client values are lists; datasets stay datasets."""

  def sequence(self, elements: Any, seq_type: t.SequenceType, where: str) -> Any:
    if isinstance(elements, list):
      return elements
    return HostDataset(elements, seq_type.element, where)


def on_host(runtime: CompiledRuntime, comp, signature: t.FunctionType) -> bool:
  """Whether `comp`'s body runs on the host: its type or its body holds strings."""
  return comp in runtime.host_bodies or _holds_strings(signature)


@functools.lru_cache(maxsize=256)
def _holds_strings(signature: t.FunctionType) -> bool:
  """Whether a signature holds strings; once per type."""
  return holds_strings(signature.parameter) or holds_strings(signature.result)


def invoke(runtime: CompiledRuntime, comp, signature: t.FunctionType, python_arg: Any,
           concrete=None) -> Any:
  """A top-level call on the host: a host computation, or a federated computation's body."""
  rep = HostLists()
  payload, n = _invoke.convert_argument(comp, signature, python_arg, rep)
  if concrete is not None:
    return _convert.to_python(host.call(concrete, payload, rep), signature.result, rep, 0)
  n = runtime.options.num_clients(n)
  with context.use_execution(HostExecution(runtime, n)):
    arg = None if signature.parameter is None else Value(signature.parameter, payload)
    result = comp.run_body(arg)
  return _convert.to_python(result.payload, signature.result, rep, n)


class HostExecution(SequentialExecution):
  """The sequential runtime's intrinsics, with each string-free part run as a compiled call of
  the runtime `compiled` (the vectorized or the Ray runtime; where it cannot compile, here, as
  before)."""

  _rep = HostLists()

  def __init__(self, compiled: CompiledRuntime, n: int):
    super().__init__(compiled.host_runtime, n)
    self.compiled = compiled

  def call_local(self, concrete, payload):
    if concrete.takes_sequences and not concrete.on_host:  # An fx.Sequence iterates lists.
      payload = _as_lists(payload, concrete.parameter)
    return super().call_local(concrete, payload)

  def call_federated(self, comp, arg):
    result = self._compiled_call(comp, arg)
    return comp.run_body(arg) if result is None else result

  def _compiled_call(self, comp: FederatedComputation, arg: Optional[Value]) -> Optional[Value]:
    """`comp(arg)` as a compiled call of the runtime `compiled`; None where it cannot be:
    its type or body holds strings, it is polymorphic, it captures a value of the enclosing
    body (a program could not read its host payload), its elements differ in shape, or a
    local computation in it iterates a sequence."""
    signature = comp.signature_for(None if arg is None else arg.type_signature)
    if comp.is_polymorphic or on_host(self.compiled, comp, signature) or _captures_values(comp):
      return None
    python_arg = None if arg is None else _to_argument(arg.payload, signature.parameter)
    try:
      result = self.compiled.compiled_call(comp, signature, python_arg, clients=self.n)
    except HostOnly:  # Strings inside its body.
      self.compiled.host_bodies.add(comp)
      return None
    except Unstackable as e:  # Client by client, as the runtime's fallback runs it.
      self.compiled.warn_fallback(e.why, comp, e.hint)
      return None
    except SequenceIterationError:  # Exact in Python, on this host.
      return None
    payload = _convert.argument(result, signature.result, self._rep, "result", comp.name, {})
    return Value(signature.result, payload)

  def _compiled_payload(self, comp: FederatedComputation, payload: Any) -> Optional[Any]:
    result = self._compiled_call(comp, Value(comp.type_signature.parameter, payload))
    return None if result is None else result.payload

  def map_clients(self, member_fn, payload, all_equal):
    if all_equal:  # Every client holds the same value: compute it once.
      return [member_fn(payload)] * self.n
    if isinstance(member_fn, LocalCall) and not member_fn.concrete.on_host and self.n:
      mapped = self._compiled_payload(_mapping(member_fn.computation, member_fn.concrete),
                                      payload)
      if mapped is not None:
        return mapped
    return [member_fn(p) for p in payload]

  def federated_sum(self, payload, ts):
    return self._aggregate("federated_sum", payload, ts)

  def federated_mean(self, payload, ts, weight, weight_type):
    if weight is None:
      return self._aggregate("federated_mean", payload, ts)
    mean = self._compiled_payload(_weighted_mean(ts, weight_type), (payload, weight)) if (
        self.n) else None
    return super().federated_mean(payload, ts, weight, weight_type) if mean is None else mean

  def federated_min(self, payload, ts):
    return self._aggregate("federated_min", payload, ts)

  def federated_max(self, payload, ts):
    return self._aggregate("federated_max", payload, ts)

  def federated_stack(self, payload, ts):
    return self._aggregate("federated_stack", payload, ts)

  def _aggregate(self, name: str, payload, ts):
    result = self._compiled_payload(_aggregation(name, ts), payload) if self.n else None
    return getattr(super(), name)(payload, ts) if result is None else result


def _captures_values(comp: FederatedComputation) -> bool:
  for cell in comp.__wrapped__.__closure__ or ():
    try:
      if contains_value(cell.cell_contents):
        return True
    except ValueError:  # A cell not yet filled.
      pass
  return False


def _as_lists(payload: Any, ts: t.Type) -> Any:
  """A payload with its datasets read into lists of element payloads."""
  if isinstance(ts, t.SequenceType):
    return list(payload)
  if isinstance(ts, t.StructType):
    return tuple(_as_lists(p, e) for p, e in zip(payload, ts))
  return payload


def _to_argument(payload: Any, ts: t.Type) -> Any:
  """A host payload as a Python argument of type `ts` for a compiled call."""
  if isinstance(ts, t.FederatedType):
    if ts.placement is CLIENTS and not ts.all_equal:
      return [_to_argument(m, ts.member) for m in payload]
    return _to_argument(payload, ts.member)
  if isinstance(ts, t.SequenceType):
    return payload.source if isinstance(payload, HostDataset) else list(payload)
  if isinstance(ts, t.StructType):
    return tuple(_to_argument(p, e) for p, e in zip(payload, ts))
  return payload


# --- The one-intrinsic computations a host body's string-free intrinsics compile to ----------

_mappings: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _mapping(computation, concrete) -> FederatedComputation:
  """`federated_map(computation, {T}@CLIENTS)` at the concrete's parameter `T`, once per one."""
  if concrete not in _mappings:
    fn = weakref.ref(computation)  # The cache holds its computation weakly.

    def mapped(values):
      return intrinsics.federated_map(fn(), values)

    mapped.__qualname__ = mapped.__name__ = f"federated_map({concrete.name})"
    _mappings[concrete] = federated_computation(
        t.FederatedType(concrete.parameter, CLIENTS))(mapped)
  return _mappings[concrete]


@functools.lru_cache(maxsize=256)
def _aggregation(name: str, ts: t.FederatedType) -> FederatedComputation:
  aggregate = getattr(intrinsics, name)
  return federated_computation(ts)(lambda values: aggregate(values))


@functools.lru_cache(maxsize=256)
def _weighted_mean(ts: t.FederatedType, weight_type: t.FederatedType) -> FederatedComputation:
  return federated_computation(ts, weight_type)(
      lambda values, weight: intrinsics.federated_mean(values, weight))
