"""Deterministic and stochastic discretization and modular clipping against NumPy (and numbers
TFF 0.87 printed for the same inputs)."""

import collections
import math
import re
import warnings

import jax
import numpy as np
import pytest

import federax as fx
from federax import aggregators
from federax.aggregators.modular_clipping import estimate_wrapped_gaussian_stddev
from federax.aggregators.stochastic_discretization import inflated_l2_norm_bound

SHAPES = collections.OrderedDict(a=(4,), b=(2, 3), c=())
VALUE = fx.to_type(collections.OrderedDict((k, (np.float32, s)) for k, s in SHAPES.items()))


def client_values(n, seed=0, huge=None):
  rng = np.random.default_rng(seed)
  values = [collections.OrderedDict((k, rng.normal(size=s).astype(np.float32))
                                    for k, s in SHAPES.items()) for _ in range(n)]
  if huge is not None:
    values[huge] = collections.OrderedDict((k, v * np.float32(1e4)) for k, v in
                                           values[huge].items())
  return values


def stack(values, name):
  return np.stack([np.asarray(v[name], np.float32) for v in values])


class _SumReportingSum(aggregators.UnweightedAggregationFactory):
  """A sum whose measurements are the summed value too: what the inner factory received."""

  def create(self, value_type):
    @fx.federated_computation
    def initialize():
      return fx.federated_value((), fx.SERVER)

    @fx.federated_computation(initialize.type_signature.result,
                              fx.FederatedType(value_type, fx.CLIENTS))
    def next_fn(state, value):
      total = fx.federated_sum(value)
      return fx.templates.MeasuredProcessOutput(state, total, total)

    return aggregators.AggregationProcess(initialize, next_fn)


# --- DeterministicDiscretizationFactory ----------------------------------------------------------


def test_deterministic_rounds_to_the_nearest_level(runtime):
  step = 0.1
  factory = aggregators.DeterministicDiscretizationFactory(
      aggregators.SumFactory(), step, distortion_aggregation_factory=aggregators.MeanFactory())
  process = factory.create(VALUE)
  assert str(process.next.type_signature) == (  # TFF's.
      "(<state=<step_size=float32,inner_agg_process=<>>@SERVER,value={<a=float32[4],"
      "b=float32[2,3],c=float32>}@CLIENTS> -> <state=<step_size=float32,inner_agg_process=<>>"
      "@SERVER,result=<a=float32[4],b=float32[2,3],c=float32>@SERVER,measurements=<"
      "deterministic_discretization=<>,distortion=float32>@SERVER>)")
  state = process.initialize()
  for round_num in range(2):
    values = client_values(4, seed=round_num, huge=3)
    output = process.next(state, values)
    state = output.state
    assert float(state["step_size"]) == np.float32(step)
    errors = []
    for k in SHAPES:
      levels = np.round(stack(values, k) / np.float32(step))  # Half to even, as tf.round.
      np.testing.assert_allclose(output.result[k], levels.sum(0) * np.float32(step), rtol=1e-6)
      # TFF's distortion: (reconstructed - input)**2. The huge client's errors are float32
      # noise-limited (XLA fuses `levels * step - x` into one exact FMA; TF rounds the product
      # first: 0.2% apart here); wrong averaging would be off by far more.
      reconstructed = levels * np.float64(np.float32(step))
      errors.append(((reconstructed - stack(values, k)) ** 2).reshape(4, -1))
    per_client = np.concatenate(errors, axis=1).mean(1)
    np.testing.assert_allclose(output.measurements["distortion"], per_client.mean(), rtol=5e-3)


def test_deterministic_matches_tffs_numbers(runtime):
  # TFF 0.87, these inputs, step 0.5, UnweightedMeanFactory for the distortion.
  factory = aggregators.DeterministicDiscretizationFactory(
      aggregators.SumFactory(), 0.5, aggregators.UnweightedMeanFactory())
  process = factory.create(fx.TensorType(np.float32, [3]))
  output = process.next(process.initialize(), [[0.2, 0.8, -1.3], [0.3, 1.0, 2.0]])
  np.testing.assert_array_equal(output.result, [0.5, 2.0, 0.5])
  np.testing.assert_allclose(output.measurements["distortion"], 0.02666667, rtol=1e-5)


def test_step_size_is_read_from_the_state(runtime):
  process = aggregators.DeterministicDiscretizationFactory(aggregators.SumFactory(), 1.0).create(
      fx.TensorType(np.float32, [2]))
  state = process.initialize()
  state["step_size"] = np.float32(0.25)  # An outer aggregator may change it.
  output = process.next(state, [[0.3, 0.9], [0.125, 0.375]])  # 0.5 and 1.5 round to even.
  np.testing.assert_array_equal(output.result, [0.25, 1.5])
  assert float(output.state["step_size"]) == 0.25


# --- StochasticDiscretizationFactory -------------------------------------------------------------


def test_stochastic_rounds_to_a_neighbouring_level(runtime):
  step = 0.1
  factory = aggregators.StochasticDiscretizationFactory(_SumReportingSum(), step)
  process = factory.create(VALUE)
  assert str(process.state_type) == (
      "<step_size=float32,prior_norm_bound=float32,inner_agg_process=<>,key=uint32[2]>@SERVER")
  state = process.initialize()
  for round_num in range(2):
    values = client_values(3, seed=round_num, huge=0)
    output = process.next(state, values)
    assert not np.array_equal(output.state["key"], state["key"])
    state = output.state
    for k in SHAPES:
      scaled = stack(values, k) / np.float32(step)
      levels = np.asarray(output.measurements["stochastic_discretization"][k])
      assert levels.dtype == np.int32
      # Each client's level is floor or ceil of its scaled value, so the sum lies between.
      assert np.all(levels >= np.floor(scaled).sum(0)) and np.all(levels <= np.ceil(scaled).sum(0))
      np.testing.assert_allclose(output.result[k], levels * np.float32(step), rtol=1e-6)


def test_stochastic_rounding_is_unbiased():
  # 4000 clients, one value; elements 0.3 of a step above a level: nearest rounding would be
  # off by 0.3 steps, the stochastic mean within 5 standard errors (step / (2 sqrt(n))).
  n, step = 4000, 0.5
  x = np.array([0.15, 0.65, -0.35, 1.0, 0.4999], np.float32)
  process = aggregators.StochasticDiscretizationFactory(aggregators.SumFactory(), step).create(
      fx.TensorType(np.float32, [5]))
  with fx.runtime.vectorized():
    mean = np.asarray(process.next(process.initialize(), [x] * n).result, np.float64) / n
  np.testing.assert_array_less(np.abs(mean - x), 5 * step / (2 * math.sqrt(n)))
  assert np.abs(mean - x).max() < 0.2 * np.abs(np.round(x / step) * step - x).max()


def test_conditional_rounding_bounds_the_norm(runtime):
  # beta > 0: each client's levels have norm <= inflated_l2_norm_bound(||x||, step, beta, d) /
  # step, recomputed here in NumPy; one client at a time, its levels are what the inner got.
  step, beta, d = 0.3, 0.5, 64
  rng = np.random.default_rng(1)
  process = aggregators.StochasticDiscretizationFactory(
      _SumReportingSum(), step, beta=beta).create(fx.TensorType(np.float32, [d]))
  state = process.initialize()
  for _ in range(3):
    x = rng.normal(size=d).astype(np.float32)
    output = process.next(state, [x])
    state = output.state
    levels = np.asarray(output.measurements["stochastic_discretization"], np.float64)
    norm = np.linalg.norm(x.astype(np.float64))
    beta_term = math.sqrt(2 * math.log(1 / beta))
    bound = min(norm + step * math.sqrt(d), math.sqrt(
        norm**2 + step**2 * d / 4 + beta_term * step * (norm + step * math.sqrt(d) / 2)))
    assert np.linalg.norm(levels) <= bound / step * (1 + 1e-6)
    assert np.all(np.abs(levels - x / step) < 1)  # Still a neighbouring level.


def test_prior_norm_bound_is_in_the_state_and_loosens_the_threshold(runtime):
  process = aggregators.StochasticDiscretizationFactory(
      aggregators.SumFactory(), 0.5, beta=0.1, prior_norm_bound=3.0).create(
          fx.TensorType(np.float32, [4]))
  state = process.initialize()
  assert float(state["prior_norm_bound"]) == 3.0
  output = process.next(state, [[0.5, 1.0, -1.5, 0.0]])  # On the grid: exact.
  np.testing.assert_array_equal(output.result, [0.5, 1.0, -1.5, 0.0])
  assert float(output.state["prior_norm_bound"]) == 3.0


def test_inflated_norm_bound_matches_tff():
  # TFF 0.87's discretization.inflated_l2_norm_bound for these arguments.
  for args, expected in [((1.0, 0.1, 0.0, 100), 2.0), ((1.0, 0.1, 0.5, 100), 1.1944084167480469),
                         ((10.0, 0.01, 0.1, 1024), 10.012173652648926),
                         ((3.0, 1.0, 1e-3, 7), 5.178589820861816)]:
    np.testing.assert_allclose(inflated_l2_norm_bound(*args), expected, rtol=1e-6)


def test_stochastic_run_replays_from_its_seed_on_both_runtimes():
  def run(runtime, seed):
    process = aggregators.StochasticDiscretizationFactory(
        _SumReportingSum(), 0.1, seed=seed).create(VALUE)
    with runtime:
      state, sent = process.initialize(), []
      for round_num in range(2):
        output = process.next(state, client_values(3, seed=round_num))
        state = output.state
        sent.append(np.asarray(output.measurements["stochastic_discretization"]["b"]))
      return sent

  vectorized = run(fx.runtime.vectorized(), 1)
  for v, s in zip(vectorized, run(fx.runtime.sequential(), 1)):
    np.testing.assert_array_equal(v, s)  # Integer levels: exactly equal.
  assert any(not np.array_equal(a, b) for a, b in zip(vectorized, run(fx.runtime.vectorized(), 2)))


# --- ModularClippingSumFactory -------------------------------------------------------------------

INT_VALUE = fx.to_type(collections.OrderedDict(a=(np.int32, [5]), b=(np.int32, [2, 2])))


def wrap(v, lower, upper):
  """lower + (v - lower) mod (upper - lower), in Python ints (no overflow)."""
  return np.vectorize(lambda e: lower + (int(e) - lower) % (upper - lower))(v).astype(np.int64)


def test_modular_clipping_wraps_before_and_after_the_sum(runtime):
  lower, upper = -5, 10
  big = np.iinfo(np.int32)
  values = [collections.OrderedDict(a=np.array([20, 5, -15, 10, big.max], np.int32),
                                    b=np.array([[big.min, -6], [9, 0]], np.int32)),
            collections.OrderedDict(a=np.array([7, 8, 9, -5, -1], np.int32),
                                    b=np.array([[14, 3], [-100, 123456]], np.int32))]
  process = aggregators.ModularClippingSumFactory(lower, upper).create(INT_VALUE)
  assert str(process.next.type_signature) == (  # TFF's.
      "(<state=<>@SERVER,value={<a=int32[5],b=int32[2,2]>}@CLIENTS> -> <state=<>@SERVER,"
      "result=<a=int32[5],b=int32[2,2]>@SERVER,measurements=<modclip=<>>@SERVER>)")
  state = process.initialize()
  for _ in range(2):
    output = process.next(state, values)
    state = output.state
    for k in ("a", "b"):
      clipped = sum(wrap(v[k], lower, upper) for v in values)
      np.testing.assert_array_equal(output.result[k], wrap(clipped, lower, upper))
      assert output.result[k].dtype == np.int32
  # TFF's docstring example and what TFF 0.87 printed for two clients of [7, 8, 9, -5].
  single = aggregators.ModularClippingSumFactory(-5, 10).create(fx.TensorType(np.int32, [4]))
  np.testing.assert_array_equal(single.next((), [[20, 5, -15, 10]]).result, [5, 5, 0, -5])
  np.testing.assert_array_equal(single.next((), [[7, 8, 9, -5]] * 2).result, [-1, 1, 3, 5])


def test_modular_clipping_of_small_integer_dtypes(runtime):
  process = aggregators.ModularClippingSumFactory(0, 256).create(fx.TensorType(np.int16, [3]))
  result = process.next((), [np.array([-1, 300, 255], np.int16)] * 2).result
  np.testing.assert_array_equal(result, [254, 88, 254])
  assert result.dtype == np.int16


def test_estimated_stddev_matches_tff_and_numpy(runtime):
  a = np.array([3, -4, 7, 0, 1, 9, -9, 2, 5, -1], np.int32)
  with pytest.warns(UserWarning, match="only 10 elements"):
    process = aggregators.ModularClippingSumFactory(-10, 10, estimate_stddev=True).create(
        fx.TensorType(np.int32, [10]))
  output = process.next((), [a, a + 13])
  np.testing.assert_array_equal(output.result, [-1, 5, 7, -7, -5, -9, -5, -3, 3, -9])  # TFF's.
  np.testing.assert_allclose(output.measurements["estimated_stddev"], 5.5819616, rtol=1e-5)
  angles = np.asarray(output.result, np.float64) / 20 * 2 * np.pi
  r = np.abs(np.mean(np.exp(1j * angles)))
  np.testing.assert_allclose(output.measurements["estimated_stddev"],
                             np.sqrt(-2 * np.log(r)) / (2 * np.pi) * 20, rtol=1e-5)
  np.testing.assert_allclose(estimate_wrapped_gaussian_stddev([a], -10, 10), 4.8759989738464355,
                             rtol=1e-5)


def test_no_warning_for_large_values():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    aggregators.ModularClippingSumFactory(-10, 10, estimate_stddev=True).create(
        fx.TensorType(np.int32, [101]))


def test_modular_clipping_keeps_the_inner_state_and_measurements(runtime):
  process = aggregators.ModularClippingSumFactory(-4, 4, _Counting()).create(
      fx.TensorType(np.int32, [2]))
  state = process.initialize()
  for round_num in (1, 2):
    output = process.next(state, [[3, 2], [3, 2]])
    state = output.state
    assert int(state) == round_num and int(output.measurements["modclip"]) == round_num
    np.testing.assert_array_equal(output.result, [-2, -4])  # 6 and 4 wrapped into [-4, 4).


class _Counting(aggregators.UnweightedAggregationFactory):
  def create(self, value_type):
    @fx.computation
    def zero():
      return np.int32(0)

    @fx.computation(np.int32)
    def increment(count):
      return count + 1

    @fx.federated_computation
    def initialize():
      return fx.federated_eval(zero, fx.SERVER)

    @fx.federated_computation(initialize.type_signature.result,
                              fx.FederatedType(value_type, fx.CLIENTS))
    def next_fn(state, value):
      return fx.templates.MeasuredProcessOutput(
          fx.federated_map(increment, state), fx.federated_sum(value),
          fx.federated_map(increment, state))

    return aggregators.AggregationProcess(initialize, next_fn)


# --- Misuse ---------------------------------------------------------------------------------------

DET = aggregators.DeterministicDiscretizationFactory
STO = aggregators.StochasticDiscretizationFactory
MOD = aggregators.ModularClippingSumFactory
SUM = aggregators.SumFactory


class _WeightedOnly(aggregators.WeightedAggregationFactory):
  def create(self, value_type, weight_type):
    return aggregators.MeanFactory().create(value_type, weight_type)


@pytest.mark.parametrize("make, cls, words", [
    (lambda: DET(SUM(), 0.0), ValueError,
     ["DeterministicDiscretizationFactory: step_size must be positive and finite.",
      "expected: a positive finite number", "actual:   0.0"]),
    (lambda: STO(SUM(), -0.5), ValueError, ["step_size must be positive and finite."]),
    (lambda: STO(SUM(), float("nan")), ValueError, ["step_size must be positive and finite."]),
    (lambda: DET(SUM(), "0.1"), TypeError, ["step_size must be a number.", "actual:   '0.1'"]),
    (lambda: DET(1, 0.1), TypeError, ["inner_agg_factory must be an aggregation factory."]),
    (lambda: STO(_WeightedOnly(), 0.1), TypeError,
     ["inner_agg_factory must be an unweighted aggregation factory."]),
    (lambda: DET(SUM(), 0.1, distortion_aggregation_factory="mean"), TypeError,
     ["distortion_aggregation_factory must be an aggregation factory."]),
    (lambda: STO(SUM(), 0.1, beta=1.0), ValueError,
     ["StochasticDiscretizationFactory: beta must be a number in [0, 1).", "actual:   1.0"]),
    (lambda: STO(SUM(), 0.1, prior_norm_bound=0.0), ValueError,
     ["prior_norm_bound must be positive and finite."]),
    (lambda: STO(SUM(), 0.1, prior_norm_bound=1.0).create(VALUE), TypeError,
     ["with prior_norm_bound the value must be a single tensor",
      "hint: wrap the factory in fx.aggregators.concat_factory(...)"]),
    (lambda: DET(SUM(), 0.1).create(INT_VALUE), TypeError,
     ["DeterministicDiscretizationFactory.create: the values must be floating point.",
      "actual:   value_type <a=int32[5],b=int32[2,2]>"]),
    (lambda: STO(SUM(), 0.1).create(fx.TensorType(np.int32, [3])), TypeError,
     ["StochasticDiscretizationFactory.create: the values must be floating point."]),
    (lambda: MOD(5, 5), ValueError,
     ["ModularClippingSumFactory: clip_range_lower must be smaller than clip_range_upper.",
      "actual:   clip_range_lower=5, clip_range_upper=5"]),
    (lambda: MOD(6, 5), ValueError, ["clip_range_lower must be smaller than clip_range_upper."]),
    (lambda: MOD(-5.0, 5), TypeError, ["clip_range_lower must be an int.", "actual:   -5.0"]),
    (lambda: MOD(0, 2**31), ValueError, ["clip_range_upper is out of range."]),
    (lambda: MOD(-2**31, 2**31 - 1), ValueError, ["the range's width must fit in int32."]),
    (lambda: MOD(0, 4, estimate_stddev=1), TypeError, ["estimate_stddev must be a bool."]),
    (lambda: MOD(0, 4, _WeightedOnly()), TypeError,
     ["inner_agg_factory must be an unweighted aggregation factory."]),
    (lambda: MOD(0, 4).create(VALUE), TypeError,
     ["ModularClippingSumFactory.create: the values must be integers.",
      "hint: modular clipping is for integer values"]),
    (lambda: MOD(0, 300).create(fx.TensorType(np.int8, [2])), TypeError,
     ["the range [0, 300) does not fit in int8."]),
    (lambda: MOD(0, 4, estimate_stddev=True).create(fx.TensorType(np.int32)), ValueError,
     ["estimating the stddev needs more than one element."]),
])
def test_misuse_is_a_clear_error(make, cls, words):
  with pytest.raises(cls) as info:
    make()
  message = str(info.value)
  for word in words:
    assert word in message, (word, message)
  assert re.search(rf"at {re.escape(__file__)}:\d+", message)


def test_stochastic_round_falls_back_toward_zero_when_every_draw_is_too_long():
  from federax.aggregators import stochastic_discretization as sd
  x = jax.numpy.full([16], 0.99)
  # A bound below ||x|| (impossible for a true bound) makes every draw fail.
  rounded = sd.stochastic_round(x, jax.random.PRNGKey(0), beta=0.5, l2_norm_bound=0.01)
  np.testing.assert_array_equal(rounded, np.zeros(16))


def test_distributed_dp_nesting_recovers_the_sum(runtime):
  # TFF's DistributedDpSumFactory nesting without the noise: concat, rotate, round
  # stochastically, wrap into [-2**15, 2**15) around a wrap into [0, 2**16). Negative levels
  # pass through the two's-complement-like inner range and come back.
  step = 0.01
  factory = aggregators.concat_factory(aggregators.HadamardTransformFactory(
      aggregators.StochasticDiscretizationFactory(
          aggregators.ModularClippingSumFactory(
              -2**15, 2**15, aggregators.ModularClippingSumFactory(0, 2**16)),
          step_size=step, beta=0.1, prior_norm_bound=20.0)))
  process = factory.create(VALUE)
  state = process.initialize()
  for round_num in range(2):
    values = client_values(3, seed=round_num)
    output = process.next(state, values)
    state = output.state
    for k in SHAPES:
      # 11 elements, padded to 16: each client's rounding moves its rotated vector by less
      # than step * sqrt(16) in norm, and the inverse rotation keeps norms.
      np.testing.assert_allclose(output.result[k], stack(values, k).sum(0),
                                 atol=3 * step * math.sqrt(16))
