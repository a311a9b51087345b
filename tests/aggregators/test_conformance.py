"""The conformance suite (`conformance.check`) over every factory and composition.

Each case: (id, a factory maker, the value type, weighted or not). Values are drawn per round
so a state carried wrongly shows up; the numerical checks live in each factory's own tests.
"""

import collections

import numpy as np
import pytest

import federax as fx
from tests.aggregators import conformance

STRUCT = collections.OrderedDict(a=(np.float32, [3]), b=(np.float32, []))
INT_STRUCT = collections.OrderedDict(a=(np.int32, [3]), b=(np.int32, []))


def _values(value_type, n, seed):
  rng = np.random.default_rng(seed)
  value_type = fx.to_type(value_type)

  def draw(ts):
    if isinstance(ts, fx.TensorType) and ts.dtype.kind in "iu":
      return rng.integers(-20, 21, size=ts.shape).astype(ts.dtype)
    if isinstance(ts, fx.TensorType):
      return rng.normal(size=ts.shape).astype(ts.dtype)
    return collections.OrderedDict((name, draw(e)) for name, e in ts.items())

  return [draw(value_type) for _ in range(n)]


def _threshold_process(initial):
  """An adaptive threshold for SecureSumFactory: `t <- (t + mean of the fed values) / 2`."""
  initialize = fx.federated_computation(
      lambda: fx.federated_value(np.float32(initial), fx.SERVER))
  step = fx.computation(np.float32, np.float32)(lambda t, mean: 0.5 * (t + mean))
  next_fn = fx.federated_computation(
      lambda state, value: fx.federated_map(step, (state, fx.federated_mean(value))),
      fx.FederatedType(np.float32, fx.SERVER), fx.FederatedType(np.float32, fx.CLIENTS))
  report = fx.federated_computation(lambda state: state, fx.FederatedType(np.float32, fx.SERVER))
  return fx.templates.EstimationProcess(initialize, next_fn, report)


CASES = [
    ("sum", fx.aggregators.SumFactory, STRUCT, False),
    ("mean", fx.aggregators.MeanFactory, STRUCT, False),
    ("mean-weighted", fx.aggregators.MeanFactory, STRUCT, True),
    ("unweighted-mean", fx.aggregators.UnweightedMeanFactory, STRUCT, False),
    ("secure-sum-float", lambda: fx.aggregators.SecureSumFactory(1.0), STRUCT, False),
    ("secure-sum-int", lambda: fx.aggregators.SecureSumFactory(9, -4), INT_STRUCT, False),
    ("secure-sum-adaptive", lambda: fx.aggregators.SecureSumFactory(
        _threshold_process(1.0), _threshold_process(-1.0)), STRUCT, False),
    ("secure-modular-sum", lambda: fx.aggregators.SecureModularSumFactory(11), INT_STRUCT, False),
    ("secure-modular-sum-symmetric",
     lambda: fx.aggregators.SecureModularSumFactory(11, symmetric_range=True), INT_STRUCT, False),
    ("mean-of-secure-sums", lambda: fx.aggregators.MeanFactory(
        fx.aggregators.SecureSumFactory(2.0), fx.aggregators.SecureSumFactory(10.0)),
     STRUCT, True),
]


@pytest.mark.parametrize("make, value_type, weighted", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_factory_conforms(make, value_type, weighted):
  rounds = [_values(value_type, 5, seed) for seed in range(3)]
  weights = [list(np.arange(1.0, 6.0, dtype=np.float32) * (r + 1)) for r in range(3)]
  conformance.check(make(), value_type, rounds, weights if weighted else None)
