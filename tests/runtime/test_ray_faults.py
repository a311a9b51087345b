"""Faults on the Ray runtime: a worker SIGKILLed mid-call is retried on another worker (the
uninterrupted call's result, nothing counted twice) or, under `min_clients_per_round`, its
clients are dropped and counted in `last_call`; a call past `timeout_s` is a TimeoutError; a
worker past `straggler_timeout_s` is killed and replaced, its block retried or dropped alike."""

import functools
import os
import re
import signal
import time

import jax
import numpy as np
import pytest

import federax as fx
from federax.runtime.distributed.data import schedule

VALUES = [1.5, 2.0, 3.25, 4.0, 5.5]  # 5 clients on 2 workers: blocks of 3 and 2.
INTS = [1, 2, 3, 4, 5]


def _computation(kill):
  """sum(x^2), mean(x^2) and sum(k) of float and int client values; `kill()` runs in the body
  between the client work and the aggregations (that is, mid-call)."""
  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS),
                            fx.FederatedType(np.int32, fx.CLIENTS))
  def comp(x, k):
    y = fx.federated_map(fx.computation(lambda v: v * v, np.float32), x)
    kill()
    return fx.federated_sum(y), fx.federated_mean(y), fx.federated_sum(k)
  return comp


def _killer(runtime, worker: int):
  armed = []

  def kill():
    if armed:  # Once, and not while the computation is traced.
      os.kill(armed.pop(), signal.SIGKILL)
  return kill, lambda: armed.append(runtime.worker_pids()[worker])


def test_a_killed_worker_is_retried_with_the_same_result(ray_runtimes):
  runtime = fx.runtime.ray(num_workers=2, max_retries=1, timeout_s=60)
  kill, arm = _killer(runtime, 1)
  comp = _computation(kill)
  with runtime:
    clean = comp(VALUES, INTS)
    arm()
    faulted = comp(VALUES, INTS)
  assert runtime.last_call == {"clients": 5, "clients_dropped": 0, "blocks_retried": 1}
  for a, b in zip(clean, faulted):
    np.testing.assert_array_equal(a, b)  # Bit for bit: the block was replayed once.
  squares = np.square(np.asarray(VALUES, np.float64))
  np.testing.assert_allclose(faulted[0], squares.sum(), rtol=1e-6)  # Counted once, not twice.
  np.testing.assert_allclose(faulted[1], squares.mean(), rtol=1e-6)
  assert int(faulted[2]) == 15


def test_under_the_drop_policy_a_dead_workers_clients_are_dropped(ray_runtimes):
  runtime = fx.runtime.ray(num_workers=2, max_retries=0, min_clients_per_round=3, timeout_s=60)
  kill, arm = _killer(runtime, 1)
  comp = _computation(kill)
  with runtime:
    arm()
    total, mean, count = comp(VALUES, INTS)
  assert runtime.last_call["clients_dropped"] == 2
  squares = np.square(np.asarray(VALUES[:3], np.float64))  # Block 0's clients only.
  np.testing.assert_allclose(total, squares.sum(), rtol=1e-6)
  np.testing.assert_allclose(mean, squares.mean(), rtol=1e-6)
  assert int(count) == 6
  # Too few clients left: a clear error, not a silent round.
  strict = fx.runtime.ray(num_workers=2, max_retries=0, min_clients_per_round=4, timeout_s=60)
  kill, arm = _killer(strict, 1)
  comp = _computation(kill)
  with strict, pytest.raises(RuntimeError, match=r"(?s)a Ray worker died.*would leave 3, fewer "
                             r"than min_clients_per_round=4"):
    arm()
    comp(VALUES, INTS)


def test_a_call_past_timeout_s_is_a_timeout_error(ray_runtimes):
  def slow(v):
    def sleep(v):
      time.sleep(3.0)
      return v
    return jax.pure_callback(sleep, jax.ShapeDtypeStruct((), np.float32), v,
                             vmap_method="broadcast_all")

  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
  def comp(x):
    return fx.federated_sum(fx.federated_map(fx.computation(slow, np.float32), x))

  runtime = fx.runtime.ray(num_workers=2, timeout_s=60)  # Waits for replaced workers.
  runtime.timeout_s = 1.0
  start = time.monotonic()
  with runtime, pytest.raises(TimeoutError, match=r"no result within timeout_s=1 s"):
    comp(VALUES)
  assert time.monotonic() - start < 2.5


@functools.cache  # One computation: the workers compile its client work once.
def _squares():
  """sum(x^2) and mean(x^2) of float client values."""
  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
  def squares(x):
    y = fx.federated_map(fx.computation(lambda v: v * v, np.float32), x)
    return fx.federated_sum(y), fx.federated_mean(y)
  return squares


def _load(client_id, *, marker):
  """Client `client_id`'s value (VALUES: exact squares and sums in float32); in the process
  whose pid `marker` holds, loading takes 30 s (a straggler)."""
  if os.path.exists(marker) and open(marker).read() == str(os.getpid()):
    time.sleep(30.0)
  return np.float32(VALUES[client_id % len(VALUES)])


def _straggling(ray_runtimes, runtime, tmp_path):
  """`(load_fn, pid)`: worker 1 of `runtime` (pid `pid`) straggles in `load_fn` from now on.
  The workers compile `_squares` first, without a limit, so that only the load is slow."""
  marker = tmp_path / "straggler_pid"
  load = functools.partial(_load, marker=str(marker))
  with ray_runtimes[2]:  # The same workers (one pool), no straggler limit.
    _squares()(fx.runtime.ClientIds([0, 1, 2, 3], load))
  pid = runtime.worker_pids()[1]
  marker.write_text(str(pid))
  return load, pid


def _gone(pid: int, wait_s: float = 10.0) -> bool:
  """Whether process `pid` has exited (or is a zombie) within `wait_s`."""
  end = time.monotonic() + wait_s
  while time.monotonic() < end:
    try:
      with open(f"/proc/{pid}/stat") as f:
        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
          return True
    except FileNotFoundError:
      return True
    time.sleep(0.1)
  return False


def test_a_straggler_is_killed_replaced_and_its_block_retried(ray_runtimes, tmp_path):
  runtime = fx.runtime.ray(num_workers=2, max_retries=1, straggler_timeout_s=2.0, timeout_s=60)
  load, pid = _straggling(ray_runtimes, runtime, tmp_path)
  cohort = fx.runtime.ClientIds([4, 5, 6, 7], load)  # New ids: loaded (slowly) in this call.
  start = time.monotonic()
  with runtime:
    total, mean = _squares()(cohort)
  elapsed = time.monotonic() - start
  assert elapsed < 15.0, elapsed  # Not the straggler's 30 s.
  assert runtime.last_call == {"clients": 4, "clients_dropped": 0, "blocks_retried": 1}
  with fx.runtime.vectorized():  # Loads in this process: no straggler.
    expected = _squares()(cohort)
  np.testing.assert_array_equal(total, expected[0])  # Exact sums: equal whatever the blocks.
  np.testing.assert_array_equal(mean, expected[1])
  squares = np.square([VALUES[i % len(VALUES)] for i in range(4, 8)])
  assert float(total) == squares.sum() and float(mean) == squares.mean()
  assert _gone(pid)  # Killed, so it cannot deliver late ...
  after = runtime.worker_pids()
  assert len(after) == 2 and pid not in after  # ... and replaced.


def test_under_the_drop_policy_a_stragglers_clients_are_dropped(ray_runtimes, tmp_path):
  runtime = fx.runtime.ray(num_workers=2, max_retries=0, min_clients_per_round=2,
                           straggler_timeout_s=2.0, timeout_s=60)
  load, pid = _straggling(ray_runtimes, runtime, tmp_path)
  start = time.monotonic()
  with runtime:
    total, mean = _squares()(fx.runtime.ClientIds([4, 5, 6, 7], load))
  assert time.monotonic() - start < 15.0
  assert runtime.last_call == {"clients": 4, "clients_dropped": 2, "blocks_retried": 0}
  kept = schedule([1] * 4, [-1] * 4, 2)[0]  # Block 0's cohort positions, on worker 0.
  squares = np.square([VALUES[(4 + p) % len(VALUES)] for p in kept])
  assert float(total) == squares.sum() and float(mean) == squares.mean()
  assert _gone(pid)
  # Neither retries nor the drop policy: a clear error, not a hang.
  strict = fx.runtime.ray(num_workers=2, max_retries=0, straggler_timeout_s=2.0, timeout_s=60)
  (tmp_path / "strict").mkdir()
  load, pid = _straggling(ray_runtimes, strict, tmp_path / "strict")
  with strict, pytest.raises(RuntimeError, match=r"gave no result within straggler_timeout_s=2 "
                             r"s; it was killed as a straggler\. Its 2 clients were retried 0"):
    _squares()(fx.runtime.ClientIds([4, 5, 6, 7], load))
  assert _gone(pid)


def test_bad_fault_options(ray_cluster):
  with pytest.raises(ValueError, match="max_retries must be an int >= 0"):
    fx.runtime.ray(num_workers=1, max_retries=-1)
  with pytest.raises(ValueError, match="min_clients_per_round must be an int >= 0"):
    fx.runtime.ray(num_workers=1, min_clients_per_round=1.5)
  for bad in (0, -1.0, float("nan"), "2", True):
    with pytest.raises(ValueError, match=r"(?s)straggler_timeout_s must be a number of seconds "
                       r"> 0, or None.*" + re.escape(repr(bad))):
      fx.runtime.ray(num_workers=1, straggler_timeout_s=bad)
