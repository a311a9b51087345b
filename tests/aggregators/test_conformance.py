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
A = fx.aggregators


def _values(value_type, n, seed):
  rng = np.random.default_rng(seed)
  value_type = fx.to_type(value_type)

  def draw(ts):
    if isinstance(ts, fx.TensorType):
      if np.dtype(ts.dtype).kind in "iu":
        return rng.integers(-100, 100, size=ts.shape).astype(ts.dtype)
      return rng.normal(size=ts.shape).astype(ts.dtype)
    return collections.OrderedDict((name, draw(e)) for name, e in ts.items())

  return [draw(value_type) for _ in range(n)]


CASES = [
    ("sum", fx.aggregators.SumFactory, STRUCT, False),
    ("mean", fx.aggregators.MeanFactory, STRUCT, False),
    ("mean-weighted", fx.aggregators.MeanFactory, STRUCT, True),
    ("unweighted-mean", fx.aggregators.UnweightedMeanFactory, STRUCT, False),
    ("encoded-quantize", lambda: A.EncodedSumFactory.quantize_above_threshold(8, 2), STRUCT,
     False),
    ("hadamard", lambda: A.HadamardTransformFactory(num_repeats=2), STRUCT, False),
    ("dft", A.DiscreteFourierTransformFactory, STRUCT, False),
    ("hadamard-of-ints", A.HadamardTransformFactory, INT_STRUCT, False),
    ("concat-sum", lambda: A.concat_factory(A.SumFactory()), STRUCT, False),
    ("concat-mean-weighted", lambda: A.concat_factory(A.MeanFactory()), STRUCT, True),
    ("deterministic-discretization", lambda: A.DeterministicDiscretizationFactory(
        A.SumFactory(), 0.01, A.UnweightedMeanFactory()), STRUCT, False),
    ("stochastic-discretization", lambda: A.StochasticDiscretizationFactory(
        A.SumFactory(), 0.01, A.UnweightedMeanFactory(), beta=0.5), STRUCT, False),
    ("modular-clipping", lambda: A.ModularClippingSumFactory(-50, 50), INT_STRUCT, False),
    # Distributed DP's nesting, without the noise: concat, rotate, round, wrap (TFF's order).
    ("concat-rotate-round-wrap", lambda: A.concat_factory(A.HadamardTransformFactory(
        A.StochasticDiscretizationFactory(A.ModularClippingSumFactory(
            -2**15, 2**15, A.ModularClippingSumFactory(0, 2**16)), step_size=0.01, beta=0.1,
            prior_norm_bound=10.0))), STRUCT, False),
    ("compressed-mean", lambda: A.MeanFactory(
        A.EncodedSumFactory.quantize_above_threshold(4, 0)), STRUCT, True),
]


@pytest.mark.parametrize("make, value_type, weighted", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_factory_conforms(make, value_type, weighted):
  rounds = [_values(value_type, 5, seed) for seed in range(3)]
  weights = [list(np.arange(1.0, 6.0, dtype=np.float32) * (r + 1)) for r in range(3)]
  conformance.check(make(), value_type, rounds, weights if weighted else None)
