"""`fx.privacy.calibrate`: TFF's tutorial figure, agreement with
`dp_accounting.calibrate_dp_mechanism` on the same events, and targets out of reach."""

import math

import dp_accounting as dpa
import pytest

import federax as fx
from federax.privacy import PrivacyAccountant, Sampling


def test_tff_tutorial_120_clients_at_noise_multiplier_1_2_for_2_1e5_dp():
  # TFF 0.87's "Differential privacy in TFF": 3,383 clients, 100 rounds, Poisson sampling, RDP,
  # noise multiplier = 0.01 * clients per round, searched over [1, 3383] with
  # calibrate_dp_mechanism(discrete=True). It prints "use 120 clients with noise multiplier 1.2".
  def tff_event(clients_per_round):
    q = clients_per_round / 3383
    sampled = dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(clients_per_round * 0.01))
    return dpa.SelfComposedDpEvent(sampled, 100)

  tff_answer = dpa.calibrate_dp_mechanism(dpa.rdp.RdpAccountant, tff_event, 2, 1e-5,
                                          dpa.ExplicitBracketInterval(1, 3383), discrete=True)
  found = fx.privacy.calibrate(2.0, 1e-5, rounds=100, population=3383,
                               noise_to_clients_ratio=0.01)
  assert found.clients_per_round == tff_answer == 120
  assert found.noise_multiplier == pytest.approx(1.2)
  assert found.sampling_rate == pytest.approx(120 / 3383)
  assert found.epsilon <= 2.0 and found.delta == 1e-5
  # One client fewer (with its noise) misses the target: 120 is the smallest.
  assert dpa.rdp.RdpAccountant().compose(tff_event(119)).get_epsilon(1e-5) > 2.0
  # The accountant training with it reports the same epsilon after 100 rounds.
  accountant = PrivacyAccountant(dpa.GaussianDpEvent(found.noise_multiplier),
                                 Sampling.poisson(found.sampling_rate, 3383), delta=1e-5)
  assert accountant.restore(100).epsilon == pytest.approx(found.epsilon, rel=1e-10)


def test_noise_multiplier_agrees_with_calibrate_dp_mechanism(kind="rdp", rounds=50, tol=None):
  q, target, delta = 0.05, 3.0, 1e-6

  def fresh():
    return dpa.rdp.RdpAccountant()

  def event(z):
    return dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(z)),
                                   rounds)

  expected = dpa.calibrate_dp_mechanism(fresh, event, target, delta, tol=tol)
  found = fx.privacy.calibrate(target, delta, rounds=rounds, population=2000,
                               clients_per_round=100, accountant=kind, tol=tol)
  assert found.noise_multiplier == pytest.approx(expected, abs=tol or 1e-6)
  assert found.epsilon <= target
  accountant = PrivacyAccountant(dpa.GaussianDpEvent(found.noise_multiplier),
                                 Sampling.poisson(q, 2000), accountant=kind, delta=delta)
  assert accountant.restore(rounds).epsilon == pytest.approx(found.epsilon, rel=1e-6)
  assert accountant.epsilon == pytest.approx(target, rel=1e-2)  # The budget is used up.


def test_largest_cohort_for_a_noise_multiplier():
  found = fx.privacy.calibrate(1.0, 1e-5, rounds=200, population=5000, noise_multiplier=1.0)
  k = found.clients_per_round

  def epsilon(cohort):
    event = dpa.PoissonSampledDpEvent(cohort / 5000, dpa.GaussianDpEvent(1.0))
    return dpa.rdp.RdpAccountant().compose(event, 200).get_epsilon(1e-5)

  assert 1 < k < 5000 and epsilon(k) <= 1.0 < epsilon(k + 1)


def test_pld_with_full_participation_matches_the_analytic_gaussian():
  # T Gaussians of z are one of z / sqrt(T); the PLD of a Gaussian is exact up to discretization.
  found = fx.privacy.calibrate(1.0, 1e-5, rounds=16, population=100, sampling="full",
                               accountant="pld", tol=1e-4)
  assert found.clients_per_round == 100 and found.sampling_rate == 1.0
  assert found.noise_multiplier / math.sqrt(16) == pytest.approx(
      dpa.get_sigma_gaussian(1.0, 1e-5), rel=1e-3)
  assert found.epsilon <= 1.0


def test_unreachable_targets_are_refused_with_the_rounds_named():
  with pytest.raises(ValueError, match="cannot be reached in 100000 rounds") as info:
    fx.privacy.calibrate(0.5, 1e-5, rounds=100000, population=100, noise_multiplier=0.5)
  assert "even with 1 client per round" in str(info.value)
  with pytest.raises(ValueError, match="cannot be reached in 1000 rounds"):
    fx.privacy.calibrate(0.1, 1e-5, rounds=1000, population=50, noise_to_clients_ratio=0.001)


def test_calibrate_misuse():
  with pytest.raises(ValueError, match=r"target_delta must be in \(0, 1\)"):
    fx.privacy.calibrate(1.0, 1.0, rounds=10, population=100, clients_per_round=10)
  with pytest.raises(ValueError, match="leave exactly one"):
    fx.privacy.calibrate(1.0, 1e-5, rounds=10, population=100)
  with pytest.raises(ValueError, match="leave exactly one"):
    fx.privacy.calibrate(1.0, 1e-5, rounds=10, population=100, noise_multiplier=1.0,
                         clients_per_round=10)
  with pytest.raises(ValueError, match="noise_multiplier must be a number >= 0"):
    fx.privacy.calibrate(1.0, 1e-5, rounds=10, population=100, noise_multiplier=-1.0)
  with pytest.raises(ValueError, match="target_epsilon must be a positive"):
    fx.privacy.calibrate(0.0, 1e-5, rounds=10, population=100, clients_per_round=10)
  with pytest.raises(ValueError, match="exceeds the population"):
    fx.privacy.calibrate(1.0, 1e-5, rounds=10, population=100, clients_per_round=101)
  with pytest.raises(ValueError, match="PLD accountant does not support"):
    fx.privacy.calibrate(1.0, 1e-5, rounds=10, population=100, clients_per_round=10,
                         sampling="uniform", accountant="pld")
