"""What the Ray runtime's driver spends per round: client functions pickled once (not once a
round); a round's worker operations sent together with the next one whose result the driver
reads (a FedAvg round in 4 actor calls, not 17); a fixed cohort's schedule reused."""

import collections

import numpy as np

import federax as fx
from federax.core import types as t
from federax.core.computations import FederatedCall
from federax.learning import algorithms, optimizers
from federax.runtime.distributed import execution as ex
from federax.runtime.distributed.execution import FunctionRefs

from tests.runtime.test_ray_learning import clients, model


def test_a_federated_computation_is_pickled_once_per_parameter_type():
  @fx.federated_computation(np.float32)
  def double(x):
    return x

  dumped = []
  refs = FunctionRefs(lambda fn: dumped.append(fn) or b"blob-%d" % len(dumped))
  f32, i32 = t.TensorType(np.float32), t.TensorType(np.int32)
  # A fresh FederatedCall each round (as federated_map makes), the same computation and type.
  first, again = refs.pickled(FederatedCall(double, f32)), refs.pickled(FederatedCall(double, f32))
  assert first == again and len(dumped) == 1
  assert refs.pickled(FederatedCall(double, i32)) != first and len(dumped) == 2


class _Counted:
  """A worker actor whose calls are counted by method (`run`: several operations at once)."""

  def __init__(self, actor, calls: collections.Counter):
    self._actor, self._calls = actor, calls

  def __getattr__(self, method):
    remote = getattr(self._actor, method).remote
    calls = self._calls

    class Method:
      @staticmethod
      def remote(*args):
        calls[method] += 1
        return remote(*args)
    return Method


def test_a_fed_avg_round_takes_a_few_actor_calls(ray_runtimes, monkeypatch):
  runtime = ray_runtimes[1]
  process = algorithms.build_weighted_fed_avg(model(), optimizers.build_sgdm(0.3),
                                              optimizers.build_sgdm(0.7))
  data = clients()
  state = process.initialize()
  with fx.runtime.vectorized():
    expected = process.next(state, data).state
  calls = collections.Counter()
  proxies = [_Counted(a, calls) for a in runtime._pool.take(1, runtime.timeout_s)]
  monkeypatch.setattr(runtime._pool, "take", lambda n, timeout_s: proxies[:n])
  with runtime:
    result = process.next(state, data).state
    first = sum(calls.values())
    calls.clear()
    process.next(state, data)  # Again: the client functions are on the worker.
  for w, e in zip(process.get_model_weights(result).trainable,
                  process.get_model_weights(expected).trainable):
    np.testing.assert_allclose(w, e, rtol=1e-5, atol=1e-6)
  # One call per operation sent 17 (begin, put, 2 put_shared, client_keys, 3 zip, 2 map,
  # 4 project, 3 sum, end); the stored ones now travel with the next aggregation (the first
  # round: with a map that carries its function's pickle), and `end` is not waited for.
  assert first <= 6 and sum(calls.values()) <= 4, (first, calls)
  assert not {"begin", "put", "put_shared", "client_keys", "zip", "map", "project"} & set(calls)


def _load(client_id):
  return [client_id]


def test_the_same_cohort_again_is_scheduled_as_from_scratch(ray_runtimes):
  """A fixed cohort's schedule is reused (not recomputed each round): the same blocks and the
  same cache of which worker holds which client as scheduling it from scratch."""
  runtime = ray_runtimes[2]
  pool, workers = runtime._pool, runtime._pool.take(2, runtime.timeout_s)
  sizes = [5, 1, 3, 3, 2, 8, 1, 4]

  def cohort(ids=tuple(range(8))):
    return ex.IdClients(fx.runtime.ClientIds(list(ids), _load, sizes), None, "", "")

  rounds = [runtime._schedule(cohort(), workers) for _ in range(4)]
  assert pool.fixed_schedule is not None and pool.fixed_schedule.blocks is rounds[-1]
  cached = list(pool.cached.items())
  pool.fixed_schedule = None  # From scratch.
  again = runtime._schedule(cohort(), workers)
  assert [b.tolist() for b in again] == [b.tolist() for b in rounds[-1]]
  assert list(pool.cached.items()) == cached
  runtime._schedule(cohort(range(8, 16)), workers)  # Another cohort: scheduled anew.
  assert pool.fixed_schedule is None or pool.fixed_schedule.client_ids == list(range(8, 16))
