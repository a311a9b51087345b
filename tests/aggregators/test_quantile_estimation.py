"""PrivateQuantileEstimationProcess.no_noise against a NumPy re-computation of the geometric
update (Andrew et al. 2021), on both runtimes; its types as TFF prints them; its misuse."""

import math
import re

import numpy as np
import pytest

from federax import aggregators

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
    (lambda: PQEP(object()), TypeError, ["not available in federax yet", "no_noise"]),
])
def test_misuse_is_a_clear_error(make, error, words):
  with pytest.raises(error) as info:
    make()
  for word in words:
    assert word in str(info.value), (word, str(info.value))
  assert re.search(r"at .*test_quantile_estimation\.py:\d+", str(info.value))
