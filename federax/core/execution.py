"""The seam between the core and the runtimes: what carries out intrinsics, and what runs calls.

The core checks every intrinsic's types and computes its result type; an `Execution` computes
the result's *payload*. An execution is active while a federated computation's body runs: the
typing pass at definition (`TypingExecution`: only types flow, every payload is None), and one
per call in each runtime (array operations on a client axis in `vectorized`, Python lists in
`sequential`). A `Runtime` runs a top-level call: it converts Python arguments into payloads,
runs the body under its execution and converts the result back.

Payloads are the runtime's business. The core passes them through untouched, together with the
checked types (`ts`) an execution may need to interpret them.

Every runtime's execution subclasses `Execution` explicitly; defining the class fails if a hook
is missing, or if the class defines a public method that is not a hook (a misspelled one).

Strings are host values: JAX cannot hold them, so a local computation whose parameter or result
holds one (`ConcreteLocal.on_host`) runs in Python on NumPy values. An execution that compiles
the body into one program raises `HostOnly` from `constant` or `call_local` when the body
reaches a string; its runtime then runs that body on the host, where `call_federated` lets it
hand each string-free nested computation back to a compiled program.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional, Protocol, runtime_checkable

if TYPE_CHECKING:
  from federax.core import types as t
  from federax.core.computations import Computation, ConcreteLocal, FederatedComputation
  from federax.core.placements import Placement
  from federax.core.values import Value


class HostOnly(Exception):
  """A compiling execution met a string (a constant, or a host computation's call): the body
  must run on the host. Raised while a program is traced; the runtime catches it."""


Payload = Any
"""A runtime's representation of a value (None while only types flow)."""
PayloadFn = Callable[[Payload], Payload]
"""A function on member payloads (a local computation applied to one client's value)."""


class Execution(abc.ABC):
  """The intrinsics' payload hooks. Each takes payloads and checked types, returns a payload.

  Client values (`{T}@CLIENTS`) hold one member per client; an all-equal one (`T@CLIENTS`,
  `all_equal` in its type or flag) may be represented as the single shared member.
  """

  HOOKS: tuple[str, ...] = ()  # Filled below from the abstract methods.

  def __init_subclass__(cls, **kwargs):
    # At class definition, so a runtime with a missing or misspelled hook fails at import.
    super().__init_subclass__(**kwargs)
    missing = [h for h in Execution.HOOKS if getattr(cls, h) is getattr(Execution, h)]
    unknown = [name for name, value in vars(cls).items()
               if callable(value) and not name.startswith("_") and name not in Execution.HOOKS]
    if missing or unknown:
      raise TypeError(
          f"{cls.__qualname__} does not implement the Execution protocol: "
          + "; ".join(filter(None, [missing and f"missing hooks {missing}",
                                     unknown and f"public methods that are not hooks {unknown} "
                                     "(misspelled? make helpers private)"]))
          + f". The hooks are: {', '.join(Execution.HOOKS)}.")

  # --- Values ------------------------------------------------------------------------------------

  @abc.abstractmethod
  def constant(self, obj: Any, value_type: t.Type) -> Payload:
    """The payload of a Python constant of `value_type` captured in a body."""

  @abc.abstractmethod
  def project(self, payload: Payload, ts: t.FederatedType, index: int) -> Payload:
    """Element `index` of a federated struct of type `ts` (`v.a`, `v[0]` on `{<a,b>}@CLIENTS`)."""

  @abc.abstractmethod
  def call_local(self, concrete: ConcreteLocal, payload: Payload) -> Payload:
    """A local computation applied to an unplaced payload (on the host if `concrete.on_host`).

    Intrinsics pass a local computation as a `LocalCall` payload function, which calls this
    hook and names the computation (`.concrete`), so an execution may run it its own way."""

  @abc.abstractmethod
  def call_federated(self, comp: FederatedComputation, arg: Optional[Value]) -> Value:
    """A nested federated computation applied to `arg`: its result (a `Value`, not a payload).

    Runs the body inline (`comp.run_body(arg)`), unless the execution hands it to a program
    of its own (the vectorized runtime's host execution compiles a string-free one)."""

  @abc.abstractmethod
  def broadcast(self, payload: Payload) -> Payload:
    """A server (or unplaced) value placed at every client: the payload of `T@CLIENTS`."""

  # --- Clients -----------------------------------------------------------------------------------

  @abc.abstractmethod
  def federated_eval(self, member_fn: Callable[[Any], Payload], placement: Placement,
                     takes_key: bool) -> Payload:
    """`member_fn` evaluated at `placement`; with `takes_key` it receives a PRNG key (client `i`
    the key `client_key(eval_key(seed, call), i)`), else None."""

  @abc.abstractmethod
  def client_keys(self, key: Payload) -> Payload:
    """Client `i`'s key `client_key(key, i)` from a server key: `{uint32[2]}@CLIENTS`."""

  @abc.abstractmethod
  def map_clients(self, member_fn: PayloadFn, payload: Payload, all_equal: bool) -> Payload:
    """`member_fn` applied to every client's member of `payload`: `{U}@CLIENTS`."""

  @abc.abstractmethod
  def zip_clients(self, payloads: tuple, all_equal_flags: list[bool]) -> Payload:
    """Client values zipped into one client value of tuples (flags: which are all-equal)."""

  # --- Aggregations ------------------------------------------------------------------------------

  @abc.abstractmethod
  def federated_sum(self, payload: Payload, ts: t.FederatedType) -> Payload:
    """The sum over clients."""

  @abc.abstractmethod
  def federated_mean(self, payload: Payload, ts: t.FederatedType, weight: Optional[Payload],
                     weight_type: Optional[t.FederatedType]) -> Payload:
    """`sum(w_i x_i) / sum(w_i)` over clients (`w_i = 1` when `weight` is None)."""

  @abc.abstractmethod
  def federated_min(self, payload: Payload, ts: t.FederatedType) -> Payload:
    """The elementwise minimum over clients."""

  @abc.abstractmethod
  def federated_max(self, payload: Payload, ts: t.FederatedType) -> Payload:
    """The elementwise maximum over clients."""

  @abc.abstractmethod
  def federated_stack(self, payload: Payload, ts: t.FederatedType) -> Payload:
    """Every client's member on a new leading axis, in client order: leaves `[n, ...]` (the
    `n` real clients only; all-equal values repeated). Zero clients raise a ValueError."""

  @abc.abstractmethod
  def federated_aggregate(self, payload: Payload, ts: t.FederatedType, zero: Payload,
                          accumulate: PayloadFn, merge: PayloadFn, report: PayloadFn) -> Payload:
    """`report` of the clients' values accumulated from `zero` (`accumulate((acc, v))`), with
    partial aggregates combined by `merge((a, b))`."""

  @abc.abstractmethod
  def federated_secure_sum_bitwidth(self, payload: Payload, ts: t.FederatedType,
                                    bits: Any) -> Payload:
    """The exact integer sum; every client value must lie in `[0, 2**bits - 1]`."""

  @abc.abstractmethod
  def federated_secure_modular_sum(self, payload: Payload, ts: t.FederatedType,
                                   modulus: Any) -> Payload:
    """`sum(x_i mod m) mod m`, exact."""

  @abc.abstractmethod
  def federated_select(self, keys: Payload, max_key: Payload, server_val: Payload,
                       select_fn: PayloadFn) -> Payload:
    """Client `i` gets the sequence `[select_fn((server_val, k)) for k in keys_i]`."""

  # --- Sequences ---------------------------------------------------------------------------------

  @abc.abstractmethod
  def sequence_map(self, fn: PayloadFn, seq: Payload) -> Payload:
    """`fn` applied to every element of one sequence."""

  @abc.abstractmethod
  def sequence_reduce(self, seq: Payload, zero: Payload, step: PayloadFn) -> Payload:
    """`step((acc, element))` folded over one sequence from `zero`."""

  @abc.abstractmethod
  def sequence_sum(self, seq: Payload, element_type: t.Type) -> Payload:
    """The sum of one sequence's elements."""


Execution.HOOKS = tuple(sorted(Execution.__abstractmethods__))


@runtime_checkable
class Runtime(Protocol):
  """Runs a top-level call of a computation with Python arguments; see `federax.runtime`.

  A runtime is also a context manager that makes it the current one (`with runtime: ...`).
  """

  name: str

  def invoke(self, computation: Computation, args: tuple, kwargs: dict) -> Any:
    """Converts the arguments, runs the computation, returns the result as Python values."""
    ...

  def __enter__(self) -> Runtime:
    ...

  def __exit__(self, *exc) -> Optional[bool]:
    ...
