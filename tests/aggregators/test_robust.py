"""clipping_factory and zeroing_factory against NumPy, on both runtimes, with fixed and adaptive
norms; their types as TFF prints them; their misuse."""

import collections
import math
import re

import numpy as np
import pytest

import federax as fx
from federax import aggregators

VALUE = fx.to_type(collections.OrderedDict(
    a=(np.float32, [3]), b=(np.float32, []), c=(np.float32, [2, 2])))
F32 = fx.TensorType(np.float32)
QUANTILE_STATE = ("<<current_estimate=float32,target_quantile=float32,learning_rate=float32,"
                  "below_estimate_state=<>>,<>>")
STRUCT = "<a=float32[3],b=float32,c=float32[2,2]>"


def client_values(n, seed=0, scales=None):
  rng = np.random.default_rng(seed)
  scales = scales or [1.0] * n
  return [collections.OrderedDict(a=(s * rng.normal(size=3)).astype(np.float32),
                                  b=np.float32(s * rng.normal()),
                                  c=(s * rng.normal(size=(2, 2))).astype(np.float32))
          for s in scales]


# --- The NumPy reference -------------------------------------------------------------------------


def np_norm(value, order):
  flat = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in value.values()])
  if order == 1.0:
    return np.sum(np.abs(flat))
  if order == 2.0:
    return np.sqrt(np.sum(flat**2))
  return np.max(np.abs(flat))


def np_clip(value, norm):
  """(clipped value, was clipped): scaled onto the L2 ball; a NaN norm clips nothing."""
  global_norm = np_norm(value, 2.0)
  if global_norm > norm:
    return {k: np.asarray(x, np.float64) * norm / global_norm for k, x in value.items()}, 1
  return {k: np.asarray(x, np.float64) for k, x in value.items()}, 0


def np_zero(value, norm, order):
  if np_norm(value, order) > norm:
    return {k: np.zeros_like(np.asarray(x, np.float64)) for k, x in value.items()}, 1
  return {k: np.asarray(x, np.float64) for k, x in value.items()}, 0


def np_mean(values, weights=None):
  weights = np.ones(len(values)) if weights is None else np.asarray(weights, np.float64)
  return {k: sum(w * v[k] for w, v in zip(weights, values)) / weights.sum() for k in values[0]}


def np_quantile_step(estimate, norms, target, rate):
  below = np.mean(np.asarray(norms) <= estimate)
  return estimate * math.exp(-rate * (below - target))


def assert_struct_close(actual, expected, rtol=1e-5):
  assert list(actual) == list(expected)
  for name in expected:
    np.testing.assert_allclose(actual[name], expected[name], rtol=rtol, atol=1e-6, equal_nan=True)


# --- Types ---------------------------------------------------------------------------------------


def _quantile():
  return aggregators.PrivateQuantileEstimationProcess.no_noise(1.0, 0.5, 0.2)


@pytest.mark.parametrize("make, weighted, expected", [
    # Strings printed by TFF 0.87 for the same factories and types.
    (lambda: aggregators.clipping_factory(1.0, aggregators.SumFactory()), False,
     f"(<state=<clipping_norm=<>,inner_agg=<>,clipped_count_agg=<>>@SERVER,value={{{STRUCT}}}"
     f"@CLIENTS> -> <state=<clipping_norm=<>,inner_agg=<>,clipped_count_agg=<>>@SERVER,"
     f"result={STRUCT}@SERVER,measurements=<clipping=<>,clipping_norm=float32,"
     "clipped_count=int32>@SERVER>)"),
    (lambda: aggregators.zeroing_factory(1.0, aggregators.SumFactory()), False,
     f"(<state=<zeroing_norm=<>,inner_agg=<>,zeroed_count_agg=<>>@SERVER,value={{{STRUCT}}}"
     f"@CLIENTS> -> <state=<zeroing_norm=<>,inner_agg=<>,zeroed_count_agg=<>>@SERVER,"
     f"result={STRUCT}@SERVER,measurements=<zeroing=<>,zeroing_norm=float32,"
     "zeroed_count=int32>@SERVER>)"),
    (lambda: aggregators.clipping_factory(_quantile(), aggregators.MeanFactory()), True,
     f"(<state=<clipping_norm={QUANTILE_STATE},inner_agg=<value_sum_process=<>,"
     f"weight_sum_process=<>>,clipped_count_agg=<>>@SERVER,value={{{STRUCT}}}@CLIENTS,"
     f"weight={{float32}}@CLIENTS> -> <state=<clipping_norm={QUANTILE_STATE},inner_agg="
     "<value_sum_process=<>,weight_sum_process=<>>,clipped_count_agg=<>>@SERVER,"
     f"result={STRUCT}@SERVER,measurements=<clipping=<mean_value=<>,mean_weight=<>>,"
     "clipping_norm=float32,clipped_count=int32>@SERVER>)"),
    (lambda: aggregators.zeroing_factory(_quantile(), aggregators.SumFactory()), False,
     f"(<state=<zeroing_norm={QUANTILE_STATE},inner_agg=<>,zeroed_count_agg=<>>@SERVER,"
     f"value={{{STRUCT}}}@CLIENTS> -> <state=<zeroing_norm={QUANTILE_STATE},inner_agg=<>,"
     f"zeroed_count_agg=<>>@SERVER,result={STRUCT}@SERVER,measurements=<zeroing=<>,"
     "zeroing_norm=float32,zeroed_count=int32>@SERVER>)"),
])
def test_types_print_as_tff(make, weighted, expected):
  process = make().create(VALUE, F32) if weighted else make().create(VALUE)
  assert str(process.next.type_signature) == expected


def test_weightedness_follows_the_inner_factory():
  unweighted = aggregators.clipping_factory(1.0, aggregators.SumFactory())
  assert isinstance(unweighted, aggregators.UnweightedAggregationFactory)
  assert not unweighted.weighted
  weighted = aggregators.zeroing_factory(1.0, aggregators.MeanFactory())
  assert isinstance(weighted, aggregators.WeightedAggregationFactory) and weighted.weighted
  # MeanFactory also averages without weights in federax, and so does the wrapper.
  assert not weighted.create(VALUE).is_weighted


# --- Fixed norms ---------------------------------------------------------------------------------


def test_clipping_scales_the_huge_client_and_counts_it(runtime):
  values = client_values(4, scales=[1.0, 1000.0, 0.5, 1.0])
  weights = [1.0, 3.0, 0.5, 2.0]
  process = aggregators.clipping_factory(2.0, aggregators.MeanFactory()).create(VALUE, F32)
  output = process.next(process.initialize(), values, weights)
  clipped = [np_clip(v, 2.0) for v in values]
  assert_struct_close(output.result, np_mean([c for c, _ in clipped], weights))
  assert output.measurements["clipped_count"] == sum(n for _, n in clipped) >= 1
  assert output.measurements["clipping_norm"] == np.float32(2.0)
  assert output.measurements["clipping"] == collections.OrderedDict(mean_value=(),
                                                                    mean_weight=())


@pytest.mark.parametrize("order", [1.0, 2.0, math.inf])
def test_zeroing_zeroes_the_huge_client_but_not_the_nan_one(runtime, order):
  # TFF's semantics: a NaN norm is not > the threshold, so the NaN client passes and its NaN
  # reaches the aggregate; an infinite entry is zeroed.
  values = client_values(5, seed=1, scales=[1.0, 1000.0, 1.0, 0.5, 1.0])
  values[2]["a"][0] = np.nan
  values[4]["c"][1, 1] = np.inf
  process = aggregators.zeroing_factory(8.0, aggregators.SumFactory(),
                                        norm_order=order).create(VALUE)
  output = process.next(process.initialize(), values)
  zeroed = [np_zero(v, 8.0, order) for v in values]
  expected = {k: sum(z[k] for z, _ in zeroed) for k in values[0]}
  assert_struct_close(output.result, expected)
  assert np.isnan(output.result["a"][0]) and np.isfinite(output.result["c"]).all()
  assert output.measurements["zeroed_count"] == sum(n for _, n in zeroed) == 2


@pytest.mark.parametrize("size", [100, 5000])
def test_a_nan_entry_gives_a_nan_infinity_norm_in_a_wide_tensor_too(runtime, size):
  # XLA:CPU's vectorized max over a wide tensor skipped the NaN (the norm was the 100.0 beside
  # it, so the client was zeroed at 5000 entries and not at 100); NumPy's max gives NaN.
  nan_client = np.zeros(size, np.float32)
  nan_client[3], nan_client[7] = np.nan, 100.0
  values = [nan_client, np.ones(size, np.float32)]
  assert np.isnan(np.max(np.abs(nan_client)))
  process = aggregators.zeroing_factory(10.0, aggregators.SumFactory()).create(
      fx.TensorType(np.float32, [size]))
  output = process.next(process.initialize(), values)
  assert output.measurements["zeroed_count"] == 0
  np.testing.assert_array_equal(output.result, nan_client + 1.0)


def test_zeroing_keeps_the_weight_of_a_zeroed_client(runtime):
  process = aggregators.zeroing_factory(10.0, aggregators.MeanFactory()).create(F32, F32)
  output = process.next(process.initialize(), [1.0, 100.0, 3.0], [1.0, 3.0, 2.0])
  np.testing.assert_allclose(output.result, (1.0 + 0.0 + 6.0) / 6.0, rtol=1e-6)


def test_clipping_a_nan_client_passes_it_unclipped(runtime):
  process = aggregators.clipping_factory(1.0, aggregators.SumFactory()).create(
      fx.TensorType(np.float32, [2]))
  output = process.next(process.initialize(), [[3.0, 4.0], [np.nan, 0.0]])
  np.testing.assert_allclose(output.result, [np.nan, 0.8], rtol=1e-6)
  assert output.measurements["clipped_count"] == 1


# --- Deferred bounds -----------------------------------------------------------------------------


class _Opaque(aggregators.WeightedAggregationFactory):
  """The mean, through a factory that takes no deferred bounds: the wrappers hand it their
  bounded values, as they do to any factory of a user's."""

  def create(self, value_type, weight_type=None):
    mean = aggregators.MeanFactory()
    return mean.create(value_type) if weight_type is None else mean.create(value_type,
                                                                           weight_type)


@pytest.mark.parametrize("chain", [
    lambda inner: aggregators.zeroing_factory(
        8.0, aggregators.clipping_factory(_quantile(), inner)),
    lambda inner: aggregators.clipping_factory(
        2.0, aggregators.zeroing_factory(1.5, inner, norm_order=2.0)),
    lambda inner: aggregators.clipping_factory(2.0, aggregators.clipping_factory(1.0, inner)),
    lambda inner: aggregators.zeroing_factory(
        8.0, aggregators.zeroing_factory(3.0, inner, norm_order=1.0)),
], ids=["zero-clip", "clip-zero", "clip-clip", "zero-zero"])
def test_deferred_bounds_aggregate_as_the_bounded_values(chain):
  # Wrappers pass their bounds inward; the innermost applies them where it reads the values.
  # The same chain around an opaque mean gets the bounded values at every step instead.
  values = client_values(6, seed=3, scales=[1.0, 1000.0, 0.5, 1.0, 2.0, 0.1])
  values[2]["a"][0] = np.nan
  values[4]["c"][1, 1] = np.inf
  weights = [1.0, 3.0, 0.5, 2.0, 1.0, 1.5]
  deferred, opaque = (chain(inner).create(VALUE, F32)
                      for inner in (aggregators.MeanFactory(), _Opaque()))
  state, reference = deferred.initialize(), opaque.initialize()
  for _ in range(2):
    output = deferred.next(state, values, weights)
    expected = opaque.next(reference, values, weights)
    assert_struct_close(output.result, expected.result)
    counts = [v for k, v in _leaves(output.measurements) if k.endswith("_count")]
    assert counts == [v for k, v in _leaves(expected.measurements) if k.endswith("_count")]
    state, reference = output.state, expected.state


def _leaves(tree, prefix=""):
  if isinstance(tree, dict):
    return [kv for k, v in tree.items() for kv in _leaves(v, f"{prefix}/{k}")]
  return [(prefix, tree)]


# --- Adaptive norms ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["clipping", "zeroing"])
def test_adaptive_norm_follows_the_quantile_rule_over_rounds(runtime, kind):
  # The norm process is fed each client's norm before bounding; its report (0.5 * C + 0.1)
  # bounds the values of the round, then it updates. (With the report below C, feeding the
  # bounded norms instead would count every client below C.)
  norm = aggregators.PrivateQuantileEstimationProcess.no_noise(
      initial_estimate=1.0, target_quantile=0.5, learning_rate=0.3, multiplier=0.5,
      increment=0.1)
  if kind == "clipping":
    factory = aggregators.clipping_factory(norm, aggregators.MeanFactory())
  else:
    factory = aggregators.zeroing_factory(norm, aggregators.MeanFactory(), norm_order=2.0)
  process = factory.create(VALUE, F32)
  weights = [1.0, 2.0, 3.0, 0.5, 1.0]
  state, estimate = process.initialize(), 1.0
  for round_num in range(4):
    values = client_values(5, seed=10 + round_num, scales=[0.2, 0.5, 1.0, 2.0, 50.0])
    output = process.next(state, values, weights)
    state = output.state
    threshold = 0.5 * estimate + 0.1
    if kind == "clipping":
      bounded = [np_clip(v, threshold) for v in values]
    else:
      bounded = [np_zero(v, threshold, 2.0) for v in values]
    np.testing.assert_allclose(output.measurements[f"{kind}_norm"], threshold, rtol=1e-5)
    assert output.measurements[f"{kind[:-3]}ed_count"] == sum(n for _, n in bounded)
    assert_struct_close(output.result, np_mean([b for b, _ in bounded], weights), rtol=1e-4)
    estimate = np_quantile_step(estimate, [np_norm(v, 2.0) for v in values], 0.5, 0.3)
    np.testing.assert_allclose(state[f"{kind}_norm"][0]["current_estimate"], estimate,
                               rtol=1e-5)


def test_zeroing_feeds_the_norm_of_its_order():
  # An adaptive norm whose state becomes the largest norm the clients sent.
  @fx.federated_computation
  def initialize():
    return fx.federated_value(np.float32(100.0), fx.SERVER)

  @fx.federated_computation(initialize.type_signature.result, fx.FederatedType(F32, fx.CLIENTS))
  def next_fn(state, norms):
    del state
    return fx.federated_max(norms)

  report = fx.federated_computation(lambda state: state, initialize.type_signature.result)
  largest = fx.templates.EstimationProcess(initialize, next_fn, report)
  process = aggregators.zeroing_factory(largest, aggregators.SumFactory(),
                                        norm_order=1.0).create(fx.TensorType(np.float32, [2]))
  output = process.next(process.initialize(), [[1.0, -2.0], [3.0, 0.5]])
  assert output.state["zeroing_norm"] == 3.5  # L1 norms 3.0 and 3.5
  assert output.measurements["zeroing_norm"] == 100.0  # this round's norm: the report before


# --- Misuse --------------------------------------------------------------------------------------


def _bad_report_process():
  initialize = fx.federated_computation(lambda: fx.federated_value(np.int32(1), fx.SERVER))
  next_fn = fx.federated_computation(lambda state, norms: state, initialize.type_signature.result,
                                     fx.FederatedType(F32, fx.CLIENTS))
  report = fx.federated_computation(lambda state: state, initialize.type_signature.result)
  return fx.templates.EstimationProcess(initialize, next_fn, report)


@pytest.mark.parametrize("make, error, words", [
    (lambda: aggregators.clipping_factory(-1.0, aggregators.SumFactory()), ValueError,
     ["clipping_factory", "clipping_norm must be positive", "-1.0"]),
    (lambda: aggregators.zeroing_factory(0.0, aggregators.SumFactory()), ValueError,
     ["zeroing_factory", "zeroing_norm must be positive"]),
    (lambda: aggregators.clipping_factory("1", aggregators.SumFactory()), TypeError,
     ["clipping_norm must be a positive float or an fx.templates.EstimationProcess", "'1'"]),
    (lambda: aggregators.clipping_factory(1.0, aggregators.SumFactory), TypeError,
     ["inner_agg_factory must be an aggregation factory"]),
    (lambda: aggregators.zeroing_factory(1.0, aggregators.SumFactory(), norm_order=3.0),
     ValueError, ["norm_order must be 1.0, 2.0 or math.inf", "3.0"]),
    (lambda: aggregators.clipping_factory(_bad_report_process(), aggregators.SumFactory()),
     TypeError, ["clipping_norm.report must return a float32 norm", "int32@SERVER"]),
    (lambda: aggregators.clipping_factory(1.0, aggregators.SumFactory()).create(
        fx.TensorType(np.int32, [2])), TypeError,
     ["clipping_factory(...).create", "floating point", "int32[2]"]),
    (lambda: aggregators.zeroing_factory(1.0, aggregators.SumFactory()).create(F32, F32),
     TypeError, ["zeroing_factory(...).create", "takes no weights", "MeanFactory"]),
])
def test_misuse_is_a_clear_error(make, error, words):
  with pytest.raises(error) as info:
    make()
  for word in words:
    assert word in str(info.value), (word, str(info.value))
  assert re.search(r"at .*test_robust\.py:\d+", str(info.value))


WIDE = fx.to_type(collections.OrderedDict(a=(np.float32, [5000]), b=(np.float32, [3])))


def test_zeroing_around_clipping_computes_both_norms_in_one_map(runtime):
  # The clipping norm is computed in the zeroing wrapper's map, beside the L-inf norm, from one
  # read of each tensor (test_one_pass.py: one reduction for both).
  rng = np.random.default_rng(7)
  scales = [0.01, 0.012, 1.0, 0.005, 0.03]  # Client 2 is zeroed (L-inf > 2), 4 clipped (L2 > 1).
  values = [collections.OrderedDict(a=(s * rng.normal(size=5000)).astype(np.float32),
                                    b=(s * rng.normal(size=3)).astype(np.float32))
            for s in scales]
  weights = [1.0, 2.0, 0.5, 1.5, 3.0]
  factory = aggregators.zeroing_factory(2.0, aggregators.clipping_factory(
      1.0, aggregators.MeanFactory()))
  process = factory.create(WIDE, F32)
  output = process.next(process.initialize(), values, weights)
  zeroed = [np_zero(v, 2.0, math.inf) for v in values]
  clipped = [np_clip(z, 1.0) for z, _ in zeroed]
  assert [n for _, n in zeroed] == [0, 0, 1, 0, 0]
  assert [n for _, n in clipped] == [0, 0, 0, 0, 1]
  assert_struct_close(output.result, np_mean([c for c, _ in clipped], weights), rtol=1e-5)
  assert output.measurements["zeroed_count"] == 1
  assert output.measurements["zeroing"]["clipped_count"] == 1
  if isinstance(runtime, fx.runtime.VectorizedRuntime):
    decisions = [line for line in fx.runtime.explain(process.next, process.initialize(), values,
                                                     weights).splitlines()
                 if line.startswith("federated_map")]
    # The maps: the zeroing wrapper's (both norms), the bound applied with the weights, the
    # counts; no map of the clipping wrapper's own reads the values.
    assert not any("reductions" in line for line in decisions), decisions
