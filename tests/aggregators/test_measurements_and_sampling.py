"""add_measurements and UnweightedReservoirSamplingFactory against NumPy, on both runtimes;
their types as TFF prints them (where federax's agree); their misuse."""

import collections
import re

import numpy as np
import pytest

import federax as fx
from federax import aggregators

F32 = fx.TensorType(np.float32)
VALUE = fx.to_type(collections.OrderedDict(
    a=(np.float32, [3]), b=(np.float32, []), c=(np.int32, [2, 2])))


def client_values(n, seed=0):
  """Struct values whose `b` is the client's index, so a sample tells whom it came from."""
  rng = np.random.default_rng(seed)
  return [collections.OrderedDict(a=rng.normal(size=3).astype(np.float32), b=np.float32(i),
                                  c=rng.integers(-5, 5, size=(2, 2)).astype(np.int32))
          for i in range(n)]


# --- add_measurements ----------------------------------------------------------------------------


def test_unweighted_measurements_are_added_after_the_inner_ones(runtime):
  factory = aggregators.add_measurements(
      aggregators.UnweightedMeanFactory(),
      client_measurement_fn=lambda value: collections.OrderedDict(
          largest=fx.federated_max(value.a), count=fx.federated_sum(
              fx.federated_value(np.int32(1), fx.CLIENTS))),
      server_measurement_fn=lambda result: {"b_of_mean": result.b})
  values = [collections.OrderedDict(a=v["a"], b=v["b"]) for v in client_values(4)]
  process = factory.create(fx.to_type(collections.OrderedDict(a=(np.float32, [3]),
                                                              b=(np.float32, []))))
  output = process.next(process.initialize(), values)
  a = np.stack([v["a"] for v in values])
  np.testing.assert_allclose(output.result["a"], a.mean(axis=0), rtol=1e-6)
  assert list(output.measurements) == ["mean_value", "mean_count", "largest", "count", "b_of_mean"]
  np.testing.assert_allclose(output.measurements["largest"], a.max(axis=0))
  assert output.measurements["count"] == 4
  np.testing.assert_allclose(output.measurements["b_of_mean"], np.mean([0, 1, 2, 3]))
  assert output.state == process.initialize()


def test_weighted_client_measurements_see_the_weights(runtime):
  factory = aggregators.add_measurements(
      aggregators.MeanFactory(),
      client_measurement_fn=lambda value, weight: collections.OrderedDict(
          total_weight=fx.federated_sum(weight), heaviest=fx.federated_max(weight)))
  process = factory.create(F32, F32)
  assert factory.weighted and process.is_weighted
  values, weights = [1.0, 2.0, 10.0], [0.5, 3.0, 1.5]
  output = process.next(process.initialize(), values, weights)
  np.testing.assert_allclose(output.result, np.dot(values, weights) / sum(weights), rtol=1e-6)
  assert output.measurements["total_weight"] == 5.0 and output.measurements["heaviest"] == 3.0
  assert str(process.next.type_signature) == (
      "(<state=<value_sum_process=<>,weight_sum_process=<>>@SERVER,value={float32}@CLIENTS,"
      "weight={float32}@CLIENTS> -> <state=<value_sum_process=<>,weight_sum_process=<>>@SERVER,"
      "result=float32@SERVER,measurements=<mean_value=<>,mean_weight=<>,total_weight=float32,"
      "heaviest=float32>@SERVER>)")


def test_types_print_as_tff_and_a_repeated_name_takes_the_new_value():
  # TFF 0.87 prints this for SumFactory wrapped so; a dict update: `mx` keeps its place.
  factory = aggregators.add_measurements(
      aggregators.SumFactory(),
      client_measurement_fn=lambda v: collections.OrderedDict(mx=fx.federated_max(v),
                                                              mn=fx.federated_min(v)),
      server_measurement_fn=lambda result: collections.OrderedDict(mx=result))
  process = factory.create(F32)
  assert str(process.next.type_signature) == (
      "(<state=<>@SERVER,value={float32}@CLIENTS> -> <state=<>@SERVER,result=float32@SERVER,"
      "measurements=<mx=float32,mn=float32>@SERVER>)")
  output = process.next(process.initialize(), [1.0, 3.0])
  assert dict(output.measurements) == {"mx": 4.0, "mn": 1.0}


@pytest.mark.parametrize("make, error, words", [
    (lambda: aggregators.add_measurements(aggregators.SumFactory()), ValueError,
     ["add_measurements", "give client_measurement_fn, server_measurement_fn or both"]),
    (lambda: aggregators.add_measurements(
        aggregators.SumFactory(), client_measurement_fn=lambda v, w: {}), TypeError,
     ["client_measurement_fn must take (value)", "takes 2"]),
    (lambda: aggregators.add_measurements(
        aggregators.MeanFactory(), client_measurement_fn=lambda v: {}).create(F32, F32),
     TypeError, ["add_measurements(...).create(value_type, weight_type)",
                 "client_measurement_fn must take (value, weight) when weighted"]),
    (lambda: aggregators.add_measurements(
        aggregators.SumFactory(), server_measurement_fn=lambda r: {"r": r}).create(F32, F32),
     TypeError, ["takes no weights"]),
    (lambda: aggregators.add_measurements(
        aggregators.SumFactory(), client_measurement_fn=lambda v: {"v": v}).create(F32),
     TypeError, ["client_measurement_fn must return a mapping of names to values placed at "
                 "SERVER", "{float32}@CLIENTS"]),
    (lambda: aggregators.add_measurements(
        aggregators.SumFactory(), server_measurement_fn=lambda r: r).create(F32),
     TypeError, ["server_measurement_fn must return a mapping", "float32@SERVER"]),
    (lambda: aggregators.add_measurements("sum", server_measurement_fn=lambda r: {}), TypeError,
     ["inner_agg_factory must be an aggregation factory"]),
])
def test_add_measurements_misuse_is_a_clear_error(make, error, words):
  with pytest.raises(error) as info:
    make()
  for word in words:
    assert word in str(info.value), (word, str(info.value))
  assert re.search(r"at .*test_measurements_and_sampling\.py:\d+", str(info.value))


# --- Reservoir sampling --------------------------------------------------------------------------


def test_sample_holds_distinct_clients_values_and_counts_non_finite_leaves(runtime):
  values = client_values(6, seed=1)
  values[1]["a"][2] = np.nan
  values[4]["a"][0] = np.inf
  values[4]["b"] = np.float32(-np.inf)
  process = aggregators.UnweightedReservoirSamplingFactory(3).create(VALUE)
  assert str(process.next.type_signature) == (
      "(<state=uint32[2]@SERVER,value={<a=float32[3],b=float32,c=int32[2,2]>}@CLIENTS> -> "
      "<state=uint32[2]@SERVER,result=<a=float32[3,3],b=float32[3],c=int32[3,2,2]>@SERVER,"
      "measurements=<a=int32,b=int32,c=int32>@SERVER>)")
  state, seen = process.initialize(), []
  for _ in range(3):
    output = process.next(state, values)
    state = output.state
    b = output.result["b"]
    chosen = [int(i) if np.isfinite(i) else 4 for i in b]  # client 4's b is -inf
    assert len(set(chosen)) == 3
    for row, i in enumerate(chosen):
      np.testing.assert_array_equal(output.result["a"][row], values[i]["a"])
      np.testing.assert_array_equal(output.result["c"][row], values[i]["c"])
    seen.append(tuple(chosen))
    expected = {k: sum(not np.all(np.isfinite(v[k])) for v in values) for k in ("a", "b")}
    assert dict(output.measurements) == dict(expected, c=0)
  assert len(set(seen)) > 1  # the state's key advances: rounds draw afresh


def test_fewer_clients_than_the_sample_size_fill_the_first_rows(runtime):
  process = aggregators.UnweightedReservoirSamplingFactory(
      4, return_sampling_metadata=True).create(F32)
  output = process.next(process.initialize(), [7.0, 9.0])
  assert sorted(output.result["samples"][:2].tolist()) == [7.0, 9.0]
  np.testing.assert_array_equal(output.result["samples"][2:], [0.0, 0.0])
  random_values = output.result["random_values"]
  assert (random_values[:2] >= 0).all() and (random_values[2:] == -1).all()
  assert random_values[0] >= random_values[1]  # largest priority first
  assert output.result["random_seed"].dtype == np.uint32


def test_both_runtimes_draw_the_same_sample():
  process = aggregators.UnweightedReservoirSamplingFactory(2).create(VALUE)
  values = client_values(7, seed=2)
  results = []
  for runtime in (fx.runtime.vectorized(seed=5), fx.runtime.sequential(seed=5)):
    with runtime:
      output = process.next(process.initialize(), values)
      results.append(output.result["b"].tolist())
  assert results[0] == results[1]


def test_each_client_is_sampled_with_probability_sample_size_over_n():
  n, k, rounds = 8, 3, 400
  process = aggregators.UnweightedReservoirSamplingFactory(k).create(F32)
  values = [float(i) for i in range(n)]
  counts = np.zeros(n)
  state = process.initialize()
  for _ in range(rounds):
    output = process.next(state, values)
    state = output.state
    sample = output.result.astype(int)
    assert len(set(sample.tolist())) == k
    counts[sample] += 1
  # Pearson's chi-square against k/n each (7 degrees of freedom): 24.3 is its 0.999 quantile.
  expected = rounds * k / n
  chi_square = np.sum((counts - expected) ** 2 / expected)
  assert chi_square < 24.3, counts


@pytest.mark.parametrize("make, error, words", [
    (lambda: aggregators.UnweightedReservoirSamplingFactory(0), ValueError,
     ["UnweightedReservoirSamplingFactory", "sample_size must be positive"]),
    (lambda: aggregators.UnweightedReservoirSamplingFactory(2.0), TypeError,
     ["sample_size must be an int", "2.0"]),
    (lambda: aggregators.UnweightedReservoirSamplingFactory(2).create(F32, F32), TypeError,
     ["does not take weights"]),
    (lambda: aggregators.UnweightedReservoirSamplingFactory(2).create(
        fx.TensorType(np.float32, [None])), TypeError,
     ["UnweightedReservoirSamplingFactory.create", "known shapes", "float32[?]"]),
])
def test_sampling_misuse_is_a_clear_error(make, error, words):
  with pytest.raises(error) as info:
    make()
  for word in words:
    assert word in str(info.value), (word, str(info.value))
