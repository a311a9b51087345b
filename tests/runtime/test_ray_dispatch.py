"""What the Ray runtime's driver spends per round: client functions pickled once (not once a
round), and a round's cheap worker operations sent together with the next one that computes
(a FedAvg round in a handful of actor calls, not one per operation)."""

import collections

import numpy as np

import federax as fx
from federax.core import types as t
from federax.core.computations import FederatedCall
from federax.learning import algorithms, optimizers
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
  for w, e in zip(process.get_model_weights(result).trainable,
                  process.get_model_weights(expected).trainable):
    np.testing.assert_allclose(w, e, rtol=1e-5, atol=1e-6)
  # One call per operation sent 17 (begin, put, 2 put_shared, client_keys, 3 zip, 2 map,
  # 4 project, 3 sum, end); the cheap ones now travel with the next map, put or sum.
  assert sum(calls.values()) <= 8, calls
  assert calls["begin"] == 0 and calls["project"] == calls["zip"] == calls["put_shared"] == 0
