"""Device sharding inside a Ray worker: a worker that sees several devices (tests/conftest.py
gives every process, the Ray workers included, four CPU devices; on a cluster, the GPUs Ray gives
a worker) shards its block's client axis over them, and results stay the vectorized runtime's."""

import numpy as np
import pytest

import federax as fx
import test_ray_learning as learning
from federax.learning import algorithms, optimizers

DEVICES = 4  # tests/conftest.py: --xla_force_host_platform_device_count=4, inherited by Ray.


def test_workers_shard_blocks_that_divide_over_their_devices(ray_runtimes):
  rng = np.random.default_rng(3)
  n = 2 * DEVICES  # Two workers: a block of 4 clients each, one client per device.
  x = [rng.normal(size=(3,)).astype(np.float32) for _ in range(n)]
  counts = [rng.integers(0, 2**10, size=(3,)).astype(np.int32) for _ in range(n)]
  weight = [np.float32(w) for w in rng.uniform(1, 5, n)]

  @fx.computation((np.float32, [3]), np.float32)
  def scale(v, s):
    return v * s

  @fx.federated_computation(fx.FederatedType((np.float32, [3]), fx.CLIENTS),
                            fx.FederatedType((np.int32, [3]), fx.CLIENTS),
                            fx.FederatedType(np.float32, fx.CLIENTS),
                            fx.FederatedType(np.float32, fx.SERVER))
  def round_(x, counts, weight, s):
    scaled = fx.federated_map(scale, (x, fx.federated_broadcast(s)))
    return (fx.federated_mean(scaled, weight), fx.federated_max(scaled),
            fx.federated_secure_sum_bitwidth(counts, 10))

  with fx.runtime.vectorized():
    expected = round_(x, counts, weight, np.float32(2.0))
  runtime = ray_runtimes[2]
  with runtime:
    mean, largest, total = round_(x, counts, weight, np.float32(2.0))
  assert all(d["devices"] == DEVICES and DEVICES in d["shards"]
             for d in runtime.worker_devices()), runtime.worker_devices()
  exact_mean = np.sum([2 * v * w for v, w in zip(x, weight)], axis=0) / np.sum(weight)
  np.testing.assert_allclose(mean, exact_mean, rtol=1e-5)
  np.testing.assert_allclose(mean, expected[0], rtol=1e-5)
  np.testing.assert_array_equal(largest, expected[1])
  np.testing.assert_array_equal(total, expected[2])
  assert total.tolist() == np.sum(counts, axis=0).tolist()


def test_fed_avg_on_sharded_worker_blocks_equals_vectorized(ray_runtimes):
  m, data = learning.model(), learning.clients((7, 12, 3, 5, 9, 4, 6, 8))
  process = algorithms.build_weighted_fed_avg(m, optimizers.build_sgdm(0.3))
  with fx.runtime.vectorized(shard=False):
    expected, _ = learning.run_rounds(process, data)
  runtime = ray_runtimes[2]  # 8 clients: 4 a worker, sharded over its 4 devices.
  with runtime:
    weights, _ = learning.run_rounds(process, data)
  for w, e in zip(weights, expected):
    np.testing.assert_allclose(w, e, rtol=1e-5, atol=1e-6)


def test_shard_false_keeps_a_block_on_one_device(ray_cluster):
  # Other options: another pool of workers, which needs no CPU (the cluster's are taken).
  runtime = fx.runtime.ray(num_workers=1, shard=False, resources_per_worker={"num_cpus": 0})

  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
  def total(x):
    return fx.federated_sum(x)

  with runtime:
    assert float(total([np.float32(i) for i in range(DEVICES)])) == pytest.approx(6.0)
  assert runtime.worker_devices()[0]["shards"] == [1]
