"""The robust rules against NumPy re-computations (float64, explicit loops), on both runtimes."""

import collections
import re
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax import aggregators
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights

KEYS = ("a", "m", "b")
VALUE = fx.to_type(collections.OrderedDict(a=(np.float32, [3]), m=(np.float32, [2, 2]),
                                           b=(np.float32, [])))


def client_values(n, seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  return [collections.OrderedDict(a=(scale * rng.normal(size=3)).astype(np.float32),
                                  m=(scale * rng.normal(size=(2, 2))).astype(np.float32),
                                  b=np.float32(scale * rng.normal())) for _ in range(n)]


def stacked(values):
  return {k: np.stack([np.asarray(v[k], np.float64) for v in values]) for k in KEYS}


def flat(values):
  """`float64[n, d]`: each client's value flattened over the whole structure, in order."""
  return np.stack([np.concatenate([np.ravel(np.asarray(v[k], np.float64)) for k in KEYS])
                   for v in values])


def unflat(vector):
  out, start = {}, 0
  for k in KEYS:
    shape = tuple(VALUE[k].shape)
    size = int(np.prod(shape))
    out[k] = vector[start:start + size].reshape(shape)
    start += size
  return out


def assert_close(result, expected, rtol=1e-5, atol=1e-5):
  for k in KEYS:
    assert np.asarray(result[k]).dtype == np.float32
    np.testing.assert_allclose(result[k], expected[k], rtol=rtol, atol=atol, err_msg=k)


# --- NumPy references ----------------------------------------------------------------------------


def np_median(values):
  with warnings.catch_warnings():  # "All-NaN slice": the NaN it returns is the expectation.
    warnings.simplefilter("ignore", RuntimeWarning)
    return {k: np.nanmedian(x, axis=0) for k, x in stacked(values).items()}


def np_trimmed_mean(values, beta):
  def column(c):
    real = np.sort(c[~np.isnan(c)])
    cut = int(beta * len(real))
    return np.mean(real[cut:len(real) - cut]) if len(real) else np.nan

  return {k: np.apply_along_axis(column, 0, x) for k, x in stacked(values).items()}


def np_krum(values, f, num_selected):
  x = flat(values)
  n = len(x)
  finite = np.all(np.isfinite(x), axis=1)
  distance = np.full((n, n), np.inf)
  for i in range(n):
    for j in range(n):
      if i != j and finite[i] and finite[j]:
        distance[i, j] = np.sum((x[i] - x[j]) ** 2)
  neighbors = min(max(1, n - f - 2), n - 1)
  scores = np.array([np.sum(np.sort(np.delete(distance[i], i))[:neighbors]) if finite[i]
                     else np.inf for i in range(n)])
  chosen = np.argsort(scores, kind="stable")[:min(num_selected, n)]
  return unflat(x[chosen].mean(axis=0)), chosen, neighbors


def np_weiszfeld(values, weights, max_iterations, eps, ftol):
  """RFA's smoothed Weiszfeld, as written in the paper's reference code, in float64."""
  x = flat(values)
  w = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64)
  keep = np.all(np.isfinite(x), axis=1) & np.isfinite(w)
  x, alphas = x[keep], w[keep] / w[keep].sum()
  median = alphas @ x
  objective = alphas @ np.linalg.norm(x - median, axis=1)
  iterations = 0
  for _ in range(max_iterations):
    previous = objective
    betas = alphas / np.maximum(eps, np.linalg.norm(x - median, axis=1))
    median = betas @ x / betas.sum()
    objective = alphas @ np.linalg.norm(x - median, axis=1)
    iterations += 1
    if abs(previous - objective) <= ftol * objective:
      break
  return unflat(median), iterations


# --- Signatures ----------------------------------------------------------------------------------


def test_types_print_with_empty_state_and_each_rules_measurements():
  value = fx.TensorType(np.float32, [3])
  plain = ("(<state=<>@SERVER,value={{float32[3]}}@CLIENTS> -> <state=<>@SERVER,"
           "result=float32[3]@SERVER,measurements={}@SERVER>)")
  assert str(aggregators.MedianFactory().create(value).next.type_signature) == plain.format("<>")
  assert str(aggregators.TrimmedMeanFactory(0.1).create(value).next.type_signature) == (
      plain.format("<>"))
  assert str(aggregators.KrumFactory(1).create(value).next.type_signature) == plain.format(
      "<num_neighbors=int32,num_selected=int32>")
  assert str(aggregators.GeometricMedianFactory().create(value).next.type_signature) == (
      plain.format("<num_iterations=int32>"))
  weighted = aggregators.GeometricMedianFactory().create(value, np.float32)
  assert weighted.is_weighted
  assert str(weighted.next.type_signature) == (
      "(<state=<>@SERVER,value={float32[3]}@CLIENTS,weight={float32}@CLIENTS> -> "
      "<state=<>@SERVER,result=float32[3]@SERVER,measurements=<num_iterations=int32>@SERVER>)")
  assert repr(weighted.next).startswith(
      "<fx.federated_computation GeometricMedianFactory.create(value_type, weight_type).next: ")


# --- Median and trimmed mean ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [7, 8])  # Odd, and even (the middle two averaged).
def test_median_matches_numpy_over_rounds(runtime, n):
  process = aggregators.MedianFactory().create(VALUE)
  state = process.initialize()
  for round_num in range(3):
    values = client_values(n, seed=round_num)
    values[round_num]["a"][:] = 1e6  # One client with a huge norm.
    output = process.next(state, values)
    state = output.state
    assert_close(output.result, np_median(values))
    assert output.measurements == ()
    assert np.all(np.abs(output.result["a"]) < 10)


def test_median_and_trimmed_mean_ignore_nan_coordinate_by_coordinate(runtime):
  values = client_values(6, seed=4)
  values[1]["a"][0] = np.nan  # One NaN coordinate,
  values[2]["m"][:] = np.nan  # a NaN tensor,
  for v in values:  # and a coordinate that is NaN at every client.
    v["m"][1, 1] = np.nan
  median = aggregators.MedianFactory().create(VALUE)
  result = median.next(median.initialize(), values).result
  assert_close(result, np_median(values))
  assert np.isnan(result["m"][1, 1]) and np.isfinite(result["a"]).all()
  # int(0.34 * 6) = 2 values cut from each end, but int(0.34 * 5) = 1 where one is NaN.
  trimmed = aggregators.TrimmedMeanFactory(0.34).create(VALUE)
  result = trimmed.next(trimmed.initialize(), values).result
  assert_close(result, np_trimmed_mean(values, 0.34))
  assert np.isnan(result["m"][1, 1]) and np.isfinite(result["a"]).all()


@pytest.mark.parametrize("beta", [0.0, 0.2, 0.49])
def test_trimmed_mean_matches_numpy_over_rounds(runtime, beta):
  process = aggregators.TrimmedMeanFactory(beta).create(VALUE)
  state = process.initialize()
  for round_num, n in enumerate((10, 7, 3)):  # int(beta * n) cut from each end.
    values = client_values(n, seed=10 + round_num)
    values[0]["b"] = np.float32(-1e7)
    output = process.next(state, values)
    state = output.state
    assert_close(output.result, np_trimmed_mean(values, beta), rtol=1e-4)
    if int(beta * n):  # The outlier is cut.
      assert abs(output.result["b"]) < 10


def test_trimmed_mean_with_beta_zero_is_the_mean():
  values = client_values(5, seed=2)
  process = aggregators.TrimmedMeanFactory(0.0).create(VALUE)
  assert_close(process.next(process.initialize(), values).result,
               {k: x.mean(axis=0) for k, x in stacked(values).items()})


# --- Krum ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("f, num_selected", [(2, 1), (1, 3), (0, 12)])
def test_krum_matches_a_numpy_double_loop_over_rounds(runtime, f, num_selected):
  process = aggregators.KrumFactory(f, num_selected=num_selected).create(VALUE)
  state = process.initialize()
  attackers = (2, 5)[:f]
  for round_num in range(3):
    values = client_values(9, seed=20 + round_num)
    for attacker in attackers:  # Far away together: each other's nearest neighbours.
      values[attacker] = collections.OrderedDict(
          (k, np.asarray(v, np.float32) + np.float32(40.0)) for k, v in values[attacker].items())
    output = process.next(state, values)
    state = output.state
    expected, chosen, neighbors = np_krum(values, f, num_selected)
    assert_close(output.result, expected, rtol=1e-4)
    assert output.measurements == collections.OrderedDict(
        num_neighbors=neighbors, num_selected=min(num_selected, 9))
    if num_selected <= 9 - f:
      assert not set(chosen) & set(attackers)


def test_krum_clamps_neighbors_when_clients_are_few_and_skips_nonfinite_clients(runtime):
  values = client_values(4, seed=7)
  values[1]["m"][0, 0] = np.nan
  values[3]["b"] = np.float32(np.inf)
  process = aggregators.KrumFactory(num_byzantine=3, num_selected=2).create(VALUE)
  output = process.next(process.initialize(), values)
  expected, chosen, neighbors = np_krum(values, 3, 2)
  assert neighbors == 1 and sorted(chosen) == [0, 2]
  assert_close(output.result, expected)
  assert output.measurements["num_neighbors"] == 1


def test_krum_of_one_client_is_its_value():
  values = client_values(1, seed=8)
  process = aggregators.KrumFactory(num_byzantine=1).create(VALUE)
  output = process.next(process.initialize(), values)
  assert_close(output.result, stacked(values) | {k: stacked(values)[k][0] for k in KEYS})
  assert output.measurements == collections.OrderedDict(num_neighbors=0, num_selected=1)


def test_krum_distances_stay_exact_next_to_a_huge_client():
  # Distances come from a Gram matrix; an attacker of norm 1e30 must neither overflow the
  # honest clients' distances nor be chosen.
  values = client_values(8, seed=9, scale=1e-2)
  values[4] = collections.OrderedDict((k, np.full_like(v, 1e30)) for k, v in values[4].items())
  process = aggregators.KrumFactory(num_byzantine=1, num_selected=3).create(VALUE)
  output = process.next(process.initialize(), values)
  expected, chosen, _ = np_krum(values, 1, 3)
  assert 4 not in chosen
  assert_close(output.result, expected, rtol=1e-4, atol=1e-7)


# --- Geometric median ----------------------------------------------------------------------------


def test_weighted_geometric_median_matches_numpy_weiszfeld_over_rounds(runtime):
  process = aggregators.GeometricMedianFactory(max_iterations=50, ftol=1e-5).create(
      VALUE, np.float32)
  state = process.initialize()
  for round_num in range(3):
    values = client_values(7, seed=30 + round_num)
    values[6] = collections.OrderedDict((k, np.asarray(v) * 1e4) for k, v in values[6].items())
    weights = [1.0, 3.0, 0.5, 2.0, 7.0, 1.5, 4.0]  # Unequal, the outlier heavy.
    output = process.next(state, values, weights)
    state = output.state
    expected, iterations = np_weiszfeld(values, weights, 50, 1e-6, 1e-5)
    assert_close(output.result, expected, rtol=1e-3, atol=1e-4)
    assert abs(int(output.measurements["num_iterations"]) - iterations) <= 1
    assert np.all(np.abs(output.result["a"]) < 10)


def test_unweighted_geometric_median_runs_exactly_max_iterations_without_ftol(runtime):
  values = client_values(6, seed=40)
  for max_iterations in (1, 3):
    process = aggregators.GeometricMedianFactory(max_iterations=max_iterations, ftol=0.0).create(
        VALUE)
    output = process.next(process.initialize(), values)
    expected, iterations = np_weiszfeld(values, None, max_iterations, 1e-6, 0.0)
    assert iterations == max_iterations == output.measurements["num_iterations"]
    assert_close(output.result, expected, rtol=1e-5, atol=1e-6)


def test_geometric_median_ignores_nonfinite_clients_and_weights():
  values = client_values(6, seed=41)
  values[0]["a"][1] = np.nan
  weights = [1.0, 2.0, np.inf, 1.0, 0.5, 1.0]
  process = aggregators.GeometricMedianFactory(max_iterations=20, ftol=0.0).create(
      VALUE, np.float32)
  output = process.next(process.initialize(), values, weights)
  expected, _ = np_weiszfeld(values, weights, 20, 1e-6, 0.0)  # Clients 0 and 2 dropped.
  assert_close(output.result, expected, rtol=1e-4, atol=1e-5)


# --- Misuse --------------------------------------------------------------------------------------


def _message(lines: str, code: str) -> str:
  return re.escape(lines) + rf"\n  at {re.escape(__file__)}:\d+: {re.escape(code)}"


@pytest.mark.parametrize("make, error, message, code", [
    (lambda: aggregators.MedianFactory().create(VALUE, np.float32), TypeError,
     "MedianFactory.create: this factory does not take weights.\n"
     "  actual:   weight_type float32\n"
     "  hint: MedianFactory weighs every client equally: use it with an unweighted algorithm "
     "(fx.learning.algorithms.build_unweighted_fed_avg), or use "
     "fx.aggregators.GeometricMedianFactory, a robust rule that takes weights",
     "(lambda: aggregators.MedianFactory().create(VALUE, np.float32), TypeError,"),
    (lambda: aggregators.KrumFactory(1).create(fx.TensorType(np.int32, [2])), TypeError,
     "KrumFactory.create: the values must be floating point.\n"
     "  expected: floating-point tensors\n"
     "  actual:   value_type int32[2]\n"
     "  hint: cast the values to a float dtype first",
     "(lambda: aggregators.KrumFactory(1).create(fx.TensorType(np.int32, [2])), TypeError,"),
    (lambda: aggregators.GeometricMedianFactory().create(VALUE, np.int32), TypeError,
     "GeometricMedianFactory.create: the weight must be a floating-point scalar.\n"
     "  expected: a floating-point scalar, e.g. float32\n"
     "  actual:   weight_type int32",
     "(lambda: aggregators.GeometricMedianFactory().create(VALUE, np.int32), TypeError,"),
    (lambda: aggregators.TrimmedMeanFactory(0.5), ValueError,
     "TrimmedMeanFactory: beta, the fraction cut from each end, must lie in [0, 0.5).\n"
     "  expected: 0 <= beta < 0.5\n"
     "  actual:   beta=0.5\n"
     "  hint: beta=0.1 drops the top and bottom 10% of the values in each coordinate",
     "(lambda: aggregators.TrimmedMeanFactory(0.5), ValueError,"),
    (lambda: aggregators.KrumFactory(-1), ValueError,
     "KrumFactory: num_byzantine, the number of Byzantine clients tolerated, must be >= 0.\n"
     "  expected: num_byzantine >= 0\n"
     "  actual:   num_byzantine=-1",
     "(lambda: aggregators.KrumFactory(-1), ValueError,"),
    (lambda: aggregators.KrumFactory(1, num_selected=0), ValueError,
     "KrumFactory: num_selected, the number of clients averaged (1 is Krum), must be >= 1.\n"
     "  expected: num_selected >= 1\n"
     "  actual:   num_selected=0",
     "(lambda: aggregators.KrumFactory(1, num_selected=0), ValueError,"),
    (lambda: aggregators.GeometricMedianFactory(eps=0.0), ValueError,
     "GeometricMedianFactory: eps is out of range.\n"
     "  expected: eps > 0\n"
     "  actual:   eps=0.0",
     "(lambda: aggregators.GeometricMedianFactory(eps=0.0), ValueError,"),
])
def test_misuse_is_a_clear_error_naming_the_factory(make, error, message, code):
  with pytest.raises(error) as info:
    make()
  assert re.fullmatch(_message(message, code), str(info.value)), str(info.value)


@pytest.mark.parametrize("make", [
    lambda: aggregators.TrimmedMeanFactory(-0.1), lambda: aggregators.TrimmedMeanFactory("0.1"),
    lambda: aggregators.KrumFactory(1.5), lambda: aggregators.KrumFactory(True),
    lambda: aggregators.GeometricMedianFactory(max_iterations=0),
    lambda: aggregators.GeometricMedianFactory(ftol=-1.0),
])
def test_other_bad_parameters_name_the_factory(make):
  with pytest.raises((TypeError, ValueError),
                     match=r"^(TrimmedMean|Krum|GeometricMedian)Factory: "):
    make()


def test_only_the_geometric_median_takes_weights():
  for factory in (aggregators.MedianFactory(), aggregators.TrimmedMeanFactory(0.1),
                  aggregators.KrumFactory(1)):
    assert not factory.weighted
    with pytest.raises(TypeError, match="does not take weights"):
      factory.create(VALUE, np.float32)
  assert aggregators.GeometricMedianFactory().weighted
  with pytest.raises(TypeError, match="the value must hold at least one tensor"):
    aggregators.MedianFactory().create(fx.to_type(()))


def test_fed_avg_takes_the_rules_that_fit_its_weighting():
  spec = collections.OrderedDict(x=(np.float32, [2, 3]), y=(np.float32, [2]))
  model = FunctionalModel(
      initial_weights=ModelWeights([np.zeros(3, np.float32)], []),
      predict_on_batch_fn=lambda weights, x, training: x @ weights.trainable[0],
      loss_fn=lambda p, y, w: jnp.sum(w * (p - y) ** 2) / jnp.sum(w), input_spec=spec)
  with pytest.raises(TypeError, match="model_aggregator must support weights .* MedianFactory "
                                      "does not"):
    algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.1),
                                      model_aggregator=aggregators.MedianFactory())
  process = algorithms.build_weighted_fed_avg(
      model, optimizers.build_sgdm(0.1), model_aggregator=aggregators.GeometricMedianFactory())
  rng = np.random.default_rng(0)
  clients = [[collections.OrderedDict(x=rng.normal(size=(2, 3)).astype(np.float32),
                                      y=rng.normal(size=2).astype(np.float32))] * k
             for k in (1, 2, 3)]
  _, metrics = process.next(process.initialize(), clients)
  assert metrics["aggregator"]["num_iterations"] >= 1
