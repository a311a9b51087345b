"""SumFactory, MeanFactory and UnweightedMeanFactory against NumPy, on every runtime."""

import collections
import re

import numpy as np
import pytest

import federax as fx
from federax import aggregators

VALUE = fx.to_type(collections.OrderedDict(a=(np.float32, [3]), b=(np.float32, [])))


def client_values(n, seed=0):
  rng = np.random.default_rng(seed)
  return [collections.OrderedDict(a=rng.normal(size=3).astype(np.float32),
                                  b=np.float32(rng.normal())) for _ in range(n)]


def test_weighted_mean_matches_numpy_and_prints_tff_types(runtime):
  process = aggregators.MeanFactory().create(VALUE, fx.TensorType(np.float32))
  assert process.is_weighted
  assert str(process.next.type_signature) == (
      "(<state=<value_sum_process=<>,weight_sum_process=<>>@SERVER,value={<a=float32[3],"
      "b=float32>}@CLIENTS,weight={float32}@CLIENTS> -> <state=<value_sum_process=<>,"
      "weight_sum_process=<>>@SERVER,result=<a=float32[3],b=float32>@SERVER,"
      "measurements=<mean_value=<>,mean_weight=<>>@SERVER>)")
  values, weights = client_values(5), [1.0, 3.0, 0.5, 2.0, 7.0]
  output = process.next(process.initialize(), values, weights)
  w = np.asarray(weights, np.float64)
  for name in ("a", "b"):
    stacked = np.stack([np.asarray(v[name], np.float64) for v in values])
    expected = np.tensordot(w, stacked, axes=1) / w.sum()
    np.testing.assert_allclose(output.result[name], expected, rtol=1e-6)
  assert output.measurements == collections.OrderedDict(mean_value=(), mean_weight=())


def test_unweighted_mean_and_its_tff_name_agree(runtime):
  values = client_values(4, seed=1)
  for factory in (aggregators.MeanFactory(), aggregators.UnweightedMeanFactory()):
    process = factory.create(VALUE)
    assert not process.is_weighted
    result = process.next(process.initialize(), values).result
    np.testing.assert_allclose(result["a"], np.mean([v["a"] for v in values], axis=0), rtol=1e-6)


def test_zero_total_weight_is_nan_unless_no_nan_division(runtime):
  values = client_values(2)
  plain = aggregators.MeanFactory().create(VALUE, np.float32)
  assert np.isnan(plain.next(plain.initialize(), values, [0.0, 0.0]).result["b"])
  safe = aggregators.MeanFactory(no_nan_division=True).create(VALUE, np.float32)
  assert safe.next(safe.initialize(), values, [0.0, 0.0]).result["b"] == 0.0


def test_sum_factory_sums_integers_exactly(runtime):
  process = aggregators.SumFactory().create(fx.TensorType(np.int32, [2]))
  result = process.next(process.initialize(), [[1, 2], [2**30, 4], [5, -6]]).result
  np.testing.assert_array_equal(result, [2**30 + 6, 0])


class _CountingSum(aggregators.AggregationFactory):
  """An inner factory with state: counts the rounds it has summed."""

  def _create(self, value_type, weight_type):
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
          state=fx.federated_map(increment, state), result=fx.federated_sum(value),
          measurements=fx.federated_map(increment, state))

    return aggregators.AggregationProcess(initialize, next_fn)


def test_inner_factories_compose_and_report_their_measurements(runtime):
  process = aggregators.MeanFactory(value_sum_factory=_CountingSum()).create(VALUE, np.float32)
  state = process.initialize()
  for round_num in (1, 2):
    output = process.next(state, client_values(3), [1.0, 1.0, 2.0])
    state = output.state
    assert output.state["value_sum_process"] == round_num
    assert output.measurements["mean_value"] == round_num
    assert output.measurements["mean_weight"] == ()


def _raised_here(message: str, code: str) -> str:
  """A regex for the whole message `message`, then `at <this file>:<line>: <code>`."""
  return re.escape(message) + rf"\n  at {re.escape(__file__)}:\d+: {re.escape(code)}"


@pytest.mark.parametrize("make, message, code", [
    (lambda: aggregators.SumFactory().create(VALUE, np.float32),
     "SumFactory.create: this factory does not take weights.\n"
     "  actual:   weight_type float32\n"
     "  hint: use fx.aggregators.MeanFactory for weighted aggregation",
     "(lambda: aggregators.SumFactory().create(VALUE, np.float32),"),
    (lambda: aggregators.UnweightedMeanFactory().create(VALUE, np.float32),
     "UnweightedMeanFactory.create: this factory does not take weights.\n"
     "  actual:   weight_type float32\n"
     "  hint: use fx.aggregators.MeanFactory for weighted aggregation",
     "(lambda: aggregators.UnweightedMeanFactory().create(VALUE, np.float32),"),
    (lambda: aggregators.MeanFactory().create(fx.TensorType(np.int32, [2])),
     "MeanFactory.create: the values must be floating point.\n"
     "  expected: floating-point tensors\n"
     "  actual:   value_type int32[2]\n"
     "  hint: cast integer values to a float dtype first (a mean of integers is not an integer)",
     "(lambda: aggregators.MeanFactory().create(fx.TensorType(np.int32, [2])),"),
    (lambda: aggregators.MeanFactory().create(VALUE, np.int32),
     "MeanFactory.create: the weight must be a floating-point scalar.\n"
     "  expected: a floating-point scalar, e.g. float32\n"
     "  actual:   weight_type int32",
     "(lambda: aggregators.MeanFactory().create(VALUE, np.int32),"),
    (lambda: aggregators.MeanFactory(value_sum_factory=1),
     "MeanFactory: value_sum_factory must be an aggregation factory.\n"
     "  actual:   1\n"
     "  hint: e.g. fx.aggregators.SumFactory()",
     "(lambda: aggregators.MeanFactory(value_sum_factory=1),"),
    (lambda: aggregators.SumFactory().create(fx.TensorType(np.str_)),
     "SumFactory.create: the values must be numeric tensors.\n"
     "  actual:   value_type str",
     "(lambda: aggregators.SumFactory().create(fx.TensorType(np.str_)),"),
])
def test_errors_name_the_factory_and_what_was_given(make, message, code):
  # The factories write the core's template (federax.core.errors.format_message).
  with pytest.raises(TypeError) as info:
    make()
  assert re.fullmatch(_raised_here(message, code), str(info.value))


def test_aggregation_process_checks_placements():
  @fx.federated_computation
  def initialize():
    return fx.federated_value((), fx.SERVER)

  @fx.federated_computation(initialize.type_signature.result,
                            fx.FederatedType(np.float32, fx.SERVER))
  def next_fn(state, value):
    return fx.templates.MeasuredProcessOutput(state, value, fx.federated_value((), fx.SERVER))

  with pytest.raises(fx.FederatedTypeError) as info:
    aggregators.AggregationProcess(initialize, next_fn)
  # The same check and text as the learning templates' (federax/templates/_checks.py).
  assert re.fullmatch(
      re.escape("AggregationProcess: the value must be placed at CLIENTS.\n"
                "  expected: {T}@CLIENTS\n"
                "  actual:   float32@SERVER\n"
                f"  at {__file__}:") + r"\d+: " + re.escape(
                    "aggregators.AggregationProcess(initialize, next_fn)"), str(info.value))


def test_calling_an_unweighted_process_with_weights_names_how_it_was_created():
  process = aggregators.MeanFactory().create(fx.TensorType(np.float32))
  # It used to name `_unweighted_mean.<locals>.next_fn`, a function the user never wrote.
  with pytest.raises(TypeError) as info:
    process.next(process.initialize(), [1.0, 2.0], [1.0, 1.0])
  assert str(info.value) == ("MeanFactory.create(value_type).next takes 2 argument(s) "
                             "['state', 'value'], got 3.")
  sums = aggregators.SumFactory().create(fx.TensorType(np.float32))
  assert repr(sums.next).startswith("<fx.federated_computation SumFactory.create(value_type)"
                                    ".next: ")
  weighted = aggregators.MeanFactory().create(fx.TensorType(np.float32), np.float32)
  assert repr(weighted.initialize).startswith(
      "<fx.federated_computation MeanFactory.create(value_type, weight_type).initialize: ")


def test_unweighted_mean_counts_with_its_count_sum_factory_and_prints_tff_structure(runtime):
  process = aggregators.UnweightedMeanFactory(count_sum_factory=_CountingSum()).create(VALUE)
  assert str(process.next.type_signature.result) == (
      "<state=<<>,int32>@SERVER,result=<a=float32[3],b=float32>@SERVER,"
      "measurements=<mean_value=<>,mean_count=int32>@SERVER>")
  state = process.initialize()
  for round_num in (1, 2):
    values = client_values(4, seed=round_num)
    output = process.next(state, values)
    state = output.state
    assert output.state[1] == round_num and output.measurements["mean_count"] == round_num
    np.testing.assert_allclose(output.result["a"], np.mean([v["a"] for v in values], 0),
                               rtol=1e-6)
