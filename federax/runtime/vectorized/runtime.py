"""`VectorizedRuntime`: each federated computation compiled into one XLA program per plan."""

from __future__ import annotations

import dataclasses
import functools
import warnings
import weakref
from typing import Any, Optional

import jax
import numpy as np

from federax.core import context
from federax.core import types as t
from federax.core.computations import ConcreteLocal
from federax.core.errors import format_message, user_stacklevel
from federax.core.execution import HostOnly
from federax.core.placements import SERVER
from federax.core.rows import RowMaskNotHonoured
from federax.core.sequences import SequenceIterationError
from federax.core.values import Value
from federax.runtime import _convert, _invoke, xla_options
from federax.runtime._base import RuntimeBase, RuntimeOptions
from federax.runtime.padding import PaddedSequence, RaggedError
from federax.runtime.sequential import SequentialRuntime
from federax.runtime.vectorized import clients, host_execution, plan as plans, streaming
from federax.runtime.vectorized import cohort_padding
from federax.runtime.vectorized.execution import VectorizedExecution
from federax.runtime.vectorized.plan import CLIENT_LOOPS, SEQUENCE_LOOPS, Plan
from federax.runtime.vectorized.read_ahead import ReadAhead
from federax.runtime.vectorized.stacking import (KEEP_COMPILED, CohortCache, Stacked,
                                                Unstackable, pad_standalone)


class FallbackWarning(UserWarning):
  """The vectorized runtime handed a call to the sequential runtime (shown once per cause)."""


class VectorizedRuntime(RuntimeBase):
  """Compiles each federated computation into one XLA program over a client axis.

  How a call runs (loops, chunks, streaming, sharding) is its `Plan`;
  `fx.runtime.explain(comp, *args)` prints it. Called inside `jax.jit`, `jax.grad` or
  `jax.vmap` of a user's function, a computation is part of the user's program, with a
  differentiable plan (the gradient of a broadcast is a sum over the clients).

  A computation whose values include strings, which JAX cannot hold, runs on the host in
  Python, each string-free part of it (a nested federated computation, a `federated_map` of a
  JAX computation, a sum or mean) compiled (`host_execution`).

  Args:
    seed: the seed of `federated_eval`'s PRNG keys.
    default_num_clients: the number of clients when no argument is placed at CLIENTS.
    chunk_size: bounds memory and vmap width. A cohort of client datasets larger than
      `STREAM_BYTES` (32 MB) padded is not stacked before the call: the program reads, pads
      and sends it to the device at most this many clients at a time while it runs (the next
      chunk is read while one computes; `federax.runtime.vectorized.streaming`). Cohorts of
      `Dataset.cache()`d datasets are kept stacked on the device instead. Vmapped clients
      run in chunks of this size (a `lax.map`). None stacks every cohort whole and never
      chunks. Streaming needs datasets whose `cardinality()` and element shapes are known
      before they are read; it is off when the client axis is sharded over several devices.
    sequence_loop: how a sequence reduction loops: "while" (a rolled loop over the real
      elements only, skipping the padding), "scan" (a rolled `lax.scan` over all padded
      elements, masked), "unroll" (that scan fully unrolled), or "auto": "while" on CPU,
      "scan" elsewhere. On CPU, rolled loops get their convolutions in the layout XLA:CPU runs
      fast inside loops (see `_cpu_rewrites`). With "while", sequences are padded to the
      longest length padded so far (powers of two), so a run compiles at most one program per
      doubling of its longest client.
    client_loop: how `federated_map` runs the clients: "vmap" (a batch of clients, in chunks),
      "map" (one client after another, a rolled `lax.map`: each runs only its own real
      elements), or "auto": on CPU "map" when the client's function convolves (vmap makes a
      grouped convolution, several times slower on XLA:CPU) or does at least
      `MAP_FLOPS` floating-point operations per step (enough to keep the cores busy on its own),
      else "vmap"; "vmap" on other backends.
    shard: with several devices, shard the client axis over them when it divides evenly.
    pad_clients: pad every cohort to one of a few bucketed sizes with a client mask, so
      cohorts whose size varies (Poisson sampling) share compiled programs (`cohort_padding`;
      results are the unpadded cohort's, floating-point sums to rounding). Off by default (a
      fixed cohort needs no padding); computations that `federated_stack` are not padded.
    read_ahead: when a call gets the cohort of client datasets of a recent call (a loop over
      the same clients), read it again for the next call on a background thread while this
      call's program runs (`federax.runtime.vectorized.read_ahead`): datasets over writable
      arrays run their pipelines every round, as tf.data's do, but no longer before each
      program (a cohort of read-only datasets, as the loaders make, is kept from its second
      call on and not read at all). Their `map` functions then run during the call before,
      on that thread, and once more after the last round. It pays with a core to spare; on
      a 2-core machine whose other core is busy it slowed rounds (docs/performance.md), so
      it is off by default and every call reads its datasets itself.

  Example:
    >>> runtime = fx.runtime.vectorized(chunk_size=256)
    >>> @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
    ... def total(values):
    ...   return fx.federated_sum(values)
    >>> with runtime:
    ...   print(total([1.0, 2.0, 3.5]))
    6.5
  """

  name = "vectorized"

  def __init__(self, *, seed: int = 0, default_num_clients: Optional[int] = None,
               chunk_size: Optional[int] = 128, sequence_loop: str = "auto",
               client_loop: str = "auto", shard: bool = True, pad_clients: bool = False,
               read_ahead: bool = False):
    if sequence_loop not in SEQUENCE_LOOPS:
      raise ValueError(f"sequence_loop must be one of {', '.join(map(repr, SEQUENCE_LOOPS))}; "
                       f"got {sequence_loop!r}.")
    if client_loop not in CLIENT_LOOPS:
      raise ValueError(f"client_loop must be one of {', '.join(map(repr, CLIENT_LOOPS))}; "
                       f"got {client_loop!r}.")
    if chunk_size is not None and chunk_size < 1:
      raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size}.")
    super().__init__(RuntimeOptions(seed=seed, default_num_clients=default_num_clients))
    self.chunk_size = chunk_size
    self.sequence_loop = sequence_loop
    self.client_loop = client_loop
    self.shard = shard
    self.pad_clients = pad_clients
    self._cohort_sizes = cohort_padding.CohortSizes(pad_clients)
    self.programs_traced = 0
    """How many programs this runtime has traced (each is compiled once)."""
    self._programs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    self._fallback = SequentialRuntime(seed=seed, default_num_clients=default_num_clients)
    self.host_bodies: weakref.WeakSet = weakref.WeakSet()  # Bodies found to hold strings.
    self._warned: set = set()
    self._cohorts = CohortCache()
    self._read_ahead = ReadAhead() if read_ahead else None
    self._streams = streaming.Streams()
    self._lengths: dict = {}  # Sequence type -> longest padded length so far (`Plan.grow_only`).
    self._iterating: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Comp -> why.
    # Computations that took a padded batch without masking it -> (why, hint): not padded again.
    self._unpadded: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

  def __repr__(self) -> str:
    return (f"fx.runtime.vectorized({self.options}, chunk_size={self.chunk_size}, "
            f"sequence_loop={self.sequence_loop!r}, client_loop={self.client_loop!r}, "
            f"pad_clients={self.pad_clients}, read_ahead={self._read_ahead is not None})")

  # --- A call ------------------------------------------------------------------------------------

  def invoke(self, comp, args: tuple, kwargs: dict) -> Any:
    if comp in self._iterating:
      return self._fall_back(self._iterating[comp], comp, args, kwargs)
    try:
      return self._invoke(comp, args, kwargs)
    except SequenceIterationError as e:
      if _convert.is_traced((args, kwargs)):
        raise  # Under the user's JAX transformation: the sequential runtime cannot help.
      self._iterating[comp] = _iterates(e)
      return self._fall_back(self._iterating[comp], comp, args, kwargs)

  def _invoke(self, comp, args: tuple, kwargs: dict) -> Any:
    signature, python_arg, concrete = _invoke.bind(comp, args, kwargs)
    if concrete is not None and not concrete.on_host:
      rep = Stacked(pad_rows=False)  # Its function's own code would get the padded rows.
      payload, _ = _invoke.convert_argument(comp, signature, python_arg, rep)
      traced = _convert.is_traced(payload)
      if not concrete.takes_sequences:
        out = self._program(concrete, None, traced)(payload)
      else:  # Its sequences' loops are the execution's, as in a federated computation.
        plan = self._plan(signature, None, traced)
        out = self._program(concrete, plan)(pad_standalone(payload, signature.parameter))
      return _convert.to_python(out, signature.result, rep, 0)
    if concrete is not None or self._on_host(comp, signature):
      return host_execution.invoke(self, comp, signature, python_arg, concrete)
    try:
      return self.compiled_call(comp, signature, python_arg,
                                traced=_convert.is_traced((args, kwargs)))
    except Unstackable as e:
      return self._fall_back(e.why, comp, args, kwargs, e.hint)
    except HostOnly:  # Its body holds strings: found while tracing, remembered.
      self.host_bodies.add(comp)
      return host_execution.invoke(self, comp, signature, python_arg)

  @property
  def host_runtime(self) -> SequentialRuntime:
    """The sequential runtime of a host body's own parts (`host_execution.CompiledRuntime`)."""
    return self._fallback

  def _on_host(self, comp, signature: t.FunctionType) -> bool:
    return host_execution.on_host(self, comp, signature)

  def compiled_call(self, comp, signature: t.FunctionType, python_arg: Any,
                    clients: Optional[int] = None, traced: bool = False) -> Any:
    """A call of `comp` as one program: Python argument in, Python result out (`clients`: the
    client count when no argument is placed at CLIENTS). Raises `Unstackable` for client data
    with elements of different shapes (or batches of different sizes for code that does not mask
    padded rows), and `HostOnly` if the body holds strings."""
    if self._read_ahead is not None:
      self._read_ahead.begin()
    try:
      try:
        plan, payload, rep = self._prepare(comp, signature, python_arg, traced, clients)
      except RaggedError as e:
        if comp in self._unpadded:  # Its batches differ in size, as when it was refused.
          raise Unstackable(*self._unpadded[comp]) from None
        raise Unstackable(f"{e}; {KEEP_COMPILED}") from None
      try:
        out = self._program(comp, plan)(payload)
        if self._read_ahead is not None and not traced:
          self._read_ahead.start()  # While the (asynchronously dispatched) program runs.
      except cohort_padding.PaddingRefused as e:  # Traced once; its calls run unpadded.
        self._cohort_sizes.refuse(comp, e.why)
        self._streams.close()
        return self.compiled_call(comp, signature, python_arg, clients, traced)
      except RowMaskNotHonoured as e:
        # Its next calls are not padded: batches of one size still run compiled.
        self._unpadded[comp] = _row_mask_message(e, rep.padded)
        raise Unstackable(*self._unpadded[comp]) from None
      # Padded clients' values are stripped here: only the first (real) clients are read.
      return _convert.to_python(out, signature.result, rep, _real_clients(plan, payload))
    finally:
      self._streams.close()  # After the results are read: the program reads chunks until then.
      if self._read_ahead is not None:
        self._read_ahead.finish()  # No reading goes on outside a call.

  def _prepare(self, comp, signature: t.FunctionType, python_arg: Any, traced: bool,
               clients: Optional[int] = None) -> tuple[Plan, Any, Stacked]:
    """(plan, argument payload, representation) for a call of a federated computation."""
    plan = self._plan(signature, None, traced)
    rep = Stacked(plan, self._cohorts, self._streams, self._lengths,
                  pad_rows=comp not in self._unpadded, read_ahead=self._read_ahead)
    payload, n = _invoke.convert_argument(comp, signature, python_arg, rep)
    if not traced and _convert.is_traced(payload):  # Tracers hidden in an unregistered class.
      self._streams.close()
      return self._prepare(comp, signature, python_arg, True, clients)
    n = n if n is not None or clients is None else clients
    plan = self._plan(signature, self.options.num_clients(n), traced)
    payload = pad_standalone(payload, signature.parameter)
    m = self._cohort_sizes.size(comp, plan.clients, padable=not traced and plan.shard < 2
                                and not streaming.holds_streams(payload))
    if m is not None:
      payload = (cohort_padding.pad(payload, signature.parameter, plan.clients, m),
                 cohort_padding.client_mask(plan.clients, m))
      plan = dataclasses.replace(plan, clients=m, client_mask=True)
    payload = plans.place(payload, signature.parameter, plan)
    return plan, payload, rep

  def _plan(self, signature: t.FunctionType, n: Optional[int], traced: bool) -> Plan:
    return plans.decide(self, clients=n, streams_possible=not _returns_sequences(signature),
                        differentiable=traced)

  def _fall_back(self, why: str, comp, args, kwargs, hint: Optional[str] = None):
    self.warn_fallback(why, comp, hint)
    return self._fallback.invoke(comp, args, kwargs)

  def warn_fallback(self, why: str, comp, hint: Optional[str] = None) -> None:
    key = (comp.name, why.split(":")[0])
    if key not in self._warned:
      self._warned.add(key)
      warnings.warn(format_message(comp.name, f"running on the sequential runtime because {why}.",
                                   hint=hint), FallbackWarning, stacklevel=user_stacklevel())

  def _program(self, comp, plan: Optional[Plan], traced: bool = False):
    """The jitted program of `comp` under `plan` (None: a local computation, `traced`: called
    under the user's JAX transformation)."""
    programs = self._programs.setdefault(comp, {})
    key = plan if plan is not None else traced
    if key not in programs:
      if plan is None:
        programs[key] = xla_options.jit(comp, nested=traced)
      else:
        programs[key] = xla_options.jit(lambda payload: self._traced(comp, plan, payload),
                                        backend=plan.backend, nested=plan.differentiable)
    return programs[key]

  def _traced(self, comp, plan: Plan, payload: Any) -> Any:
    """The program's function: JAX calls it once per program it traces (and compiles)."""
    out = self._run(comp, plan, payload)[0]
    self.programs_traced += 1  # Once traced: a body abandoned for holding strings is no program.
    return out

  def _run(self, comp, plan: Plan, payload: Any) -> tuple[Any, VectorizedExecution]:
    """The body traced on `payload` under `plan`: (the result's payload, the execution)."""
    parameter = comp.type_signature.parameter
    execution = VectorizedExecution(plan, plan.clients, self.options.seed)
    if plan.client_mask:
      payload, execution.client_mask = payload
    if isinstance(comp, ConcreteLocal):  # A local computation of sequences.
      with context.use_execution(execution):
        return comp(payload), execution
    with context.use_execution(execution):
      arg = None if parameter is None else Value(parameter, _enter(payload, parameter))
      result = comp.run_body(arg)
    return _leave(result.payload, comp.type_signature.result, plan.clients), execution

  # --- Explaining a call -------------------------------------------------------------------------

  def explain(self, comp, *args, **kwargs) -> str:
    """How a call `comp(*args, **kwargs)` would run: its plan and each map's client loop.

    Traces the program (nothing is compiled or run).
    """
    signature, python_arg, concrete = _invoke.bind(comp, args, kwargs)
    name = comp.name
    if concrete is not None and concrete.on_host:
      return f"{name}: a host computation, run in Python on NumPy values ({signature})."
    if concrete is not None:
      return f"{name}: a local computation, one jitted JAX function ({signature})."
    if self._on_host(comp, signature):
      return _host_explanation(name, signature)
    try:
      plan, payload, rep = self._prepare(comp, signature, python_arg,
                                         _convert.is_traced((args, kwargs)))
    except RaggedError as e:
      self._streams.close()
      return f"{name}: runs on the sequential runtime ({e})."
    try:
      executions = []
      jax.make_jaxpr(lambda p: executions.append(self._run(comp, plan, p)[1]) or 0)(payload)
    except HostOnly:
      self.host_bodies.add(comp)
      return _host_explanation(name, signature)
    except SequenceIterationError as e:
      return f"{name}: runs on the sequential runtime ({_iterates(e)})."
    except RowMaskNotHonoured as e:
      return f"{name}: runs on the sequential runtime ({_row_mask_message(e, rep.padded)[0]})."
    finally:
      self._streams.close()
    lengths = _sequence_lengths(payload)
    lines = [f"{name}: one XLA program ({signature})", str(plan)]
    options = xla_options.compiler_options(plan.backend, nested=plan.differentiable)
    if options:
      lines.append("compiled with XLA options: "
                   + ", ".join(f"{k}={v}" for k, v in options.items()))
    if plan.client_mask:
      lines.append(f"clients padded: {_real_clients(plan, payload)} real of {plan.clients}, "
                   "with a client mask")
    if lengths:
      lines.append("padded sequence lengths: " + ", ".join(map(str, lengths)))
    lines += [f"{where}: batches of {_sizes(rows, mask)} rows padded to {rows.shape[-1]} rows, "
              "with a row mask" for where, rows, mask in rep.padded]
    lines += rep.notes + (executions[0].decisions or ["(no federated_map)"])
    return "\n".join(lines)


def _real_clients(plan: Plan, payload: Any) -> Optional[int]:
  """The call's real client count: the plan's, or the true entries of a padded call's mask."""
  return int(np.sum(payload[1])) if plan.client_mask else plan.clients


def _host_explanation(name: str, signature: t.FunctionType) -> str:
  return (f"{name}: runs on the host ({signature}): its values include strings, which JAX "
          "cannot hold, so the body runs in Python. Its string-free parts run compiled, each a "
          "program of its own: nested federated computations, federated_map of JAX computations "
          "over the clients, federated sums, means, minima and maxima.")


def _iterates(e: SequenceIterationError) -> str:
  where = f", at {e.location}" if e.location else ""
  why = f" (the loop is not compiled: {e.reason})" if e.reason else ""
  return f"a local computation iterates a sequence, exact only in Python{where}{why}"


@functools.lru_cache(maxsize=256)
def _returns_sequences(signature: t.FunctionType) -> bool:
  """Whether a result holds sequences (streamed clients cannot be returned); once per type."""
  return signature.result is not None and t.contains(
      signature.result, lambda x: isinstance(x, t.SequenceType))


def _enter(payload: Any, ts: t.Type) -> Any:
  """An argument's payload with its all-equal client values in the `Shared` form."""
  if isinstance(ts, t.FederatedType):
    return clients.shared(payload) if ts.all_equal and ts.placement is not SERVER else payload
  if isinstance(ts, t.StructType) and isinstance(payload, tuple):
    return tuple(_enter(p, et) for p, et in zip(payload, ts))
  return payload


def _leave(payload: Any, ts: Optional[t.Type], n: int) -> Any:
  """A result's payload as `to_python` reads it: client values stacked, all-equal ones as
  their one member."""
  if ts is None:
    return payload
  if isinstance(ts, t.FederatedType) and ts.placement is not SERVER:
    return clients.member(payload) if ts.all_equal else clients.stacked(payload, n)
  if isinstance(ts, t.StructType) and isinstance(payload, tuple):
    return tuple(_leave(p, et, n) for p, et in zip(payload, ts))
  return payload


def _sizes(rows: Any, mask: Any) -> str:
  """The distinct batch sizes of a row-padded sequence, in words: '2, 3 and 4'."""
  rows, mask = np.asarray(rows), np.asarray(mask, bool)
  sizes = [str(n) for n in np.unique(rows.sum(axis=-1)[mask])]
  return sizes[0] if len(sizes) == 1 else ", ".join(sizes[:-1]) + " and " + sizes[-1]


def _row_mask_message(e: RowMaskNotHonoured, padded: list) -> tuple[str, str]:
  """(why a call falls back, the hint) when a padded batch reached code that does not mask it."""
  where, rows, mask = padded[0] if padded else ("a sequence", np.ones((1, 1), bool),
                                                np.ones(1, bool))
  width = rows.shape[-1]
  consumer = e.consumer or "a computation"
  why = (f"{consumer} {e.reason}; the batches of {where} differ in size ({_sizes(rows, mask)} "
         "rows), and the vectorized runtime pads short batches only for computations that "
         "mask them")
  if e.fix is not None:
    return why, f"{e.fix}; or give every batch {width} rows: batch({width}, drop_remainder=True)"
  hint = (f"give every batch {width} rows: batch({width}, drop_remainder=True) drops the short "
          f"batches; masked_batch({width}) pads them and adds a 'mask' feature for {consumer} "
          "to weight rows by; or declare @fx.computation(..., row_mask=fn) to receive padded "
          "batches with their row mask; or leave the reductions over a batch to the model "
          "(predict_on_batch and loss, or forward_pass), which masks padded rows")
  return why, hint


def _sequence_lengths(payload: Any) -> list:
  found = []
  jax.tree_util.tree_map(
      lambda x: found.append(x.mask.shape[-1]) if isinstance(x, PaddedSequence) else None,
      payload, is_leaf=lambda x: isinstance(x, PaddedSequence) or streaming.is_streamed(x))
  return found
