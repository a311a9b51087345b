"""Cohorts of varying size on the vectorized runtime (`cohort_padding`): padded to bucketed
sizes with a client mask, they share compiled programs and give the unpadded results."""

import collections
import warnings

import jax
import numpy as np
import pytest

import federax as fx
from federax.runtime.vectorized.cohort_padding import RecompilationWarning, padded_size

C, S = fx.CLIENTS, fx.SERVER
SIZES = (5, 9, 13, 3, 14, 7, 17)  # One program for 3-16 padded, one for 17 (18).
# (None a multiple of the 4 test devices: a cohort whose plan shards is not padded.)
DPF = fx.aggregators.DifferentiallyPrivateFactory


def _assert_equal(a, b):
  """Bit for bit, leaf by leaf (NaNs equal)."""
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


@fx.computation(np.float32)
def _inverse(x):
  return 1.0 / x  # inf on a padded client's zero: must not reach any aggregate.


@fx.federated_computation(fx.FederatedType(np.float32, C), fx.FederatedType(np.int32, C),
                          fx.FederatedType((np.uint32, [2]), S))
def _every_intrinsic(x, ints, key):
  inv = fx.federated_map(_inverse, x)
  nan = fx.federated_map(fx.computation(lambda v: (v - v) / (v - v), np.float32), x)
  return collections.OrderedDict(
      sum=fx.federated_sum(inv), mean=fx.federated_mean(inv),
      weighted=fx.federated_mean(inv, fx.federated_map(fx.computation(abs, np.float32), x)),
      min=fx.federated_min(inv), max=fx.federated_max(inv),
      bitwidth=fx.federated_secure_sum_bitwidth(ints, 4),
      modular=fx.federated_secure_modular_sum(ints, 7),
      aggregate=fx.federated_aggregate(inv, np.float32(0.0), lambda a, v: a + v,
                                       lambda a, b: a + b, lambda a: a * 2.0),
      # A padded client's NaN must not reach a reduction that is not its own (mean of a
      # product of masked NaNs would be NaN).
      nan_mean=fx.federated_mean(fx.federated_map(fx.computation(lambda v: v * 0.0, np.float32),
                                                  nan)),
      keys=fx.federated_map(fx.computation(lambda k: jax.random.uniform(k, ()), (np.uint32, [2])),
                            fx.federated_client_keys(key)),
      evals=fx.federated_eval(lambda k: jax.random.normal(k, ()), C),
      mapped=inv)


def _cohort(rng, n):
  x = rng.uniform(0.5, 2.0, n).astype(np.float32) * rng.choice([-1, 1], n).astype(np.float32)
  return list(x), list(rng.integers(0, 16, n).astype(np.int32))


def test_padding_sizes_are_few_and_close_to_the_cohort():
  assert [padded_size(n) for n in (1, 16, 17, 33, 100, 1000)] == [16, 16, 18, 36, 104, 1024]
  for n in range(17, 2000):
    assert n <= padded_size(n) < n * 1.125


def test_every_intrinsic_on_a_padded_cohort_equals_the_unpadded_cohort():
  rng = np.random.default_rng(0)
  key = np.asarray(jax.random.PRNGKey(3))
  padded, unpadded = fx.runtime.vectorized(pad_clients=True), fx.runtime.vectorized()
  for n in SIZES:
    x, ints = _cohort(rng, n)
    with padded:
      got = _every_intrinsic(x, ints, key)
    with unpadded:
      want = _every_intrinsic(x, ints, key)
    # A weighted mean is a dot product, whose summation order XLA picks by the axis length:
    # equal to rounding. Every other result is bit for bit (sums of these few clients included).
    np.testing.assert_allclose(got["weighted"], want.pop("weighted"), rtol=1e-6, atol=1e-6)
    _assert_equal(dict((k, v) for k, v in got.items() if k != "weighted"), dict(want))
    # And against NumPy: padded clients are in no aggregate.
    inv = 1.0 / np.asarray(x, np.float64)
    np.testing.assert_allclose(got["sum"], inv.sum(), rtol=1e-5)
    np.testing.assert_allclose(got["mean"], inv.mean(), rtol=1e-5)
    np.testing.assert_allclose(got["weighted"], np.sum(np.abs(x) * inv) / np.sum(np.abs(x)),
                               rtol=1e-5)
    assert got["min"] == np.float32(inv.min()) and got["max"] == np.float32(inv.max())
    assert got["bitwidth"] == sum(ints) and got["modular"] == sum(i % 7 for i in ints) % 7
    np.testing.assert_allclose(got["aggregate"], 2 * inv.sum(), rtol=1e-5)
    assert np.isnan(got["nan_mean"])  # Every real client's NaN counts, and only theirs.
    assert len(got["mapped"]) == len(got["keys"]) == len(got["evals"]) == n
    np.testing.assert_array_equal(
        got["keys"], [jax.random.uniform(jax.random.fold_in(key, i), ()) for i in range(n)])
  assert padded.programs_traced == 2  # 16 and 18 clients.
  assert unpadded.programs_traced == len(SIZES)


def test_off_by_default_with_a_hint_once_cohort_sizes_keep_compiling():
  rng = np.random.default_rng(1)
  runtime = fx.runtime.vectorized()
  key = np.asarray(jax.random.PRNGKey(0))
  with runtime:
    assert "client_mask: False" in fx.runtime.explain(_every_intrinsic, *_cohort(rng, 5), key)
    with warnings.catch_warnings():
      warnings.simplefilter("error")
      for n in (5, 6, 5, 7):  # Three sizes: no hint yet.
        _every_intrinsic(*_cohort(rng, n), key)
    with pytest.warns(RecompilationWarning, match=r"4 cohort sizes.*pad_clients=True"):
      _every_intrinsic(*_cohort(rng, 9), key)
  with fx.runtime.vectorized(pad_clients=True):
    assert "clients padded: 11 real of 16" in fx.runtime.explain(_every_intrinsic,
                                                                 *_cohort(rng, 11), key)


def test_a_computation_that_stacks_runs_unpadded_with_its_results():
  @fx.federated_computation(fx.FederatedType(np.float32, C))
  def stacked(x):
    return fx.federated_stack(x), fx.federated_sum(x)

  runtime = fx.runtime.vectorized(pad_clients=True)
  rng = np.random.default_rng(2)
  with runtime:
    for n in (4, 6, 6, 9):
      x = rng.normal(size=n).astype(np.float32)
      rows, total = stacked(list(x))
      np.testing.assert_array_equal(rows, x)
      np.testing.assert_allclose(total, x.sum(), rtol=1e-5)
  assert runtime.programs_traced == 3  # One per size: padding refused once, not retried.


def test_robust_median_over_varying_cohorts_is_unpadded_and_exact():
  process = fx.aggregators.MedianFactory().create(fx.TensorType(np.float32, [2])) if hasattr(
      fx.aggregators, "MedianFactory") else None
  if process is None:
    pytest.skip("no MedianFactory")
  rng = np.random.default_rng(3)
  with fx.runtime.vectorized(pad_clients=True):
    state = process.initialize()
    for n in (3, 5, 8):
      values = rng.normal(size=(n, 2)).astype(np.float32)
      out = process.next(state, list(values))
      np.testing.assert_allclose(out.result, np.median(values, axis=0), rtol=1e-6)


# --- FedAvg and DP over Poisson-sized cohorts -----------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_clients():
  from federax.simulation.baselines import synthetic
  train, _ = fx.simulation.datasets.synthetic.load_data(1.0, 1.0, num_clients=12, seed=0)
  data = [train.create_dataset(c).masked_batch(10).cache() for c in train.client_ids]
  return synthetic, data


def _rounds(runtime, process, data, rounds=3):
  """Poisson cohorts (expected 4 of 12) over `rounds` rounds: each round's weights."""
  rng = np.random.default_rng(7)
  out = []
  with runtime:
    state = process.initialize()
    for _ in range(rounds):
      cohort = [d for d in data if rng.random() < 0.3] or data[:1]
      state, metrics = process.next(state, cohort)
      out.append((process.get_model_weights(state).trainable, metrics))
  return out


@pytest.mark.slow
@pytest.mark.parametrize("aggregator", [
    None,
    # The adaptive clip runs gaussian_fixed's clipped sum and noise, and a noised count besides.
    lambda: DPF.gaussian_adaptive(0.5, 4, initial_l2_norm_clip=0.05,
                                  clipped_count_stddev=1.0, seed=4),
], ids=["fedavg", "dp-adaptive"])
def test_poisson_cohorts_equal_the_sequential_and_unpadded_runs(synthetic_clients, aggregator):
  synthetic, data = synthetic_clients
  model = synthetic.create_logistic_regression_model()
  kwargs = {} if aggregator is None else {"model_aggregator": aggregator()}
  build = fx.learning.algorithms.build_unweighted_fed_avg if aggregator else (
      fx.learning.algorithms.build_weighted_fed_avg)
  process = build(model, fx.learning.optimizers.build_sgdm(0.1), **kwargs)
  padded = fx.runtime.vectorized(pad_clients=True)
  got = _rounds(padded, process, data)
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  # Equal to rounding: XLA orders a client-axis reduction of narrow rows by the axis length.
  jax.tree.map(close, got, _rounds(fx.runtime.vectorized(), process, data))
  jax.tree.map(close, got, _rounds(fx.runtime.sequential(), process, data))
  # initialize, then 16 padded clients; and a program per doubling of the longest client
  # dataset (sequence padding, independent of cohort padding).
  assert padded.programs_traced <= 4
