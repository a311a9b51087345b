"""A Ray worker's side of the Ray runtime: a block of clients kept here, run through the
vectorized runtime's machinery.

`ShardWorker` is a plain class (the runtime makes it a Ray actor with `ray.remote`, so this
module imports no Ray). It holds, per call, the client values of its block of clients (the
vectorized form: leaves with a client axis, or `Shared` leaves), under handles the driver names.
Each operation the driver sends is a `VectorizedExecution` hook run on the whole block inside
one jitted program, cached by the function's digest and the block's size: one compiled program
per worker and shape, never one per client. Aggregations return the block's partial aggregate
(see `federax.runtime.distributed.execution` for how the driver combines them).
"""

from __future__ import annotations

import collections
import os
import pickle
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import context
from federax.core import types as t
from federax.core.placements import CLIENTS
from federax.runtime import _convert, xla_options
from federax.runtime._base import client_key
from federax.runtime.vectorized import clients, plan as plans
from federax.runtime.vectorized.execution import VectorizedExecution
from federax.runtime.vectorized.reductions import client_sum_and_extremes
from federax.runtime.vectorized.runtime import VectorizedRuntime, _leave
from federax.runtime.vectorized.stacking import Stacked

FUNCTIONS_KEPT = 256
"""Client functions (and their programs) a worker keeps, least recently used dropped."""

CLIENTS_KEPT = 4096
"""Clients loaded by `put_ids` a worker keeps across calls, least recently used dropped."""

BLOCKS_KEPT = 4
"""Converted blocks of `put_ids` (the same clients again) a worker keeps across calls."""


class _Failed:
  """A value whose operation raised: reading it raises the same error (the driver sends
  operations without waiting, so the error surfaces where a result is read)."""

  __slots__ = ("error",)

  def __init__(self, error: BaseException):
    self.error = error


class ShardWorker:
  """Holds one block of clients per call and runs the driver's operations on it.

  Args:
    sys_path: the driver's `sys.path`, so user modules import here as they do there (on a
      cluster of several machines, the same code must be installed on each).
    options: the `VectorizedRuntime` options of the block's programs.
  """

  def __init__(self, sys_path: list, options: dict):
    sys.path.extend(p for p in sys_path if p not in sys.path)
    self._vec = VectorizedRuntime(**options)
    self._seed = options.get("seed", 0)
    self._values: dict = {}  # (call, id) -> payload, or _Failed.
    self._calls: dict = {}  # call -> (n, positions): this worker's clients in the cohort.
    self._functions: collections.OrderedDict = collections.OrderedDict()  # digest -> (fn, {})
    self._clients: collections.OrderedDict = collections.OrderedDict()  # (loader, id) -> data
    self._blocks: collections.OrderedDict = collections.OrderedDict()  # ids -> converted block
    self._loads = 0
    self.shards: set = set()  # The device counts blocks were placed on (1: one device).

  # --- Bookkeeping -------------------------------------------------------------------------------

  def pid(self) -> int:
    return os.getpid()

  def begin(self, call: int, n: int, positions: np.ndarray) -> None:
    """Call `call` gives this worker `n` clients, at `positions` (int32, ascending) of the
    cohort (their keys come from these positions)."""
    self._calls[call] = (n, np.asarray(positions, np.int32))

  def run(self, operations: list) -> Any:
    """Runs `(method, args)` operations in order (several in one actor call: the driver queues
    the cheap ones); returns the last one's result."""
    out = None
    for method, args in operations:
      out = getattr(self, method)(*args)
    return out

  def end(self, call: int) -> int:
    """Drops the call's values; returns how many it held."""
    self._calls.pop(call, None)
    dropped = [h for h in self._values if h[0] == call]
    for h in dropped:
      del self._values[h]
    return len(dropped)

  def _get(self, handle) -> Any:
    value = self._values[handle]
    if isinstance(value, _Failed):
      raise value.error
    return value

  def _store(self, out, make) -> None:
    try:
      self._values[out] = make()
    except Exception as e:  # noqa: BLE001 -- kept, raised where the value is read.
      self._values[out] = _Failed(e)

  def _function(self, digest: str, blob: bytes | None):
    """The client function `digest` (unpickled from `blob` the first time)."""
    if digest not in self._functions:
      if blob is None:
        raise KeyError(f"the Ray worker lost function {digest}; resend it")
      try:
        self._functions[digest] = (pickle.loads(blob), {})
      except Exception as e:  # noqa: BLE001 -- every later use raises the same error.
        self._functions[digest] = (_Failed(e), {})
      while len(self._functions) > FUNCTIONS_KEPT:
        self._functions.popitem(last=False)
    self._functions.move_to_end(digest)
    if isinstance(self._functions[digest][0], _Failed):
      raise self._functions[digest][0].error
    return self._functions[digest]

  def _execution(self, n: int) -> VectorizedExecution:
    plan = plans.decide(self._vec, clients=n, streams_possible=False, differentiable=False)
    return VectorizedExecution(plan, n, self._seed)

  def _program(self, fn_ref, key, body):
    """The jitted `body(execution, *args)` for this block size, cached with the function."""
    digest, blob = fn_ref if fn_ref is not None else ("", None)
    programs = self._function(digest, blob)[1] if fn_ref is not None else self._plain
    if key not in programs:
      n = key[-1]

      def program(*args):
        execution = self._execution(n)
        with context.use_execution(execution):
          return body(execution, *args)

      programs[key] = xla_options.jit(program)
    return programs[key]

  @property
  def _plain(self) -> dict:
    if not hasattr(self, "_plain_programs"):
      self._plain_programs = {}
    return self._plain_programs

  def _fn(self, fn_ref):
    return self._function(*fn_ref)[0]

  # --- Values ------------------------------------------------------------------------------------

  def put(self, out, values: list, member_type: t.Type, where: str, op: str) -> None:
    """Converts this block's Python client values into the vectorized form, here."""
    def convert():
      n = self._calls[out[0]][0]
      plan = plans.decide(self._vec, clients=n, streams_possible=False, differentiable=False)
      rep = Stacked(plan, self._vec._cohorts, None, self._vec._lengths)
      ts = t.FederatedType(member_type, CLIENTS)
      # Over this worker's devices (its GPUs) when the block divides evenly, as on one machine.
      placed = plans.place(_convert.argument(values, ts, rep, where, op, {}), ts, plan)
      self.shards.add(max((len(x.sharding.device_set) for x in jax.tree_util.tree_leaves(placed)
                           if isinstance(x, jax.Array)), default=1))
      return placed
    self._store(out, convert)

  def put_ids(self, out, client_ids: list, load_ref, member_type: t.Type, where: str,
              op: str) -> None:
    """Loads this block's clients here (`load_fn(client_id)`, kept across calls) and converts
    them as `put` does; the same block again (a fixed cohort, round after round) reuses its
    converted form."""
    block_key = (load_ref[0], tuple(client_ids), repr(member_type))
    if block_key in self._blocks:
      self._blocks.move_to_end(block_key)
      self._values[out] = self._blocks[block_key]
      return

    def load():
      load_fn = self._fn(load_ref)
      values = []
      for client_id in client_ids:
        key = (load_ref[0], client_id)
        if key not in self._clients:
          self._clients[key] = load_fn(client_id)
          self._loads += 1
        self._clients.move_to_end(key)
        values.append(self._clients[key])
      while len(self._clients) > CLIENTS_KEPT:
        self._clients.popitem(last=False)
      return values
    self._store(out, load)
    values = self._values.pop(out)
    if isinstance(values, _Failed):
      self._values[out] = values
      return
    self.put(out, values, member_type, where, op)
    if not isinstance(self._values[out], _Failed):  # Immutable arrays: safe to share.
      self._blocks[block_key] = self._values[out]
      while len(self._blocks) > BLOCKS_KEPT:
        self._blocks.popitem(last=False)

  def devices(self) -> dict:
    """`{"backend", "devices": how many this worker sees, "shards": the device counts its
    blocks were sharded over so far (1: one device)}`."""
    return {"backend": jax.default_backend(), "devices": jax.device_count(),
            "shards": sorted(self.shards)}

  def cache_info(self) -> dict:
    """`{"loads": clients loaded so far, "kept": clients kept now}`."""
    return {"loads": self._loads, "kept": len(self._clients)}

  def put_shared(self, out, member: Any) -> None:
    self._store(out, lambda: clients.shared(member))

  def project(self, out, handle, index: int) -> None:
    self._store(out, lambda: self._get(handle)[index])

  def zip(self, out, handles: tuple) -> None:
    self._store(out, lambda: tuple(self._get(h) for h in handles))

  def fetch(self, handle, ts: t.FederatedType) -> Any:
    """The block's members as Python values (`[member, ...]`; the one member if all-equal)."""
    n = self._calls[handle[0]][0]
    payload = _leave(self._get(handle), ts, n)
    return _convert.to_python(payload, ts, Stacked(), n)

  # --- Clients -----------------------------------------------------------------------------------

  def map(self, out, fn_ref, handle) -> None:
    def run():
      n = self._calls[out[0]][0]
      fn = self._fn(fn_ref)
      program = self._program(fn_ref, ("map", n), lambda e, p: e.map_clients(fn, p, False))
      return program(self._get(handle))
    self._store(out, run)

  def eval(self, out, fn_ref, base_key) -> None:
    def run():
      n, positions = self._calls[out[0]]
      fn = self._fn(fn_ref)

      def body(e, base, positions):
        # Client i's key from its position in the whole cohort, not in this block.
        keys = jax.vmap(lambda i: client_key(base, i))(positions)
        return e.map_clients(fn, keys, False)

      return self._program(fn_ref, ("eval", n), body)(base_key, positions)
    self._store(out, run)

  def client_keys(self, out, key) -> None:
    def run():
      n, positions = self._calls[out[0]]
      body = lambda e, key, positions: jax.vmap(lambda i: client_key(key, i))(positions)
      return self._program(None, ("client_keys", n), body)(key, positions)
    self._store(out, run)

  def select(self, out, fn_ref, keys_handle, max_key, server_val) -> None:
    def run():
      n = self._calls[out[0]][0]
      keys = np.asarray(clients.stacked(self._get(keys_handle), n))
      high = int(max_key) - 1
      if keys.size and (keys.min() < 0 or keys.max() > high):
        bad = sorted({int(k) for k in keys.ravel() if not 0 <= k <= high})[:5]
        raise ValueError(f"federated_select: client values {bad} lie outside [0, {high}].")
      fn = self._fn(fn_ref)
      # max_key static, as the constant it is in a vectorized program (its range check).
      program = self._program(fn_ref, ("select", int(max_key), n),
                              lambda e, k, s: e.federated_select(k, int(max_key), s, fn))
      return program(keys, server_val)
    self._store(out, run)

  # --- Partial aggregates ------------------------------------------------------------------------

  def _partial(self, name: str, handle, body, *args, fn_ref=None):
    n = self._calls[handle[0]][0]
    return jax.device_get(self._program(fn_ref, (name, n), body)(self._get(handle), *args))

  def sum(self, handle) -> Any:
    return self._partial("sum", handle, lambda e, p: e.federated_sum(p, None))

  def min(self, handle) -> Any:
    return self._partial("min", handle, lambda e, p: e.federated_min(p, None))

  def max(self, handle) -> Any:
    return self._partial("max", handle, lambda e, p: e.federated_max(p, None))

  def stack(self, handle) -> Any:
    n = self._calls[handle[0]][0]
    return jax.device_get(clients.stacked(self._get(handle), n))

  def weighted_sum(self, handle, weight_handle) -> Any:
    """`(sum_i w_i x_i, sum_i w_i)` over the block, as the vectorized mean computes them."""
    n = self._calls[handle[0]][0]

    def body(e, p, weight):
      w = clients.stacked(weight, n).astype(jnp.float32)
      members = clients.stacked(p, n)
      return (jax.tree_util.tree_map(lambda x: jnp.tensordot(w.astype(x.dtype), x, axes=1),
                                     members), jnp.sum(w))

    return self._partial("weighted_sum", handle, body, self._get(weight_handle))

  def aggregate(self, handle, accumulate_ref, merge_ref, zero) -> Any:
    """The block's clients accumulated from `zero` and merged in client order (not reported)."""
    n = self._calls[handle[0]][0]
    accumulate, merge = self._fn(accumulate_ref), self._fn(merge_ref)

    def body(e, p, zero):
      partials = clients.stacked(e.map_clients(lambda v: accumulate((zero, v)), p, False), n)
      merged, _ = jax.lax.scan(lambda acc, q: (merge((acc, q)), None), zero, partials)
      return merged

    self._function(*merge_ref)  # Kept beside the accumulate function's programs.
    return self._partial(f"aggregate-{merge_ref[0]}", handle, body, zero, fn_ref=accumulate_ref)

  def sum_and_extremes(self, handle) -> Any:
    """Per leaf: (exact sum, smallest, largest) over the block (secure sums)."""
    n = self._calls[handle[0]][0]

    def body(e, p):
      return jax.tree_util.tree_map(
          lambda x: (jnp.sum(x, axis=0, dtype=x.dtype), jnp.zeros((), x.dtype),
                     jnp.zeros((), x.dtype)) if x.size == 0
          else client_sum_and_extremes(x, e._looped), clients.stacked(p, n))

    return self._partial("sum_and_extremes", handle, body)

  def modular_sum(self, handle, modulus) -> Any:
    return self._partial(f"modular_sum-{modulus!r}", handle,
                         lambda e, p: e.federated_secure_modular_sum(p, None, modulus))
