"""`RayRuntime`: federated computations with their clients sharded over Ray worker processes.

Ray is an optional extra (`pip install 'federax[ray]'`), imported only when a Ray runtime is
made. The driver (this process) runs the computation's body (`execution.RayExecution`); each
worker (`worker.ShardWorker`, a Ray actor) keeps a contiguous block of the clients and runs
their part of every client operation through the vectorized runtime's machinery.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import numbers
import os
import socket
import sys
import time
import weakref
from typing import Any, NamedTuple, Optional

import numpy as np

from federax.core import context, errors
from federax.core import types as t
from federax.core.execution import HostOnly
from federax.core.placements import CLIENTS
from federax.core.rows import RowMaskNotHonoured
from federax.core.values import Value
from federax.runtime import _invoke
from federax.runtime._base import RuntimeBase, RuntimeOptions
from federax.runtime.distributed import _pickling, data, execution as ex
from federax.runtime.distributed.worker import CLIENTS_KEPT, ShardWorker
from federax.runtime.padding import RaggedError
from federax.runtime.sequential import SequentialRuntime
from federax.runtime.vectorized import VectorizedRuntime, host_execution
from federax.runtime.vectorized.stacking import KEEP_COMPILED, Unstackable

INSTALL = "pip install 'federax[ray]'"
_CALLS = itertools.count()  # Calls of every Ray runtime in this process: distinct handles.
_POOLS: dict = {}  # (Ray session, worker options) -> _Pool: runtimes alike share workers.


def import_ray():
  """The `ray` module, or an ImportError naming the install command."""
  try:
    import ray
  except ImportError as e:
    raise errors.error(ImportError, "fx.runtime.ray", f"Ray is not installed ({e}).",
                       hint=f"install it with: {INSTALL}") from None
  return ray


class _Schedule(NamedTuple):
  """A `ClientIds` cohort's schedule: the loader's digest, the workers, the client ids and
  their sizes it was made for, and each worker's block (`data.schedule`)."""

  digest: str
  workers: list
  client_ids: list
  sizes: list
  blocks: list


class _Pool:
  """Worker actors started with the same options on one Ray session; grown on demand, a dead
  one replaced."""

  def __init__(self, ray, actor_options: dict, worker_options: dict):
    self.ray = ray
    self.actor_class = ray.remote(ShardWorker).options(**actor_options)
    self.worker_options = worker_options
    self.actors: list = []
    self._ready: set = set()
    self._replaced: dict = {}  # A dead actor -> the one started in its place.
    # (loader digest, client id) -> the actor that loaded it, least recently scheduled first;
    # no more than the workers can keep (`worker.CLIENTS_KEPT` each), so that a population of
    # any size leaves the driver's memory flat.
    self.cached: collections.OrderedDict = collections.OrderedDict()
    # The last `ClientIds` schedule, when scheduling the same cohort again on the same workers
    # gives it again and leaves `cached` as it is (see `RayRuntime._schedule`), else None.
    self.fixed_schedule: Optional[_Schedule] = None
    self.functions = ex.FunctionRefs(ray.cloudpickle.dumps)

  def _start(self):
    return self.actor_class.remote(list(sys.path), self.worker_options)

  def _wait(self, actors: list, timeout_s: float) -> None:
    waiting = [a for a in actors if a not in self._ready]
    try:  # Wait until each is up (they import JAX and federax).
      self.ray.get([a.pid.remote() for a in waiting], timeout=timeout_s)
    except self.ray.exceptions.GetTimeoutError:
      raise errors.error(
          TimeoutError, "fx.runtime.ray", f"{len(waiting)} Ray workers did not start within "
          f"{timeout_s:g} s.", hint="the cluster may lack the resources each worker asks for "
          "(resources_per_worker); `ray status` shows what it has") from None
    self._ready.update(waiting)

  def take(self, n: int, timeout_s: float) -> list:
    while len(self.actors) < n:
      self.actors.append(self._start())
    self._wait(self.actors[:n], timeout_s)
    return self.actors[:n]

  def replace(self, dead) -> None:
    """Starts a replacement for the dead actor `dead` in its place (not waited for)."""
    self._ready.discard(dead)
    self.functions.forget(dead)
    if dead in self.actors:
      self._replaced[dead] = self.actors[self.actors.index(dead)] = self._start()

  def replacement(self, dead, timeout_s: float):
    """The replacement of the dead actor `dead`, once it is up."""
    actor = self._replaced.get(dead) or self._start()
    self._wait([actor], timeout_s)
    return actor


class RayRuntime(RuntimeBase):
  """Runs federated computations with their clients sharded over Ray workers.

  Each worker keeps a contiguous block of the clients (their data, loaded there, and every
  client value computed from it) and runs each client operation on its whole block as one
  compiled program (the vectorized runtime's). The driver runs the body, sends broadcasts
  once per node (Ray's object store) and combines the workers' partial aggregates. Results are
  the vectorized runtime's for the same seed: client keys come from the client's position in
  the cohort; integer and secure sums are exact; float sums of several workers differ from one
  program's by the rounding of a reordered sum. A computation whose values hold strings runs as
  on the vectorized runtime (`host_execution`): its body on the driver, where the strings stay,
  each string-free part a call of this runtime on the workers.

  Args:
    address: the Ray cluster (`"host:port"` of its head, `"auto"`, `"ray://..."`); None starts
      a local Ray of this process's own on this machine (bound to 127.0.0.1), even where
      another cluster runs (pass "auto" to join that one). If Ray is already initialized in this
      process, that connection is used.
    num_workers: worker actors (default: the cluster's CPUs over each worker's).
    resources_per_worker: Ray actor options of a worker, e.g. `{"num_cpus": 2, "num_gpus": 1}`
      (default `{"num_cpus": 1}`).
    seed, default_num_clients: as on the other runtimes.
    chunk_size, sequence_loop, client_loop: the workers' vectorized runtime options.
    shard: a worker that sees several devices (the GPUs Ray gives it with `num_gpus`) shards its
      block's client axis over them when the block divides evenly, as the vectorized runtime
      does on one machine (`fx.runtime.vectorized(shard=...)`).
    timeout_s: the longest a call may take, retries included (a TimeoutError past it, never a
      hang).
    connect_timeout_s: the longest wait for the cluster's address to answer.
    max_retries: how many times a block of clients whose worker died is replayed on another
      worker (a live one, else the dead one's replacement) before it is dropped or the call
      fails. A replayed block runs the same operations, so the call's result is the one an
      uninterrupted call gives, and its partial aggregates count once.
    min_clients_per_round: None (default): a block whose retries are spent fails the call.
      An int: such a block's clients are dropped from the aggregations that follow (as a
      deployment drops stragglers), provided at least this many clients remain;
      `last_call["clients_dropped"]` says how many were.
    straggler_timeout_s: None (default): no limit. A number of seconds: the longest the driver
      waits for one worker's block at an aggregation (or at fetching a client result), that is,
      for the block's client operations since the last one it waited for (typically a round's
      loading and local training, and on a worker's first call its compilation). A worker past
      it is a straggler, handled as a dead worker: it is killed (a late result cannot arrive)
      and replaced, and its blocks are replayed elsewhere or dropped by the policy above.
      `timeout_s` still bounds the whole call.

  Example (not run here: it starts Ray):
    with fx.runtime.ray(num_workers=2):
      state, metrics = process.next(state, client_data)
  """

  name = "ray"

  def __init__(self, address: Optional[str] = None, *, num_workers: Optional[int] = None,
               resources_per_worker: Optional[dict] = None, seed: int = 0,
               default_num_clients: Optional[int] = None, chunk_size: Optional[int] = 128,
               sequence_loop: str = "auto", client_loop: str = "auto", shard: bool = True,
               timeout_s: float = 600.0, connect_timeout_s: float = 10.0,
               max_retries: int = 2, min_clients_per_round: Optional[int] = None,
               straggler_timeout_s: Optional[float] = None):
    ray = import_ray()
    _pickling.register()
    super().__init__(RuntimeOptions(seed=seed, default_num_clients=default_num_clients))
    if num_workers is not None and (isinstance(num_workers, bool) or
                                    not isinstance(num_workers, int) or num_workers < 1):
      raise errors.error(ValueError, "fx.runtime.ray", "num_workers must be an int >= 1.",
                         expected="an int >= 1 or None", actual=repr(num_workers))
    vec_options = dict(seed=seed, chunk_size=chunk_size, sequence_loop=sequence_loop,
                       client_loop=client_loop, shard=shard)
    self._local = VectorizedRuntime(default_num_clients=default_num_clients, **vec_options)
    self._sequential = SequentialRuntime(seed=seed, default_num_clients=default_num_clients)
    self.host_bodies: weakref.WeakSet = weakref.WeakSet()  # Bodies found to hold strings.
    self._ray = ray
    self.address = address
    self.timeout_s = timeout_s
    self.resources_per_worker = dict(resources_per_worker or {"num_cpus": 1})
    _connect(ray, address, connect_timeout_s)
    if num_workers is None:
      cpus = ray.cluster_resources().get("CPU", 1)
      num_workers = max(1, int(cpus // max(self.resources_per_worker.get("num_cpus", 1), 1)))
    self.num_workers = num_workers
    for name, value in (("max_retries", max_retries),
                        ("min_clients_per_round", min_clients_per_round)):
      if value is not None and (isinstance(value, bool) or not isinstance(value, int) or
                                value < 0):
        raise errors.error(ValueError, "fx.runtime.ray", f"{name} must be an int >= 0.",
                           expected="an int >= 0", actual=repr(value))
    if max_retries is None:
      raise errors.error(ValueError, "fx.runtime.ray", "max_retries must be an int >= 0.",
                         expected="an int >= 0", actual="None")
    if straggler_timeout_s is not None and (
        isinstance(straggler_timeout_s, bool) or not isinstance(straggler_timeout_s, numbers.Real)
        or not straggler_timeout_s > 0):
      raise errors.error(ValueError, "fx.runtime.ray", "straggler_timeout_s must be a number of "
                         "seconds > 0, or None (no limit).", expected="a number > 0 or None",
                         actual=repr(straggler_timeout_s))
    self.max_retries = max_retries
    self.straggler_timeout_s = straggler_timeout_s
    self.min_clients_per_round = min_clients_per_round
    self.last_call: dict = {}
    key = (ray.get_runtime_context().get_job_id(), repr(sorted(self.resources_per_worker.items())),
           repr(sorted(vec_options.items())))
    if key not in _POOLS:
      actor_options = dict(self.resources_per_worker, scheduling_strategy="SPREAD")
      _POOLS[key] = _Pool(ray, actor_options, vec_options)
    self._pool = _POOLS[key]
    self._pool.take(num_workers, timeout_s)

  def __repr__(self) -> str:
    return (f"fx.runtime.ray(address={self.address!r}, num_workers={self.num_workers}, "
            f"resources_per_worker={self.resources_per_worker}, {self.options})")

  def worker_devices(self) -> list[dict]:
    """Per worker, in block order: `{"backend", "devices": how many it sees, "shards": the
    device counts its blocks were sharded over so far (1: one device)}`."""
    workers = self._pool.take(self.num_workers, self.timeout_s)
    return self._get([w.devices.remote() for w in workers])

  def worker_pids(self) -> list[int]:
    """The process ids of this runtime's workers, in block order."""
    workers = self._pool.take(self.num_workers, self.timeout_s)
    return self._get([w.pid.remote() for w in workers])

  # --- A call ------------------------------------------------------------------------------------

  def invoke(self, comp, args: tuple, kwargs: dict) -> Any:
    signature, python_arg, concrete = _invoke.bind(comp, args, kwargs)
    if concrete is not None:  # A local computation: no clients, run here.
      return self._local.invoke(comp, args, kwargs)
    if host_execution.on_host(self, comp, signature):
      return host_execution.invoke(self, comp, signature, python_arg)
    try:
      return self._call(comp, signature, python_arg)
    except HostOnly:  # Its body holds strings: found on the way (its operations were ended).
      self.host_bodies.add(comp)
      return host_execution.invoke(self, comp, signature, python_arg)

  # --- Host orchestration (`host_execution.CompiledRuntime`) -------------------------------------

  @property
  def host_runtime(self) -> SequentialRuntime:
    return self._sequential

  def compiled_call(self, comp, signature, python_arg: Any,
                    clients: Optional[int] = None) -> Any:
    """A string-free part of a host body, as one call of this runtime (on the workers)."""
    try:
      result = self._call(comp, signature, python_arg, clients)
    # Client by client on the driver, as the vectorized runtime's fallback runs it.
    except RaggedError as e:
      raise Unstackable(f"{e}; {KEEP_COMPILED}") from None
    except RowMaskNotHonoured as e:
      raise Unstackable(f"{e.consumer or 'a computation'} {e.reason}; its clients' batches "
                        "differ in size, and the workers pad short batches only for "
                        "computations that mask them", e.fix or KEEP_COMPILED) from None
    dropped = self.last_call["clients_dropped"]
    if dropped and _holds_client_values(signature.result):
      # The host body holds every client's value: one without the dropped clients' would no
      # longer line up with the others.
      raise errors.error(
          RuntimeError, "fx.runtime.ray", f"{comp.name}: {dropped} clients of a dead worker "
          "were dropped (min_clients_per_round), but its result holds values of each client, "
          "for a body that runs on the host (its values hold strings) and keeps every "
          "client's.", hint="raise max_retries: a dead worker's clients are then replayed")
    return result

  def warn_fallback(self, why: str, comp, hint: Optional[str] = None) -> None:
    self._local.warn_fallback(why, comp, hint)

  def _call(self, comp, signature, python_arg: Any, clients: Optional[int] = None) -> Any:
    """`comp(python_arg)` with its clients on the workers (`clients`: the client count when no
    argument is placed at CLIENTS). Raises `HostOnly` if its body holds strings."""
    payload, n = _invoke.convert_argument(comp, signature, python_arg, ex.DriverRep())
    n = n if n is not None or clients is None else clients
    call = next(_CALLS)
    deadline = time.monotonic() + self.timeout_s
    workers = self._pool.take(self.num_workers, self.timeout_s)
    execution = ex.RayExecution(self, call, workers, self.options.num_clients(n),
                                lambda: next(_CALLS), deadline, self._schedule(payload, workers))
    execution._begin()
    try:
      payload = execution._enter(payload, signature.parameter)
      with context.use_execution(execution):
        arg = None if signature.parameter is None else Value(signature.parameter, payload)
        result = comp.run_body(arg)
      return execution._to_python(result.payload, signature.result)
    finally:
      self.last_call = {
          "clients": execution.n, "clients_dropped": execution.n - execution.live_n,
          "blocks_retried": execution.retries}
      # Not waited for (a round trip a call): a worker runs its caller's calls in order, so
      # the values are dropped before the next call's operations run; a dead worker's are lost.
      # An aborted call's too (an error, or `HostOnly`: the body runs again on the host).
      for worker, block_call in execution.started:
        worker.end.remote(block_call)

  def _schedule(self, payload, workers: list) -> Optional[list]:
    """For a `ClientIds` argument: each worker's clients by examples, kept where cached (the
    pool remembers which worker loaded which client); else None (contiguous blocks)."""
    ids = ex.find_ids(payload)
    if ids is None:
      return None
    source, pool = ids.source, self._pool
    digest = pool.functions.pickled(source.load_fn)[0]
    sizes = source.num_examples or [1] * len(source)
    fixed = pool.fixed_schedule
    if (fixed is not None and fixed.digest == digest and len(fixed.workers) == len(workers) and
        all(a is b for a, b in zip(fixed.workers, workers)) and
        fixed.client_ids == source.client_ids and fixed.sizes == sizes):
      return fixed.blocks  # A fixed cohort, round after round: ~2 ms of Python at 1,000 clients.
    index = {w: k for k, w in enumerate(workers)}
    holders = [index.get(pool.cached.get((digest, c)), -1) for c in source.client_ids]
    blocks = data.schedule(sizes, holders, len(workers))
    cached = pool.cached
    for k, positions in enumerate(blocks):
      for p in positions:
        key = (digest, source.client_ids[p])
        cached[key] = workers[k]
        cached.move_to_end(key)
    evicted = False
    while len(cached) > CLIENTS_KEPT * max(len(pool.actors), 1):
      cached.popitem(last=False)
      evicted = True
    # Each client kept where it was (none evicted, no id twice): the same cohort again reads
    # these holders, so gets these blocks, and moves the same keys to the end in the same order.
    assigned = np.full(len(holders), -1)
    for k, positions in enumerate(blocks):
      assigned[positions] = k
    kept = (not evicted and np.array_equal(assigned, holders) and
            len(set(source.client_ids)) == len(source.client_ids))
    pool.fixed_schedule = (_Schedule(digest, list(workers), list(source.client_ids), list(sizes),
                                     blocks) if kept else None)
    return blocks

  # --- Talking to the workers --------------------------------------------------------------------

  def _function_ref(self, fn, worker_index: int) -> tuple:
    return self._pool.functions.ref(fn, worker_index)

  def _get(self, refs, pending: Optional[list] = None, raise_errors: bool = True,
           deadline: Optional[float] = None):
    """`ray.get` bounded by `deadline` (default: `timeout_s` from now), a worker's error
    re-raised as the error it was; on an error, the first error of the operations in
    `pending` (sent earlier, not waited for). A dead worker is `execution.WorkerDied`."""
    ray = self._ray
    if deadline is None:
      deadline = time.monotonic() + self.timeout_s
    try:
      try:
        return ray.get(refs, timeout=max(deadline - time.monotonic(), 0.0))
      except ray.exceptions.RayTaskError:
        if pending:
          ray.get(pending, timeout=max(deadline - time.monotonic(), 0.0))
        raise
    except ray.exceptions.GetTimeoutError:
      if not raise_errors:
        return None
      raise errors.error(TimeoutError, "fx.runtime.ray", f"the call gave no result within "
                         f"timeout_s={self.timeout_s:g} s.",
                         hint="raise timeout_s for long rounds") from None
    except ray.exceptions.RayActorError as e:
      if not raise_errors:
        return None
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise ex.WorkerDied(f"fx.runtime.ray: a Ray worker died ({first}).") from None
    except ray.exceptions.RayTaskError as e:
      if not raise_errors:
        return None
      cause = getattr(e, "cause", None)
      if cause is None:
        raise
      raise cause from None  # `HostOnly` too: the call runs on the host.


def _holds_client_values(ts) -> bool:
  """Whether a value of type `ts` holds a value of each client (`{T}@CLIENTS`)."""
  return t.contains(ts, lambda x: isinstance(x, t.FederatedType) and x.placement is CLIENTS
                    and not x.all_equal)


def _connect(ray, address: Optional[str], timeout_s: float) -> None:
  """Connects this process to Ray (unless it is already), failing fast on a dead address."""
  if address is not None:
    host_port = address.removeprefix("ray://")
    if host_port != "auto" and ":" in host_port:
      host, port = host_port.rsplit(":", 1)
      try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
      except (OSError, ValueError) as e:
        raise errors.error(
            ConnectionError, "fx.runtime.ray", f"no Ray cluster answers at {address!r} ({e}).",
            hint="start one with `ray start --head` (its address is printed), or pass "
            "address=None for a local Ray") from None
  if ray.is_initialized():
    return
  if address is None:  # A local Ray for this process, on the loopback interface only.
    # "local": Ray's default (no address) would join the latest cluster started here instead.
    with _loopback(ray):
      ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
               logging_level="ERROR", log_to_driver=False)
    return
  ray.init(address=address, logging_level="ERROR", log_to_driver=False)


@contextlib.contextmanager
def _loopback(ray):
  """Keeps 127.0.0.1 as given while a local Ray starts. On Linux Ray "resolves" a loopback
  `_node_ip_address` to the machine's outward address (so that other machines could join),
  unless Ray clusters are switched off (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the switch its
  macOS and Windows builds use): without this the GCS, raylet and workers listen there."""
  from ray._private import ray_constants
  name = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
  saved = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(name)
  ray_constants.ENABLE_RAY_CLUSTER = False
  os.environ[name] = "0"  # Read again by the processes Ray starts (agents, workers).
  try:
    yield
  finally:
    ray_constants.ENABLE_RAY_CLUSTER = saved[0]
    if saved[1] is None:
      os.environ.pop(name, None)
    else:
      os.environ[name] = saved[1]
