"""PrivateQuantileEstimationProcess.no_noise against a NumPy re-computation of the geometric
update (Andrew et al. 2021), on both runtimes; its types as TFF prints them; its misuse."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from federax import aggregators
from federax.aggregators import quantile_estimation as qe

PQEP = aggregators.PrivateQuantileEstimationProcess
STATE = ("<<current_estimate=float32,target_quantile=float32,learning_rate=float32,"
         "below_estimate_state=<>>,<>>@SERVER")


def np_trajectory(initial, target, rate, rounds, multiplier=1.0, increment=0.0):
  """The reported value after each round: C <- C * exp(-rate * (frac(x <= C) - target))."""
  estimate, reported = initial, []
  for values in rounds:
    below = np.mean(np.asarray(values, np.float64) <= estimate)
    estimate = estimate * math.exp(-rate * (below - target))
    reported.append(multiplier * estimate + increment)
  return reported


@pytest.mark.parametrize("secure", [False, True])
def test_trajectory_follows_the_update_rule(runtime, secure):
  rng = np.random.default_rng(3)
  # Ten rounds, seven clients each; some values equal the estimate's start (<= counts them).
  rounds = [rng.lognormal(0.5, 1.0, size=7).astype(np.float32) for _ in range(10)]
  rounds[0][:2] = 2.0
  process = PQEP.no_noise(initial_estimate=2.0, target_quantile=0.7, learning_rate=0.4,
                          multiplier=1.5, increment=0.25, secure_estimation=secure)
  state, reported = process.initialize(), []
  np.testing.assert_allclose(process.report(state), 1.5 * 2.0 + 0.25)
  for values in rounds:
    state = process.next(state, list(values))
    reported.append(float(process.report(state)))
  expected = np_trajectory(2.0, 0.7, 0.4, rounds, 1.5, 0.25)
  np.testing.assert_allclose(reported, expected, rtol=1e-5)
  assert len(set(np.round(reported, 5))) == len(reported)  # it moved every round


def test_converges_near_the_median_of_a_stationary_input():
  rng = np.random.default_rng(0)
  process = PQEP.no_noise(initial_estimate=0.1, target_quantile=0.5, learning_rate=0.2)
  state, estimates = process.initialize(), []
  for _ in range(80):
    state = process.next(state, list(rng.uniform(2.0, 6.0, size=40).astype(np.float32)))
    estimates.append(float(process.report(state)))
  # From 0.1 it grows geometrically, then hovers around the median 4.0.
  assert estimates[10] < 3.0
  assert all(abs(e - 4.0) < 0.6 for e in estimates[-20:]), estimates[-20:]
  assert abs(np.mean(estimates[-20:]) - 4.0) < 0.25


def test_state_and_types_print_as_tff():
  process = PQEP.no_noise(1.0, 0.5, 0.2)
  assert isinstance(process, PQEP)
  assert str(process.next.type_signature) == (
      f"(<state={STATE},value={{float32}}@CLIENTS> -> {STATE})")
  assert str(process.report.type_signature) == f"({STATE} -> float32@SERVER)"
  for mapped in (PQEP.no_noise(1.0, 0.5, 0.2, multiplier=2.0, increment=1.0),
                 PQEP.no_noise(1.0, 0.5, 0.2, secure_estimation=True)):
    assert str(mapped.next.type_signature) == str(process.next.type_signature)
    assert str(mapped.report.type_signature) == f"({STATE} -> float32@SERVER)"
  state = process.initialize()
  assert state[0]["target_quantile"] == np.float32(0.5)
  assert state[0]["learning_rate"] == np.float32(0.2)
  assert state[0]["below_estimate_state"] == () and state[1] == ()


def test_noised_without_noise_equals_no_noise_when_the_count_is_the_expected_one(runtime):
  """tfp's noised query normalizes by the expected count: with 8 of 8 expected clients and no
  noise, `(#below - 4) / 8 + 1/2` is `#below / 8` exactly, so the trajectories are equal."""
  rng = np.random.default_rng(7)
  rounds = [rng.lognormal(0.0, 1.0, size=8).astype(np.float32) for _ in range(6)]
  noised = PQEP(aggregators.QuantileEstimatorQuery(1.0, 0.3, 0.5, 0.0, 8,
                                                   geometric_update=True, seed=0))
  exact = PQEP.no_noise(1.0, 0.3, 0.5)
  noised_state, exact_state = noised.initialize(), exact.initialize()
  for values in rounds:
    noised_state = noised.next(noised_state, list(values))
    exact_state = exact.next(exact_state, list(values))
    assert float(noised.report(noised_state)) == float(exact.report(exact_state))


def test_noised_estimate_follows_the_noised_fraction(runtime):
  """C <- C exp(-rate (clamp((#below - n/2 + s N_t) / expected + 1/2) - q)), arithmetic too."""
  rng = np.random.default_rng(8)
  rounds = [rng.uniform(0.0, 4.0, size=6).astype(np.float32) for _ in range(5)]
  for geometric in (True, False):
    query = aggregators.QuantileEstimatorQuery(2.0, 0.5, 0.3, 1.0, 10.0,
                                               geometric_update=geometric, seed=9)
    process = PQEP(query)
    state, key, estimate = process.initialize(), qe.seeded_key(9, "QuantileEstimatorQuery"), 2.0
    for values in rounds:
      state = process.next(state, list(values))
      key, round_key = jax.random.split(key)
      noise = float(jax.random.normal(jax.random.fold_in(round_key, 0), (), jnp.float32))
      fraction = (np.sum(values <= estimate) - 3.0 + noise) / 10.0 + 0.5
      step = 0.3 * (min(1.0, max(0.0, fraction)) - 0.5)
      estimate = estimate * math.exp(-step) if geometric else estimate - step
      np.testing.assert_allclose(float(process.report(state)), estimate, rtol=1e-5)


def test_noised_types_print_as_tff_with_the_key():
  process = PQEP(aggregators.QuantileEstimatorQuery(1.0, 0.5, 0.2, 0.5, 4.0, True, seed=0))
  # TFF 0.87 prints below_estimate_state=<numerator_state=<l2_norm_clip=float32,
  # stddev=float32>,denominator=float32>; federax adds the noise's key.
  state = ("<<current_estimate=float32,target_quantile=float32,learning_rate=float32,"
           "below_estimate_state=<numerator_state=<l2_norm_clip=float32,stddev=float32,"
           "noise_key=uint32[2]>,denominator=float32>>,<>>@SERVER")
  assert str(process.next.type_signature) == (
      f"(<state={state},value={{float32}}@CLIENTS> -> {state})")
  assert str(process.report.type_signature) == f"({state} -> float32@SERVER)"


def test_no_clients_make_the_estimate_nan_as_in_tff():
  process = PQEP.no_noise(1.0, 0.5, 0.2)
  assert np.isnan(process.report(process.next(process.initialize(), [])))


@pytest.mark.parametrize("make, error, words", [
    (lambda: PQEP.no_noise(0.0, 0.5, 0.2), ValueError, ["initial_estimate must be a float > 0"]),
    (lambda: PQEP.no_noise(1.0, 1.5, 0.2), ValueError,
     ["target_quantile must be a float in [0, 1]", "1.5"]),
    (lambda: PQEP.no_noise(1.0, 0.5, -0.1), ValueError, ["learning_rate must be a float > 0"]),
    (lambda: PQEP.no_noise(1.0, 0.5, 0.2, multiplier=0.0), ValueError, ["multiplier"]),
    (lambda: PQEP.no_noise(1.0, 0.5, 0.2, increment=-1.0), ValueError,
     ["increment must be a float >= 0"]),
    (lambda: PQEP.no_noise("1", 0.5, 0.2), TypeError, ["initial_estimate must be a float"]),
    (lambda: PQEP.no_noise(1.0, 0.5, 0.2, secure_estimation=1), TypeError,
     ["secure_estimation must be a bool"]),
    (lambda: PQEP(object()), TypeError, ["QuantileEstimatorQuery(...)", "no_noise"]),
    (lambda: aggregators.QuantileEstimatorQuery(1.0, 0.5, 0.2, -0.5, 10), ValueError,
     ["below_estimate_stddev must be a float >= 0"]),
    (lambda: aggregators.QuantileEstimatorQuery(0.0, 0.5, 0.2, 0.5, 10, geometric_update=True),
     ValueError, ["initial_estimate must be a float > 0"]),
    (lambda: aggregators.QuantileEstimatorQuery(1.0, 0.5, 0.2, 0.5, 10, seed="0"), TypeError,
     ["seed must be an int or None"]),
])
def test_misuse_is_a_clear_error(make, error, words):
  with pytest.raises(error) as info:
    make()
  for word in words:
    assert word in str(info.value), (word, str(info.value))
  assert re.search(r"at .*test_quantile_estimation\.py:\d+", str(info.value))
