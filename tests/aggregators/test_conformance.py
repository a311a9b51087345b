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
    if isinstance(ts, fx.TensorType) and ts.dtype.kind in "iu":
      return rng.integers(-20, 21, size=ts.shape).astype(ts.dtype)
    if isinstance(ts, fx.TensorType):
      if np.dtype(ts.dtype).kind in "iu":
        return rng.integers(-100, 100, size=ts.shape).astype(ts.dtype)
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
    ("median", fx.aggregators.MedianFactory, STRUCT, False),
    ("trimmed-mean", lambda: fx.aggregators.TrimmedMeanFactory(0.2), STRUCT, False),
    ("krum", lambda: fx.aggregators.KrumFactory(1, num_selected=2), STRUCT, False),
    ("geometric-median", fx.aggregators.GeometricMedianFactory, STRUCT, False),
    ("geometric-median-weighted", fx.aggregators.GeometricMedianFactory, STRUCT, True),
]


def _adaptive():
  return fx.aggregators.PrivateQuantileEstimationProcess.no_noise(1.0, 0.5, 0.2)


# Clipping and zeroing, fixed and adaptive norms (the norm process's state is carried), each
# weighted (over MeanFactory) and unweighted (over UnweightedMeanFactory).
for _name, _make in (("clipping", fx.aggregators.clipping_factory),
                     ("zeroing", fx.aggregators.zeroing_factory)):
  for _norm_name, _norm in (("fixed", lambda: 1.0), ("adaptive", _adaptive)):
    CASES.append((f"{_name}-{_norm_name}",
                  lambda m=_make, n=_norm: m(n(), fx.aggregators.UnweightedMeanFactory()),
                  STRUCT, False))
    CASES.append((f"{_name}-{_norm_name}-weighted",
                  lambda m=_make, n=_norm: m(n(), fx.aggregators.MeanFactory()), STRUCT, True))


def _largest(value):
  return {"largest": fx.federated_max(value.a)}


def _total_weight(value, weight):
  return {"total_weight": fx.federated_sum(weight)}


def _result_b(result):
  return {"result_b": result.b}


CASES += [
    ("add-measurements", lambda: fx.aggregators.add_measurements(
        fx.aggregators.UnweightedMeanFactory(), client_measurement_fn=_largest,
        server_measurement_fn=_result_b), STRUCT, False),
    ("add-measurements-weighted", lambda: fx.aggregators.add_measurements(
        fx.aggregators.MeanFactory(), client_measurement_fn=_total_weight), STRUCT, True),
    ("reservoir-sampling", lambda: fx.aggregators.UnweightedReservoirSamplingFactory(3),
     STRUCT, False),
    ("reservoir-sampling-metadata", lambda: fx.aggregators.UnweightedReservoirSamplingFactory(
        8, return_sampling_metadata=True), STRUCT, False),
]

CASES += [
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


# Central differential privacy (unweighted only), and clipping at a noised quantile.
CASES += [
    ("dp-gaussian-fixed", lambda: A.DifferentiallyPrivateFactory.gaussian_fixed(1.0, 5, 1.0,
                                                                                seed=0),
     STRUCT, False),
    ("dp-gaussian-adaptive", lambda: A.DifferentiallyPrivateFactory.gaussian_adaptive(
        1.0, 50, seed=0), STRUCT, False),
    ("dp-aggregator", lambda: fx.learning.dp_aggregator(1.0, 50, seed=0), STRUCT, False),
    # Distributed DP as recommended (Skellam, the adaptive clip retuning the state every round).
    ("ddp-secure-aggregator", lambda: fx.learning.ddp_secure_aggregator(1.0, 50, seed=0),
     STRUCT, False),
    ("dp-tree-aggregation", lambda: A.DifferentiallyPrivateFactory.tree_aggregation(
        1.0, 5, 1.0, noise_seed=0, restart_frequency=2), STRUCT, False),
    ("local-dp", lambda: A.LocalDpFactory(1.0, 1.0, seed=0), STRUCT, False),
    ("clipping-noised-quantile", lambda: A.clipping_factory(
        A.PrivateQuantileEstimationProcess(A.QuantileEstimatorQuery(1.0, 0.5, 0.2, 0.25, 5,
                                                                    True, seed=0)),
        A.UnweightedMeanFactory()), STRUCT, False),
]


# The recommended compositions (fx.learning), weighted and unweighted.
for _kind in ("robust", "compression", "secure"):
  for _weighted in (True, False):
    CASES.append((f"{_kind}-aggregator{'-weighted' if _weighted else ''}",
                  lambda k=_kind, w=_weighted: getattr(fx.learning, f"{k}_aggregator")(
                      weighted=w), STRUCT, _weighted))


@pytest.mark.parametrize("make, value_type, weighted", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_factory_conforms(make, value_type, weighted):
  # Two rounds: the second must reuse the first's program and keep the state's structure.
  rounds = [_values(value_type, 5, seed) for seed in range(2)]
  weights = [list(np.arange(1.0, 6.0, dtype=np.float32) * (r + 1)) for r in range(2)]
  conformance.check(make(), value_type, rounds, weights if weighted else None)

