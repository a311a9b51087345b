"""The vectorized runtime: a whole federated computation compiled into one XLA program.

Clients are the leading axis of every client value; `federated_map` is `jax.vmap` (in chunks
above `chunk_size` clients, so working memory does not grow with the cohort; client datasets
over `STREAM_BYTES` are read by the program a chunk at a time, `streaming`); a sequence is a
`PaddedSequence` of elements padded to a bucketed length with a mask; a reduction over a
sequence is a masked `lax.scan`. Programs are cached per computation and client count, and
by `jax.jit` per input shapes. With several devices the client axis is sharded over them.
"""

from __future__ import annotations

import math
import warnings
import weakref
from functools import partial
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import jaxprs_in_params
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from federax.core import context
from federax.core import types as t
from federax.core.errors import user_stacklevel
from federax.core.placements import SERVER
from federax.core.values import Value, constant_payload
from federax.runtime import _convert, _invoke, streaming
from federax.runtime._cpu_rewrites import for_xla_cpu, run_for_xla_cpu
from federax.runtime._options import RuntimeOptions
from federax.runtime.padding import (PaddedSequence, RaggedError, aligned_empty, bucket, pad_to,
                                     stack, zeros_like_type)
from federax.runtime.sequential import SequentialRuntime


SEQUENCE_LOOPS = ("auto", "while", "scan", "unroll")
CLIENT_LOOPS = ("auto", "vmap", "map")
MAP_FLOPS = 2**18
"""Per-step floating-point operations from which, on CPU, clients run one after another."""
STREAM_BYTES = 2**25
"""Padded size of a cohort's client datasets from which the program reads them a chunk at a
time rather than taking them stacked (`streaming`). Below it the whole stack is small, and
reading it in one go costs less than the thread hand-offs of reading it in parts (FedAvg
round, linear 784->10 model, 2 cores: 10 clients, 18 MB, 0.016 s stacked against 0.017-0.020 s
streamed; 100 clients, 180 MB, 0.26 s against 0.16-0.18 s)."""


class FallbackWarning(UserWarning):
  """The vectorized runtime handed a call to the sequential runtime (shown once per cause)."""


class _CohortCache:
  """The last few cohorts of client datasets, stacked, padded and on the device, by the
  identity of the dataset objects. Only datasets whose `to_stacked()` hands out read-only
  arrays (`Dataset.cache()` does) are kept: datasets are immutable, so those never change, and
  the same clients next round skip the checks, the copy and the transfer."""

  def __init__(self, size: int = 2):
    self.size = size
    self._entries: list = []  # (key, datasets, payload), most recent last.

  @staticmethod
  def key(values: list, member_type: t.Type, per_doubling: int):
    if not isinstance(member_type, t.SequenceType) or not all(
        hasattr(v, "to_stacked") for v in values):
      return None
    return (tuple(map(id, values)), member_type, per_doubling)

  def get(self, key) -> Optional[Any]:
    for i, (k, _, payload) in enumerate(self._entries):
      if k == key:  # The entry holds the datasets, so their ids cannot have been reused.
        self._entries.append(self._entries.pop(i))
        return payload
    return None

  def put(self, key, values: list, members: list, payload: Any) -> Any:
    leaves = [x for m in members for x in jax.tree_util.tree_leaves(m.elements)]
    if not all(isinstance(x, np.ndarray) and not x.flags.writeable for x in leaves):
      return payload
    payload = jax.device_put(payload)
    self._entries = self._entries[-(self.size - 1):] if self.size > 1 else []
    self._entries.append((key, list(values), payload))
    return payload


class _Stacked:
  """Vectorized representation: client values stacked, sequences padded and masked.

  With `streams`, a cohort of client datasets over `STREAM_BYTES` padded is not stacked here: it
  becomes a `StreamedClients` stand-in that the program reads one chunk at a time.
  """

  def __init__(self, cohorts: Optional[_CohortCache] = None, per_doubling: int = 8,
               streams: Optional[streaming.Streams] = None, chunk: int = 0):
    self.cohorts = cohorts
    self.per_doubling = per_doubling
    self.streams = streams
    self.chunk = chunk

  def whole_clients(self, values: list, member_type: t.Type, where: str, op: str) -> Optional[Any]:
    if not values:
      return None
    if self.cohorts is not None:
      cached = self.cohorts.get(_CohortCache.key(values, member_type, self.per_doubling))
      if cached is not None:
        return cached
    if self.streams is not None and len(values) > 1:
      return self._stream(values, member_type, where, op)
    return None

  def _stream(self, values: list, member_type: t.Type, where: str,
              op: str) -> Optional[streaming.StreamedClients]:
    """A stand-in for the datasets in `values`, checked now and read by the program, or None:
    for a cohort under `STREAM_BYTES` padded, one of cached datasets (the cohort cache keeps
    those on the device), and datasets whose padded shapes are not known without reading them
    (unknown cardinality or dimensions)."""
    if not isinstance(member_type, t.SequenceType) or not all(
        hasattr(v, "to_stacked") and hasattr(v, "cardinality") for v in values):
      return None
    lengths = [v.cardinality() for v in values]
    if min(lengths) < 0 or max(lengths) == 0:
      return None
    length = bucket(max(lengths), self.per_doubling)
    shape = _element_shapes(member_type.element, values[0].element_spec)
    if shape is None:
      return None
    avals = PaddedSequence(
        jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct((length,) + s[0], s[1]),
                               shape, is_leaf=_is_shape),
        jax.ShapeDtypeStruct((length,), np.dtype(bool)))
    if len(values) * sum(math.prod(a.shape) * a.dtype.itemsize
                         for a in jax.tree_util.tree_leaves(avals)) < STREAM_BYTES:
      return None  # Checked and stacked as any other cohort.
    for i, v in enumerate(values):
      _convert.sequence_elements(v, member_type, f"{where}[client {i}]", op)
    if any(_element_shapes(member_type.element, v.element_spec) != shape for v in values[1:]):
      return None
    # Cached datasets (read-only arrays) are kept in memory by the user's choice, and the
    # cohort cache keeps them stacked on the device: no reads at all from the second round.
    first = self.sequence(values[0], member_type, f"{where}[client 0]")
    if not any(x.flags.writeable for x in jax.tree_util.tree_leaves(first.elements)):
      return None
    peeked = {0: first}  # Read once: the program's first read takes it.

    def stack_chunk(chunk: list, start: int) -> PaddedSequence:
      """Reads and pads one client at a time into the chunk's arrays (one copy in memory)."""
      padded = jax.tree_util.tree_map(lambda a: np.zeros((len(chunk),) + a.shape, a.dtype), avals)
      out = jax.tree_util.tree_leaves(padded.elements)
      for i, v in enumerate(chunk):
        client = f"{where}[client {start + i}]"
        seq = peeked.pop(start + i, None) or self.sequence(v, member_type, client)
        real = seq.mask.shape[0]
        leaves = jax.tree_util.tree_leaves(seq.elements)
        if real > length or any(x.shape[1:] != o.shape[2:] for x, o in zip(leaves, out)):
          raise RaggedError(f"{client}: the dataset gave {real} elements of shapes "
                            f"{[x.shape[1:] for x in leaves]}, not at most {length} of "
                            f"{[o.shape[2:] for o in out]} as its element_spec and "
                            "cardinality() said.")
        for o, x in zip(out, leaves):
          o[i, :real] = x
        padded.mask[i, :real] = True
      return padded

    return self.streams.open(where, values, stack_chunk, avals,
                             streaming.read_size(len(values), self.chunk))

  def clients(self, members: list, member_type: t.Type, where: str, values: list) -> Any:
    if not members:
      return zeros_like_type_payload(member_type, (0,))
    payload = _stack_clients(members, member_type, where, self.per_doubling)
    key = None if self.cohorts is None else _CohortCache.key(values, member_type,
                                                              self.per_doubling)
    return payload if key is None else self.cohorts.put(key, values, members, payload)

  def sequence(self, elements: Any, seq_type: t.SequenceType, where: str) -> PaddedSequence:
    if isinstance(elements, list):
      if not elements:
        return PaddedSequence(zeros_like_type(seq_type.element, (0,)), np.zeros(0, bool))
      stacked = stack(elements, where)
    else:
      to_stacked = getattr(elements, "to_stacked", None)
      if to_stacked is None:
        elements = [_convert.local(e, seq_type.element, where, "dataset") for e in elements]
        return self.sequence(elements, seq_type, where)
      try:
        raw = to_stacked()
      except ValueError as e:  # A ragged final batch, for example.
        raise RaggedError(f"{where}: {e}") from None
      stacked = _convert.local(raw, _leading(seq_type.element), where, "dataset")
    length = np.shape(jax.tree_util.tree_leaves(stacked)[0])[0] if jax.tree_util.tree_leaves(
        stacked) else 0
    # Unpadded: clients() pads all clients' sequences together in one copy, and
    # pad_standalone() pads sequences that are not at CLIENTS.
    return PaddedSequence(stacked, np.ones(length, bool))

  def client_list(self, payload: Any, member_type: t.Type, n: int) -> list:
    host = jax.device_get(payload)
    return [jax.tree_util.tree_map(lambda x, i=i: x[i], host) for i in range(n)]

  def sequence_list(self, payload: PaddedSequence, seq_type: t.SequenceType) -> list:
    elements, mask = jax.device_get((payload.elements, payload.mask))
    return [jax.tree_util.tree_map(lambda x, j=j: x[j], elements)
            for j in np.flatnonzero(np.asarray(mask))]


def _is_shape(x) -> bool:
  return isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], np.dtype)


def _element_shapes(element_type: t.Type, spec: Any) -> Optional[Any]:
  """(shape, dtype) of each leaf of one element as the runtime holds it (tuples, the declared
  dtypes, the dataset's shapes), or None if a dimension is unknown."""
  from federax.core.type_conversions import to_type

  def walk(declared: t.Type, actual: t.Type):
    if isinstance(declared, t.TensorType):
      if not isinstance(actual, t.TensorType) or None in actual.shape:
        return None
      return (tuple(actual.shape), np.dtype(declared.dtype))
    parts = tuple(walk(d, a) for d, a in zip(declared, actual))
    return None if None in parts else parts

  try:
    return walk(element_type, t.aligned_like(element_type, to_type(spec)))
  except (TypeError, ValueError):  # Not a structure of tensors: the type checks will say why.
    return None


def _leading(ts: t.Type) -> t.Type:
  """The type of a stacked payload: one unknown leading dimension on every tensor."""
  if isinstance(ts, t.TensorType):
    return t.TensorType(ts.dtype, (None,) + tuple(ts.shape))
  return t.StructType([(n, _leading(e)) for n, e in ts.items()], ts.container_type)


def _stack_clients(members: list, member_type: t.Type, where: str,
                   per_doubling: int = 8) -> Any:
  """Stacks client payloads; sequences are padded to one bucketed length as they are copied."""
  if isinstance(member_type, t.SequenceType):
    lengths = [m.mask.shape[0] for m in members]
    length = bucket(max(lengths), per_doubling)
    filled = next((m for m in members if m.mask.shape[0]), None)
    if filled is None:
      return PaddedSequence(zeros_like_type(member_type.element, (len(members), 0)),
                            np.zeros((len(members), 0), bool))
    shapes = {tuple(np.shape(x)[1:] for x in jax.tree_util.tree_leaves(m.elements))
              for m, n in zip(members, lengths) if n}
    if len(shapes) > 1:
      raise RaggedError(f"{where}: client sequences have elements of different shapes "
                        f"{sorted(shapes)[:3]}")

    def fill(*leaves):
      # Not zeroed first: writing each row once (data, then zeros) beats zeroing it all first.
      out = aligned_empty((len(members), length) + leaves[0].shape[1:], leaves[0].dtype)
      for i, (leaf, n) in enumerate(zip(leaves, lengths)):
        out[i, :n] = leaf[:n]
        out[i, n:] = 0
      return out

    template = filled.elements
    elements = jax.tree_util.tree_map(
        fill, *[m.elements if n else template for m, n in zip(members, lengths)])
    mask = np.arange(length)[None, :] < np.asarray(lengths)[:, None]
    return PaddedSequence(elements, mask)
  if isinstance(member_type, t.StructType):
    return tuple(_stack_clients([m[i] for m in members], et, where, per_doubling)
                 for i, et in enumerate(member_type))
  return stack(members, where)


def pad_standalone(payload: Any, ts: Optional[t.Type]) -> Any:
  """Pads sequences not placed at CLIENTS to a bucketed length (those are padded already)."""
  if ts is None:
    return payload
  if isinstance(ts, t.SequenceType):
    return pad_to(payload, bucket(payload.mask.shape[0]))
  if isinstance(ts, t.FederatedType):
    if ts.placement is SERVER or ts.all_equal:
      return pad_standalone(payload, ts.member)
    return payload
  if isinstance(ts, t.StructType) and isinstance(payload, tuple):
    return tuple(pad_standalone(p, et) for p, et in zip(payload, ts))
  return payload


def zeros_like_type_payload(ts: t.Type, leading: tuple) -> Any:
  if isinstance(ts, t.SequenceType):
    return PaddedSequence(zeros_like_type(ts.element, leading + (0,)), np.zeros(leading + (0,), bool))
  if isinstance(ts, t.StructType):
    return tuple(zeros_like_type_payload(e, leading) for e in ts)
  return zeros_like_type(ts, leading)


class VectorizedRuntime:
  """Compiles each federated computation into one XLA program over a client axis.

  Args:
    seed: the seed of `federated_eval`'s PRNG keys.
    default_num_clients: the number of clients when no argument is placed at CLIENTS.
    chunk_size: bounds memory and vmap width. A cohort of client datasets larger than
      `STREAM_BYTES` (32 MB) padded is not stacked before the call: the program reads, pads
      and sends it to the device at most this many clients at a time while it runs (the next
      chunk is read while one computes; `federax.runtime.streaming`). Cohorts of
      `Dataset.cache()`d datasets are kept stacked on the device instead. Vmapped clients
      run in chunks of this size (a `lax.map`). None stacks every cohort whole and never
      chunks. Streaming needs datasets whose `cardinality()` and element shapes are known
      before they are read; it is off when the client axis is sharded over several devices.
    sequence_loop: how a sequence reduction loops: "while" (a rolled loop over the real
      elements only, skipping the padding), "scan" (a rolled `lax.scan` over all padded
      elements, masked), "unroll" (that scan fully unrolled), or "auto": "while" on CPU,
      "scan" elsewhere. On CPU, rolled loops get their convolutions in the layout XLA:CPU runs
      fast inside loops (see `_cpu_rewrites`).
    client_loop: how `federated_map` runs the clients: "vmap" (a batch of clients, in chunks),
      "map" (one client after another, a rolled `lax.map`: each runs only its own real
      elements), or "auto": on CPU "map" when the client's function convolves (vmap makes a
      grouped convolution, several times slower on XLA:CPU) or does at least
      `MAP_FLOPS` floating-point operations per step (enough to keep the cores busy on its own),
      else "vmap"; "vmap" on other backends.
    shard: with several devices, shard the client axis over them when it divides evenly.

  Example:
    >>> with fx.runtime.vectorized(chunk_size=256):
    ...   state, metrics = train(state, client_data)
  """

  name = "vectorized"

  def __init__(self, *, seed: int = 0, default_num_clients: Optional[int] = None,
               chunk_size: Optional[int] = 128, sequence_loop: str = "auto",
               client_loop: str = "auto", shard: bool = True):
    if sequence_loop not in SEQUENCE_LOOPS:
      raise ValueError(f"sequence_loop must be one of {', '.join(map(repr, SEQUENCE_LOOPS))}; "
                       f"got {sequence_loop!r}.")
    if client_loop not in CLIENT_LOOPS:
      raise ValueError(f"client_loop must be one of {', '.join(map(repr, CLIENT_LOOPS))}; "
                       f"got {client_loop!r}.")
    if chunk_size is not None and chunk_size < 1:
      raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size}.")
    self.options = RuntimeOptions(seed=seed, default_num_clients=default_num_clients)
    self.chunk_size = chunk_size
    self.sequence_loop = sequence_loop
    self.client_loop = client_loop
    self.shard = shard
    self._programs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    self._fallback = SequentialRuntime(seed=seed, default_num_clients=default_num_clients)
    self._warned: set = set()
    self._token = []
    self._cohorts = _CohortCache()
    self._streams = streaming.Streams()

  def __repr__(self) -> str:
    return (f"fx.runtime.vectorized({self.options}, chunk_size={self.chunk_size}, "
            f"sequence_loop={self.sequence_loop!r}, client_loop={self.client_loop!r})")

  def __enter__(self):
    self._token.append(context._runtime.set(self))
    return self

  def __exit__(self, *exc):
    context._runtime.reset(self._token.pop())

  def invoke(self, comp, args: tuple, kwargs: dict) -> Any:
    signature, python_arg, concrete = _invoke.bind(comp, args, kwargs)
    if concrete is not None:
      rep = _Stacked()
      payload, _ = _invoke.convert_argument(comp, signature, python_arg, rep)
      return _convert.to_python(self._program(concrete, None)(payload), signature.result, rep, 0)
    if _invoke.has_strings(signature.parameter) or _invoke.has_strings(signature.result):
      return self._fall_back("string tensors cannot enter a JAX program", comp, args, kwargs)
    # A loop over the real elements does not compute on padding: coarse buckets, fewer programs.
    rep = _Stacked(self._cohorts, 1 if self._sequence_loop() == "while" else 8,
                   self._streams if self._may_stream(signature) else None, self.chunk_size or 0)
    try:
      try:
        payload, n = _invoke.convert_argument(comp, signature, python_arg, rep)
      except RaggedError as e:
        return self._fall_back(f"{e}; make elements one shape (Dataset.masked_batch, or "
                               "batch(..., drop_remainder=True)) to keep the compiled path",
                               comp, args, kwargs)
      n = self.options.num_clients(n)
      payload = self._place(pad_standalone(payload, signature.parameter), signature.parameter, n)
      out = self._program(comp, n)(payload)
      return _convert.to_python(out, signature.result, rep, n)
    finally:
      self._streams.close()  # After the results are read: the program reads chunks until then.

  def _may_stream(self, signature: t.FunctionType) -> bool:
    """Large cohorts are read a chunk at a time unless `chunk_size` is None, the client axis is
    sharded (every device would read its own clients) or client sequences are returned."""
    sharded = self.shard and len(jax.devices()) > 1
    returns_sequences = signature.result is not None and t.contains(
        signature.result, lambda x: isinstance(x, t.SequenceType))
    return self.chunk_size is not None and not sharded and not returns_sequences

  def _sequence_loop(self) -> str:
    if self.sequence_loop != "auto":
      return self.sequence_loop
    return "while" if jax.default_backend() == "cpu" else "scan"

  def _fall_back(self, why: str, comp, args, kwargs):
    key = (comp.__wrapped__.__qualname__, why.split(":")[0])
    if key not in self._warned:
      self._warned.add(key)
      warnings.warn(f"{comp.__wrapped__.__qualname__}: running on the sequential runtime "
                    f"because {why}.", FallbackWarning, stacklevel=user_stacklevel())
    return self._fallback.invoke(comp, args, kwargs)

  def _program(self, comp, n: Optional[int]):
    programs = self._programs.setdefault(comp, {})
    if n not in programs:
      if n is None:
        programs[n] = jax.jit(comp)
      else:
        programs[n] = jax.jit(lambda payload: self._run(comp, n, payload))
    return programs[n]

  def _run(self, comp, n: int, payload: Any) -> Any:
    parameter = comp.type_signature.parameter
    with context.use_execution(VectorizedExecution(self, n)):
      result = comp.run_body(None if parameter is None else Value(parameter, payload))
    return _dense(result.payload, n)

  def _place(self, payload: Any, ts: Optional[t.Type], n: int) -> Any:
    """Shards client-axis leaves over the devices when there are several."""
    devices = jax.devices()
    if not self.shard or len(devices) < 2 or n == 0 or n % len(devices) or ts is None:
      return payload
    mesh = Mesh(np.array(devices), ("clients",))
    by_client = NamedSharding(mesh, PartitionSpec("clients"))
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(p, pt):
      if isinstance(pt, t.FederatedType):
        sharding = replicated if pt.all_equal or pt.placement is SERVER else by_client
        return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), p)
      if isinstance(pt, t.StructType) and isinstance(p, tuple):
        return tuple(place(e, et) for e, et in zip(p, pt))
      return jax.tree_util.tree_map(lambda x: jax.device_put(x, replicated), p)

    return place(payload, ts)


def _broadcast(payload: Any, n: int) -> Any:
  return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), payload)


class Replicated:
  """A client value every client holds the same, not broadcast to the client axis: what
  `federated_zip` makes of an all-equal part (the broadcast model of a round). `federated_map`
  hands it to each client as it is, so it is never copied once per client (a 4 MB model at
  1,000 clients would be 4 GB); everything else broadcasts it first (`_dense`)."""

  def __init__(self, value: Any):
    self.value = value


jax.tree_util.register_pytree_node(Replicated, lambda r: ((r.value,), None),
                                   lambda _, children: Replicated(children[0]))
_is_replicated = lambda x: isinstance(x, Replicated)


def _dense(payload: Any, n: int) -> Any:
  """`payload` with its `Replicated` parts broadcast to the client axis."""
  return jax.tree_util.tree_map(lambda x: _broadcast(x.value, n) if _is_replicated(x) else x,
                                payload, is_leaf=_is_replicated)


def _without_replicated(fn, payload):
  """`(fn', payload')`: `payload` without its `Replicated` parts, which `fn'` passes to `fn` as
  they are (constants to `vmap` and `lax.map`)."""
  leaves, treedef = jax.tree_util.tree_flatten(
      payload, is_leaf=lambda x: _is_replicated(x) or streaming.is_streamed(x))
  if not any(map(_is_replicated, leaves)):
    return fn, payload

  def per_client(rest):
    others = iter(rest)
    return fn(treedef.unflatten([x.value if _is_replicated(x) else next(others) for x in leaves]))

  return per_client, [x for x in leaves if not _is_replicated(x)]


def _for_cpu(fn):
  """`fn` with XLA:CPU-friendly convolutions when compiling for CPU (a rolled loop's body)."""
  return for_xla_cpu(fn) if jax.default_backend() == "cpu" else fn


class _Cost(NamedTuple):
  flops: float
  convolves: bool


def _step_cost(jaxpr) -> _Cost:
  """Matmul and convolution flops of `jaxpr`, each loop body counted once (one step)."""
  flops, convolves = 0.0, False
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      flops += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[d] for d in contract])
    elif name == "conv_general_dilated":
      convolves = True
      rhs = eqn.invars[1].aval.shape
      out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
      flops += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod(rhs) / out_features
    for sub in jaxprs_in_params(eqn.params):
      inner = _step_cost(sub)
      flops, convolves = flops + inner.flops, convolves or inner.convolves
  return _Cost(flops, convolves)


class VectorizedExecution:
  """Carries out intrinsics as array operations on the client axis, inside `jax.jit`."""

  def __init__(self, runtime: VectorizedRuntime, n: int):
    self.runtime = runtime
    self.n = n
    self._evals = 0

  def constant(self, obj: Any, value_type: t.Type) -> Any:
    return constant_payload(obj, value_type)

  def project(self, payload, ts: t.FederatedType, index: int):
    return Replicated(payload.value[index]) if _is_replicated(payload) else payload[index]

  def call_local(self, concrete, payload):
    return concrete(payload)

  def _vmap(self, fn, payload):
    """`fn` over the client axis of `payload`: one client after another, or vmapped (in chunks
    of `chunk_size`). Streamed clients are read a chunk at a time as the loop reaches them;
    values all clients share (`Replicated`) are passed to each as they are."""
    fn, payload = _without_replicated(fn, payload)
    if not jax.tree_util.tree_leaves(payload, is_leaf=streaming.is_streamed):
      return Replicated(fn(payload))  # Nothing differs between clients.
    client_fn = self._one_by_one(fn, payload) if self.n > 1 else None
    if streaming.holds_streams(payload):
      on_chunk = jax.vmap(fn) if client_fn is None else partial(jax.lax.map, client_fn)
      return streaming.map_chunks(on_chunk, payload, self.n)
    if client_fn is not None:
      return jax.lax.map(client_fn, payload)
    chunk = self.runtime.chunk_size
    if chunk is not None and self.n > chunk:
      return jax.lax.map(fn, payload, batch_size=chunk)
    return jax.vmap(fn)(payload)

  def _one_by_one(self, fn, payload):
    """The function to run on each client in turn when `client_loop` asks for one client
    after another ("auto": on CPU, when one client's trace convolves or does `MAP_FLOPS` per
    step); else None."""
    loop, cpu = self.runtime.client_loop, jax.default_backend() == "cpu"
    if loop == "vmap" or (loop == "auto" and not cpu):
      return None
    if not cpu:
      return fn
    traced = jax.make_jaxpr(fn, return_shape=True)(streaming.one_client(payload))
    cost = _step_cost(traced[0].jaxpr)
    if loop == "auto" and not (cost.convolves or cost.flops >= MAP_FLOPS):
      return None
    return lambda client: run_for_xla_cpu(traced, client)

  def federated_eval(self, member_fn, placement, takes_key: bool):
    base = jax.random.fold_in(jax.random.PRNGKey(self.runtime.options.seed), self._evals)
    self._evals += 1
    if placement is SERVER:
      return member_fn(base if takes_key else None)
    if takes_key:
      keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(self.n))
      return self._vmap(member_fn, keys)
    return Replicated(member_fn(None))

  def client_keys(self, key):
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(self.n))

  def map_clients(self, member_fn, payload, all_equal: bool):
    if all_equal:
      return Replicated(member_fn(payload))
    return self._vmap(member_fn, payload)

  def zip_clients(self, payloads, all_equal_flags):
    return tuple(Replicated(p) if eq else p for p, eq in zip(payloads, all_equal_flags))

  def _members(self, payload, ts):
    return _broadcast(payload, self.n) if ts.all_equal else _dense(payload, self.n)

  def federated_sum(self, payload, ts):
    return jax.tree_util.tree_map(lambda x: jnp.sum(x, axis=0, dtype=x.dtype),
                                  self._members(payload, ts))

  def federated_mean(self, payload, ts, weight, weight_type):
    members = self._members(payload, ts)
    if weight is None:
      return jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0).astype(x.dtype), members)
    w = self._members(weight, weight_type).astype(jnp.float32)
    total = jnp.sum(w)

    def mean(x):
      wx = jnp.tensordot(w.astype(x.dtype), x, axes=1)
      return (wx / total.astype(x.dtype)).astype(x.dtype)

    return jax.tree_util.tree_map(mean, members)

  def federated_min(self, payload, ts):
    return jax.tree_util.tree_map(lambda x: jnp.min(x, axis=0), self._members(payload, ts))

  def federated_max(self, payload, ts):
    return jax.tree_util.tree_map(lambda x: jnp.max(x, axis=0), self._members(payload, ts))

  def federated_aggregate(self, payload, ts, zero, accumulate, merge, report):
    members = Replicated(payload) if ts.all_equal else payload  # `_vmap` takes it as it is.
    partials = _dense(self._vmap(lambda v: accumulate((zero, v)), members), self.n)
    merged, _ = jax.lax.scan(lambda acc, p: (merge((acc, p)), None), zero, partials)
    return report(merged)

  def federated_secure_sum_bitwidth(self, payload, ts, bits):
    members = self._members(payload, ts)
    leaves, treedef = jax.tree_util.tree_flatten(members)
    bit_leaves = [bits] * len(leaves) if isinstance(bits, int) else jax.tree_util.tree_leaves(bits)
    sums = []
    for x, b in zip(leaves, bit_leaves):
      high = 2**b - 1
      if self.n * high > np.iinfo(x.dtype).max:
        raise OverflowError(
            f"federated_secure_sum_bitwidth: {self.n} clients of {b}-bit values can overflow "
            f"{x.dtype}; use fewer bits or a wider integer type (jax_enable_x64 for int64).")
      _check_in_range(x, 0, high, "federated_secure_sum_bitwidth")
      sums.append(jnp.sum(x, axis=0, dtype=x.dtype))
    return jax.tree_util.tree_unflatten(treedef, sums)

  def federated_secure_modular_sum(self, payload, ts, modulus):
    members = self._members(payload, ts)
    leaves, treedef = jax.tree_util.tree_flatten(members)
    mods = [modulus] * len(leaves) if isinstance(modulus, int) else jax.tree_util.tree_leaves(modulus)
    return jax.tree_util.tree_unflatten(
        treedef, [_modular_sum(x, m).astype(x.dtype) for x, m in zip(leaves, mods)])

  def federated_select(self, keys, max_key, server_val, select_fn):
    keys = _dense(keys, self.n)
    _check_in_range(keys, 0, max_key - 1, "federated_select")
    per_key = lambda k: select_fn((server_val, k))
    elements = jax.vmap(jax.vmap(per_key))(keys)
    return PaddedSequence(elements, jnp.ones(keys.shape, bool))

  def sequence_map(self, fn, seq: PaddedSequence):
    return PaddedSequence(jax.vmap(fn)(seq.elements), seq.mask)

  def sequence_reduce(self, seq: PaddedSequence, zero, step):
    loop = self.runtime._sequence_loop()
    length = seq.mask.shape[0]
    if loop == "while":
      # Padding is always at the end (PaddedSequence), so the real elements are a prefix.
      body = _for_cpu(lambda i, acc: step((acc, jax.tree_util.tree_map(
          lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), seq.elements))))
      return jax.lax.fori_loop(0, jnp.sum(seq.mask, dtype=jnp.int32), body, zero)

    def masked(acc, element_and_mask):
      element, real = element_and_mask
      new = step((acc, element))
      return jax.tree_util.tree_map(lambda a, b: jnp.where(real, a, b), new, acc), None

    if loop == "unroll":
      unroll = max(length, 1)
    else:
      unroll, masked = 1, _for_cpu(masked)
    acc, _ = jax.lax.scan(masked, zero, (seq.elements, seq.mask), unroll=unroll)
    return acc

  def sequence_sum(self, seq: PaddedSequence, element_type):
    def masked_sum(x):
      mask = seq.mask.reshape(seq.mask.shape + (1,) * (x.ndim - 1))
      return jnp.sum(jnp.where(mask, x, jnp.zeros((), x.dtype)), axis=0, dtype=x.dtype)

    return jax.tree_util.tree_map(masked_sum, seq.elements)


def _modular_sum(x: jax.Array, modulus: int) -> jax.Array:
  """`sum(x mod m) mod m` over axis 0 in uint32, by pairwise halving: exact for m < 2**31."""
  wide = x.astype(jnp.promote_types(x.dtype, jnp.int32))
  values = jnp.mod(wide, jnp.asarray(modulus, wide.dtype)).astype(jnp.uint32)
  m = jnp.uint32(modulus)
  while values.shape[0] > 1:
    if values.shape[0] % 2:
      values = jnp.concatenate([values, jnp.zeros((1,) + values.shape[1:], values.dtype)])
    values = (values[0::2] + values[1::2]) % m
  return values[0] if values.shape[0] else jnp.zeros(values.shape[1:], jnp.uint32)


def _check_in_range(x: jax.Array, low, high, op: str) -> None:
  """Raises (when the program runs) if any entry of `x` is outside [low, high]."""
  def check(values, low, high):
    values = np.asarray(values)
    if values.size and (values.min() < low or values.max() > high):
      bad = values[(values < low) | (values > high)].ravel()[:5]
      raise ValueError(f"{op}: client values {bad.tolist()} lie outside [{low}, {high}].")

  jax.debug.callback(check, x, low, high)
