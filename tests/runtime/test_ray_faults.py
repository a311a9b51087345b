"""Faults on the Ray runtime: a worker SIGKILLed mid-call is retried on another worker (the
uninterrupted call's result, nothing counted twice) or, under `min_clients_per_round`, its
clients are dropped and counted in `last_call`; a call past `timeout_s` is a TimeoutError."""

import os
import signal
import time

import jax
import numpy as np
import pytest

import federax as fx

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


def test_bad_fault_options(ray_cluster):
  with pytest.raises(ValueError, match="max_retries must be an int >= 0"):
    fx.runtime.ray(num_workers=1, max_retries=-1)
  with pytest.raises(ValueError, match="min_clients_per_round must be an int >= 0"):
    fx.runtime.ray(num_workers=1, min_clients_per_round=1.5)
