"""The Ray runtime's driver side: the intrinsics' hooks on client values sharded over workers.

The driver runs the federated computation's body. A client value is a `Sharded` handle: each
worker holds its block of the clients' members (`worker.ShardWorker`), and the driver never
pulls them. Server and unplaced values are ordinary payloads on the driver, where the
sequential runtime's hooks carry out what involves no clients. Client operations are queued
per worker and go, in one actor call, with the next operation whose result the driver reads
(a worker runs its caller's calls in order); an aggregation waits for each worker's partial
aggregate and combines them here, in worker (that is, client) order:

- integer sums, minima, maxima, stacks and the secure sums are exact: bit for bit the
  vectorized runtime's results, whatever the number of workers;
- float sums and means add the workers' partial sums: with one worker bit for bit the
  vectorized runtime's, with several the same up to the rounding of a reordered float sum
  (a few ulps: `rtol=1e-5` in the tests).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import itertools
import time
import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import errors
from federax.core import types as t
from federax.core.computations import FederatedCall, LocalCall
from federax.core.execution import Execution, HostOnly
from federax.core.host import holds_strings
from federax.core.placements import SERVER
from federax.core.type_conversions import make_container
from federax.runtime import _convert
from federax.runtime.distributed.data import ClientIds
from federax.runtime._base import EvalKeys, NO_CLIENTS_TO_STACK, require_clients
from federax.runtime.sequential import SequentialExecution, _Lists
from federax.runtime.padding import zeros_like_type

SENT_KEPT = 128
"""Functions the driver assumes a worker still holds (it keeps `worker.FUNCTIONS_KEPT`)."""

INLINE_BYTES = 64 * 1024
"""A broadcast value this small travels inside the actor calls (Ray inlines such arguments
anyway) rather than through the object store (`ray.put`, about a millisecond)."""


class Fn:
  """A client function among a worker call's arguments (sent by digest, see `FunctionRefs`)."""

  __slots__ = ("fn",)

  def __init__(self, fn):
    self.fn = fn


class Sharded:
  """A client value: on each worker, that worker's block of members under one handle (an int:
  block k's worker knows it as `(call of block k, handle)`)."""

  __slots__ = ("handle",)

  def __init__(self, handle: int):
    self.handle = handle

  def __repr__(self) -> str:
    return f"Sharded{self.handle}"


class H:
  """A handle among a worker call's arguments: sent to block k's worker as `(its call, id)`."""

  __slots__ = ("id",)

  def __init__(self, id_: int):
    self.id = id_


class WorkerDied(RuntimeError):
  """A worker's process died: its block's values are lost (the execution retries or drops)."""


class RawClients:
  """A client argument as the user gave it: sent in blocks, converted by the workers."""

  __slots__ = ("values", "member_type", "where", "op")

  def __init__(self, values: list, member_type: t.Type, where: str, op: str):
    self.values, self.member_type, self.where, self.op = values, member_type, where, op

  def block(self, positions) -> list:
    return [self.values[int(p)] for p in positions]


class IdClients(RawClients):
  """A client argument given as `ClientIds`: the workers get ids and load the data."""

  __slots__ = ("source",)

  def __init__(self, source: ClientIds, member_type: t.Type, where: str, op: str):
    super().__init__(source.client_ids, member_type, where, op)
    self.source = source


class DriverRep(_Lists):
  """The driver's representation: client arguments left as given (the workers convert their
  blocks; `ClientIds` stay ids), server sequences as lists (the sequential runtime's form)."""

  def whole_clients(self, values, member_type, where, op):
    if isinstance(values, ClientIds):
      return IdClients(values, member_type, where, op)
    return RawClients(list(values), member_type, where, op)


def find_ids(payload: Any):
  """The first `IdClients` of a driver payload (a struct of payloads), or None."""
  if isinstance(payload, IdClients):
    return payload
  if isinstance(payload, tuple):
    return next(filter(None, map(find_ids, payload)), None)
  return None


def split(n: int, workers: int) -> list[tuple[int, int]]:
  """`(size, offset)` of each worker's block of `n` clients: contiguous, in client order, sizes
  differing by at most one; at least one block (of 0 clients when n is 0).

  Example:
    >>> split(7, 3)
    [(3, 0), (2, 3), (2, 5)]
  """
  used = max(1, min(workers, n))
  sizes = [n // used + (k < n % used) for k in range(used)]
  return list(zip(sizes, itertools.accumulate([0] + sizes[:-1])))


class RayExecution(Execution):
  """Carries out intrinsics with client values sharded over Ray workers (see the module)."""

  def __init__(self, runtime, call: int, workers: list, n: int, new_call, deadline: float,
               blocks: list | None = None):
    self.runtime = runtime
    self.call = call
    self.n = n
    # Block k: the cohort positions (ascending) of worker k's clients; contiguous by default.
    self.blocks = blocks if blocks is not None else [
        np.arange(offset, offset + size, dtype=np.int32) for size, offset in split(n, len(workers))]
    self.workers = list(workers[:len(self.blocks)])  # Block k's worker (retries change it).
    self.block_calls = [call] * len(self.blocks)  # Block k's call id on its worker.
    self.deadline = deadline
    self._new_call = new_call
    self._server = SequentialExecution(runtime._sequential, n)
    self._eval_keys = EvalKeys(runtime.options.seed)
    self._ids = itertools.count()
    # Per block: the operations that built its values (replayed on a retry), and the refs of
    # those not waited for (their errors come first).
    self.log: list = [[] for _ in self.blocks]
    self.pending: list = [[] for _ in self.blocks]
    # Per block: operations that store a value (their arguments as block k's worker takes
    # them) not sent yet; they go with the block's next call, in order (see `_store_on`).
    self.queued: list = [[] for _ in self.blocks]
    self.dropped: set = set()
    self.retries = 0
    self.started: list = [(w, call) for w in self.workers]  # (worker, call id): ended at the end.
    self._dead: set = set()
    self._attempts: collections.Counter = collections.Counter()  # Block -> its deaths so far.

  # --- Plumbing ----------------------------------------------------------------------------------

  def _begin(self) -> None:
    for k, positions in enumerate(self.blocks):  # Sent with each block's first operation.
      self.queued[k].append(("begin", (self.call, len(positions), positions)))

  @property
  def live(self) -> list:
    """The blocks not dropped, in client order."""
    return [k for k in range(len(self.blocks)) if k not in self.dropped]

  @property
  def live_n(self) -> int:
    return sum(len(self.blocks[k]) for k in self.live)

  def _client_order(self) -> np.ndarray:
    """Indices that put the live blocks' members, concatenated, in client order."""
    return np.argsort(np.concatenate([self.blocks[k] for k in self.live]), kind="stable")

  def _new(self) -> int:
    return next(self._ids)

  def _args(self, k: int, args: tuple) -> list:
    """`args` for block k's worker: handles named in its call, client functions by digest."""
    def one(a):
      if isinstance(a, H):
        return (self.block_calls[k], a.id)
      if isinstance(a, Fn):
        return self.runtime._function_ref(a.fn, self.workers[k])
      if isinstance(a, tuple) and a and all(isinstance(x, H) for x in a):
        return tuple(one(x) for x in a)
      return a
    return [one(a) for a in args]

  def _send(self, k: int, method: str, args: tuple, queue: bool = False):
    """Sends `method` to block k's worker (after the block's queued operations, in the same
    actor call) and returns the ref of its result; or, with `queue`, queues it (None) unless
    it carries a client function's pickle (sent now: the driver counts it as held there)."""
    converted = self._args(k, args)
    worker, queued = self.workers[k], self.queued[k]
    if any(isinstance(a, self.runtime._ray.ObjectRef) for a in converted):
      # Ray resolves an object-store argument only at the top level of a call's arguments.
      self._flush(k)
      return getattr(worker, method).remote(*converted)
    args, fresh = converted, any(isinstance(a, Fn) and c[1] is not None
                                 for a, c in zip(args, converted))
    if queue and not fresh:
      queued.append((method, args))
      return None
    if not queued:
      return getattr(worker, method).remote(*args)
    queued.append((method, args))
    self.queued[k] = []
    return worker.run.remote(queued)

  def _flush(self, k: int) -> None:
    """Sends block k's queued operations now (not waited for)."""
    if self.queued[k]:
      queued, self.queued[k] = self.queued[k], []
      self.pending[k].append(self.workers[k].run.remote(queued))

  def _stored(self, method: str, *args) -> Sharded:
    out = self._new()
    for k in self.live:
      self._store_on(k, method, (H(out),) + args)
    return Sharded(out)

  def _store_on(self, k: int, method: str, args: tuple) -> None:
    self.log[k].append((method, args))
    # Queued until the next call that returns a result (an aggregation, a fetch): each actor
    # call costs the driver and the worker about half a millisecond, a round's dozen of them
    # most of the Ray runtime's overhead on small models; a worker would only start the work
    # (a map, a load) the driver's few Python steps earlier.
    ref = self._send(k, method, args, queue=True)
    if ref is not None:
      self.pending[k].append(ref)

  def _partials(self, method: str, *args) -> list:
    """Each live block's result of `method`, in client order; a block whose worker died (or
    straggled, see `_result`) is replayed on another worker (up to `max_retries` times) or
    dropped (`min_clients_per_round`)."""
    refs = {k: self._send(k, method, args) for k in self.live}
    since = dict.fromkeys(refs, time.monotonic())  # Every block's straggler clock at once.
    out = {}
    for k in list(refs):
      while True:
        try:
          out[k] = self._result(k, refs[k], since[k])
          break
        except WorkerDied as e:
          if not self._recover(k, e):
            break
          refs[k], since[k] = self._send(k, method, args), time.monotonic()
    return [out[k] for k in self.live]

  def _result(self, k: int, ref, since: float):
    """Block k's result `ref`. A worker that gives none within `straggler_timeout_s` of `since`
    is killed, so that it cannot deliver late (Ray fails its results), and is `WorkerDied`."""
    rt = self.runtime
    limit = rt.straggler_timeout_s
    if limit is not None and since + limit < self.deadline:  # Else timeout_s comes first.
      ready, _ = rt._ray.wait([ref], timeout=max(since + limit - time.monotonic(), 0.0))
      if not ready:
        rt._ray.kill(self.workers[k])
        raise WorkerDied(f"fx.runtime.ray: a Ray worker gave no result within "
                         f"straggler_timeout_s={limit:g} s; it was killed as a straggler.")
    return rt._get(ref, self.pending[k], deadline=self.deadline)

  def _recover(self, k: int, error: WorkerDied) -> bool:
    """Block k's worker died: replays the block on another worker (True), or drops it (False)
    when its retries are spent and the policy allows; otherwise raises."""
    rt = self.runtime
    dead = self.workers[k]
    self._dead.add(dead)
    rt._pool.replace(dead)
    self._attempts[k] += 1
    if self._attempts[k] > rt.max_retries:
      size = len(self.blocks[k])
      if rt.min_clients_per_round is None:
        raise errors.error(RuntimeError, "fx.runtime.ray", f"{error} Its {size} clients were "
                           f"retried {rt.max_retries} times.", hint="raise max_retries, or set "
                           "min_clients_per_round to drop a dead worker's clients") from None
      if self.live_n - size < rt.min_clients_per_round:
        raise errors.error(RuntimeError, "fx.runtime.ray", f"{error} Dropping its {size} "
                           f"clients would leave {self.live_n - size}, fewer than "
                           f"min_clients_per_round={rt.min_clients_per_round}.",
                           hint="lower min_clients_per_round or raise max_retries") from None
      self.dropped.add(k)
      return False
    # Another live worker of this call (the least busy), else the dead one's replacement.
    alive = [w for w in dict.fromkeys(self.workers[j] for j in self.live) if w not in self._dead]
    target = (min(alive, key=lambda w: sum(self.workers[j] is w for j in self.live)) if alive
              else rt._pool.replacement(dead, rt.timeout_s))
    self.retries += 1
    self.workers[k] = target
    self.block_calls[k] = self._new_call()
    self.started.append((target, self.block_calls[k]))
    log, self.log[k], self.pending[k] = self.log[k], [], []
    # The dead worker's queued operations are in the log: replayed, after a `begin` there.
    self.queued[k] = [("begin", (self.block_calls[k], len(self.blocks[k]), self.blocks[k]))]
    for method, args in log:  # The same operations, so the same values (bit for bit).
      self._store_on(k, method, args)
    return True

  def _put(self, payload: Any):
    """A driver payload for the workers: in Ray's object store (sent once to each node, not
    per worker), or itself when small (`INLINE_BYTES`)."""
    payload = jax.device_get(payload)
    size = sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(payload))
    return payload if size <= INLINE_BYTES else self.runtime._ray.put(payload)

  # --- Values ------------------------------------------------------------------------------------

  # As on the vectorized runtime, a string met on the way (a constant, a host computation)
  # means the body runs on the host (`HostOnly`, caught by the runtime); so do the workers.

  def constant(self, obj, value_type):
    if holds_strings(value_type):
      raise HostOnly(f"the constant {obj!r}")
    return self._server.constant(obj, value_type)

  def project(self, payload, ts, index):
    if ts.placement is SERVER:
      return payload[index]
    return self._stored("project", H(payload.handle), index)

  def call_local(self, concrete, payload):
    if concrete.on_host:
      raise HostOnly(f"the host computation {concrete.name}")
    return self._server.call_local(concrete, payload)

  def call_federated(self, comp, arg):
    return comp.run_body(arg)

  def broadcast(self, payload):
    return self._stored("put_shared", self._put(payload))

  # --- Clients -----------------------------------------------------------------------------------

  def federated_eval(self, member_fn, placement, takes_key):
    base = self._eval_keys.next()
    if placement is SERVER:
      return member_fn(base if takes_key else None)
    if takes_key:
      return self._stored("eval", _client_fn(member_fn), np.asarray(base))
    return self.broadcast(member_fn(None))

  def client_keys(self, key):
    return self._stored("client_keys", np.asarray(key))

  def map_clients(self, member_fn, payload, all_equal):
    return self._stored("map", _client_fn(member_fn), H(payload.handle))

  def zip_clients(self, payloads, all_equal_flags):
    return self._stored("zip", tuple(H(p.handle) for p in payloads))

  # --- Aggregations ------------------------------------------------------------------------------

  def federated_sum(self, payload, ts):
    return functools.reduce(_add, self._partials("sum", H(payload.handle)))

  def federated_mean(self, payload, ts, weight, weight_type):
    if weight is None:
      return _mean(tuple(self._partials("sum", H(payload.handle))), self.live_n)
    parts = self._partials("weighted_sum", H(payload.handle), H(weight.handle))
    return _weighted_mean(tuple(parts))

  def federated_min(self, payload, ts):
    require_clients("federated_min", self.n)
    return functools.reduce(lambda a, b: jax.tree_util.tree_map(jnp.minimum, a, b),
                            self._partials("min", H(payload.handle)))

  def federated_max(self, payload, ts):
    require_clients("federated_max", self.n)
    return functools.reduce(lambda a, b: jax.tree_util.tree_map(jnp.maximum, a, b),
                            self._partials("max", H(payload.handle)))

  def federated_stack(self, payload, ts):
    require_clients("federated_stack", self.n, NO_CLIENTS_TO_STACK)
    blocks = self._partials("stack", H(payload.handle))
    order = self._client_order()
    return jax.tree_util.tree_map(lambda *b: jnp.asarray(np.concatenate(b)[order]), *blocks)

  def federated_aggregate(self, payload, ts, zero, accumulate, merge, report):
    parts = self._partials("aggregate", H(payload.handle), _client_fn(accumulate),
                           _client_fn(merge), self._put(zero))
    merged = parts[0]
    for part in parts[1:]:  # The workers' partial aggregates, in client order.
      merged = merge((merged, part))
    return report(merged)

  def federated_secure_sum_bitwidth(self, payload, ts, bits):
    op = "federated_secure_sum_bitwidth"
    zeros = zeros_like_type(ts.member)
    leaves, treedef = jax.tree_util.tree_flatten(zeros)
    bit_leaves = [bits] * len(leaves) if isinstance(bits, int) else jax.tree_util.tree_leaves(bits)
    for z, b in zip(leaves, bit_leaves):  # Decided on the whole cohort, as on vectorized.
      if self.n * (2**b - 1) > np.iinfo(z.dtype).max:
        raise OverflowError(
            f"{op}: {self.n} clients of {b}-bit values can overflow {z.dtype}; use fewer bits or"
            " a wider integer type (jax_enable_x64 for int64).")
    parts = [treedef.flatten_up_to(p)
             for p in self._partials("sum_and_extremes", H(payload.handle))]
    sums = []
    for i, (z, b) in enumerate(zip(leaves, bit_leaves)):
      high = 2**b - 1
      real = [p[i] for p, k in zip(parts, self.live) if len(self.blocks[k])]
      smallest = min((np.min(s) for _, s, _ in real), default=0)
      largest = max((np.max(l) for _, _, l in real), default=0)
      if smallest < 0 or largest > high:
        bad = [int(v) for v in (smallest, largest) if not 0 <= v <= high]
        raise ValueError(f"{op}: client values {bad} lie outside [0, {high}].")
      total = sum((np.asarray(s, np.int64) for s, _, _ in (p[i] for p in parts)),
                  np.zeros(np.shape(z), np.int64))
      sums.append(jnp.asarray(total.astype(z.dtype)))  # Fits: checked above.
    return treedef.unflatten(sums)

  def federated_secure_modular_sum(self, payload, ts, modulus):
    parts = self._partials("modular_sum", H(payload.handle), modulus)
    zeros = zeros_like_type(ts.member)
    leaves, treedef = jax.tree_util.tree_flatten(zeros)
    mods = ([modulus] * len(leaves) if isinstance(modulus, int)
            else jax.tree_util.tree_leaves(modulus))
    flat = [treedef.flatten_up_to(p) for p in parts]
    sums = [jnp.asarray((sum(np.asarray(p[i], np.int64) for p in flat) % m).astype(z.dtype))
            for i, (z, m) in enumerate(zip(leaves, mods))]
    return treedef.unflatten(sums)

  def federated_select(self, keys, max_key, server_val, select_fn):
    return self._stored("select", _client_fn(select_fn), H(keys.handle), self._put(max_key),
                        self._put(server_val))

  # --- Sequences (on the driver: server and unplaced ones; client ones run on the workers) -------

  def sequence_map(self, fn, seq):
    return self._server.sequence_map(fn, seq)

  def sequence_reduce(self, seq, zero, step):
    return self._server.sequence_reduce(seq, zero, step)

  def sequence_sum(self, seq, element_type):
    return self._server.sequence_sum(seq, element_type)

  # --- Arguments in, results out -----------------------------------------------------------------

  def _enter(self, payload: Any, ts: t.Type) -> Any:
    """The argument's client values onto the workers: each worker gets (and converts) its
    block; all-equal ones are broadcast."""
    if isinstance(payload, RawClients):
      out = self._new()
      for k, positions in enumerate(self.blocks):
        block = payload.block(positions)
        if isinstance(payload, IdClients):  # Ids and the loader, never the data.
          args = (H(out), block, Fn(payload.source.load_fn), payload.member_type, payload.where,
                  payload.op)
          self._store_on(k, "put_ids", args)
        else:
          self._store_on(k, "put", (H(out), block, payload.member_type, payload.where,
                                    payload.op))
      return Sharded(out)
    if isinstance(ts, t.FederatedType):
      return payload if ts.placement is SERVER else self.broadcast(payload)
    if isinstance(ts, t.StructType) and isinstance(payload, tuple):
      return tuple(self._enter(p, et) for p, et in zip(payload, ts))
    return payload

  def _to_python(self, payload: Any, ts: t.Type) -> Any:
    """The result as Python values; client values are fetched from the workers only here."""
    if isinstance(ts, t.FederatedType) and ts.placement is not SERVER:
      blocks = self._partials("fetch", H(payload.handle), ts)
      if ts.all_equal:
        return blocks[0]
      members = [member for block in blocks for member in block]
      return [members[i] for i in self._client_order()]
    if isinstance(ts, t.StructType) and isinstance(payload, tuple):
      return make_container(tuple(self._to_python(p, et) for p, et in zip(payload, ts)), ts)
    return _convert.to_python(payload, ts, _Lists(), self.n)


def _client_fn(fn) -> Fn:
  """`fn` for the workers, which cannot run a host computation (on strings)."""
  if isinstance(fn, LocalCall) and fn.concrete.on_host:
    raise HostOnly(f"the host computation {fn.concrete.name}")
  return Fn(fn)


def _add(a, b):
  return jax.tree_util.tree_map(jnp.add, a, b)


@functools.partial(jax.jit, static_argnums=1)
def _mean(parts: tuple, n: int):
  # n static: XLA divides by the constant count as the vectorized program does (bit for bit).
  return jax.tree_util.tree_map(lambda x: (x / n).astype(x.dtype), functools.reduce(_add, parts))


@jax.jit
def _weighted_mean(parts: tuple):
  total = functools.reduce(jnp.add, [w for _, w in parts])
  summed = functools.reduce(_add, [wx for wx, _ in parts])
  return jax.tree_util.tree_map(lambda x: (x / total.astype(x.dtype)).astype(x.dtype), summed)


class FunctionRefs:
  """Client functions pickled once (a `LocalCall` once per concrete computation, a
  `FederatedCall` once per computation and parameter type: pickling one costs milliseconds,
  every round), named by digest; a worker receives the pickle the first time and keeps it
  (`worker.FUNCTIONS_KEPT`)."""

  def __init__(self, dumps):
    self._dumps = dumps
    # concrete -> entry; computation -> {parameter type: entry}. Weak: a computation dropped by
    # the user is dropped here too.
    self._by_concrete: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    self._by_computation: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    self._sent: collections.defaultdict = collections.defaultdict(collections.OrderedDict)

  def _kept(self, fn) -> tuple[dict | None, Any]:
    """The cache that keeps `fn`'s entry and its key there (None: not kept)."""
    if isinstance(fn, LocalCall):
      return self._by_concrete, fn.concrete
    if isinstance(fn, FederatedCall):
      return self._by_computation.setdefault(fn.computation, {}), fn.parameter
    return None, None

  def pickled(self, fn) -> tuple[str, bytes]:
    kept, key = self._kept(fn)
    if kept is not None and key in kept:
      return kept[key]
    try:
      blob = self._dumps(fn)
    except Exception as e:  # noqa: BLE001 -- any pickling failure: say what and why.
      named = getattr(fn, "concrete", None) or getattr(fn, "computation", None)
      name = getattr(named, "name", None) or getattr(fn, "__name__", fn)
      raise errors.error(
          TypeError, "fx.runtime.ray", f"the client function {name} cannot be sent to the Ray "
          f"workers: it cannot be serialized ({type(e).__name__}: {e}).",
          hint="client functions travel to the workers pickled (cloudpickle): keep them free "
          "of locks, open files, sockets and other process-bound objects") from None
    entry = (hashlib.sha1(blob).hexdigest(), blob)
    if kept is not None:
      kept[key] = entry
    return entry

  def forget(self, worker: Any) -> None:
    """`worker` died: a replacement holds no function."""
    self._sent.pop(worker, None)

  def ref(self, fn, worker: Any) -> tuple[str, bytes | None]:
    digest, blob = self.pickled(fn)
    sent = self._sent[worker]
    if digest in sent:
      sent.move_to_end(digest)
      return digest, None
    sent[digest] = True
    while len(sent) > SENT_KEPT:
      sent.popitem(last=False)
    return digest, blob

