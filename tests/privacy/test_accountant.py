"""`fx.privacy.PrivacyAccountant` and `dp_event_of`: RDP epsilon against dp_accounting's,
composed round by round; the sampling's events; resumption; misuse (PLD: test_pld.py)."""

import math

import dp_accounting as dpa
import pytest

import federax as fx
from federax.privacy import PrivacyAccountant, Sampling

REPLACE_ONE = dpa.NeighboringRelation.REPLACE_ONE


def rdp_reference(event, rounds, delta, relation=dpa.NeighboringRelation.ADD_OR_REMOVE_ONE):
  """dp_accounting's own figure: a fresh accountant, the event composed `rounds` times."""
  return dpa.rdp.RdpAccountant(neighboring_relation=relation).compose(
      event, rounds).get_epsilon(delta)


def pld_reference(event, rounds, delta):
  return dpa.pld.PLDAccountant().compose(event, rounds).get_epsilon(delta)


@pytest.mark.parametrize("q, z", [(0.01, 0.8), (0.1, 1.5), (0.3, 4.0)])
def test_rdp_epsilon_equals_dp_accountings_for_a_grid(q, z):
  population = 1000
  accountant = PrivacyAccountant(dpa.GaussianDpEvent(z), Sampling.poisson(q, population),
                                 delta=1e-5)
  event = dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(z))
  for rounds in (1, 7, 30):
    accountant.compose(rounds - accountant.rounds)  # One round or several: the same curve.
    for delta in (1e-5, 1e-8):
      other = PrivacyAccountant(dpa.GaussianDpEvent(z), Sampling.poisson(q, population),
                                delta=delta).restore(rounds)
      assert other.epsilon == pytest.approx(rdp_reference(event, rounds, delta), rel=1e-10)
    assert accountant.epsilon == pytest.approx(rdp_reference(event, rounds, 1e-5), rel=1e-10)
  # Epsilon grows with the rounds and, at the same rounds, with less noise.
  assert accountant.epsilon_after(30) > accountant.epsilon_after(7) > 0


def test_rdp_epsilon_at_other_deltas_matches_too():
  accountant = PrivacyAccountant(dpa.GaussianDpEvent(1.1), Sampling.poisson(0.05, 500),
                                 delta=1e-7)
  event = dpa.PoissonSampledDpEvent(0.05, dpa.GaussianDpEvent(1.1))
  assert accountant.compose(12).epsilon == pytest.approx(rdp_reference(event, 12, 1e-7),
                                                         rel=1e-10)
  assert accountant.delta == 1e-7


def test_full_participation_is_the_gaussian_composed(kind="rdp"):
  accountant = PrivacyAccountant(dpa.GaussianDpEvent(3.0), None, population=50,
                                 accountant=kind, delta=1e-6)
  reference = rdp_reference if kind == "rdp" else pld_reference
  for rounds in (1, 4, 20):
    assert accountant.epsilon_after(rounds) == pytest.approx(
        reference(dpa.GaussianDpEvent(3.0), rounds, 1e-6), rel=1e-9)
  # T Gaussians of z are one Gaussian of z / sqrt(T): the exact (analytic) calibration agrees.
  sigma = dpa.get_sigma_gaussian(accountant.epsilon_after(20), 1e-6)
  assert 3.0 / math.sqrt(20) == pytest.approx(sigma, rel=5e-3 if kind == "pld" else 0.5)


def test_uniform_sampling_is_accounted_for_replace_one_neighbors_at_twice_the_sensitivity():
  ids = [f"c{i}" for i in range(200)]
  sampler = fx.simulation.UniformSampler(ids, clients_per_round=20, seed=0)
  accountant = PrivacyAccountant(dpa.GaussianDpEvent(2.0), sampler, delta=1e-5)
  assert accountant.sampling == Sampling.uniform(20, 200)
  # Replacing one client moves a sum clipped at C by up to 2C: the noise multiplier, over that
  # sensitivity, is z / 2 (dp_accounting's REPLACE_ONE figures are for sensitivity 1).
  halved = dpa.SampledWithoutReplacementDpEvent(200, 20, dpa.GaussianDpEvent(1.0))
  assert accountant.compose(10).epsilon == pytest.approx(
      rdp_reference(halved, 10, 1e-5, REPLACE_ONE), rel=1e-10)
  unhalved = dpa.SampledWithoutReplacementDpEvent(200, 20, dpa.GaussianDpEvent(2.0))
  assert accountant.epsilon > 1.5 * rdp_reference(unhalved, 10, 1e-5, REPLACE_ONE)


def test_adaptive_clipping_accounts_the_quantile_estimators_noise(kind="rdp"):
  factory = fx.learning.dp_aggregator(noise_multiplier=1.0, clients_per_round=50, seed=0)
  event = fx.privacy.dp_event_of(factory)
  value, count = event.events
  assert value.noise_multiplier > 1.0  # The values get more noise to pay for the count.
  assert count.noise_multiplier == pytest.approx(2 * 0.05 * 50)  # stddev 2.5, sensitivity 0.5
  accountant = PrivacyAccountant(event, Sampling.poisson(0.05, 1000), accountant=kind,
                                 delta=1e-5).compose(5)
  reference = rdp_reference if kind == "rdp" else pld_reference
  # Together they are one Gaussian of the total noise multiplier 1.0 ...
  total = dpa.PoissonSampledDpEvent(0.05, dpa.GaussianDpEvent(1.0))
  assert accountant.epsilon == pytest.approx(reference(total, 5, 1e-5), rel=1e-6)
  # ... which costs more than the values' noise alone would.
  values_only = dpa.PoissonSampledDpEvent(0.05, value)
  assert accountant.epsilon > 1.01 * reference(values_only, 5, 1e-5)
  if kind == "rdp":  # dp_accounting's RDP takes the composed event itself.
    composed = dpa.PoissonSampledDpEvent(0.05, event)
    assert accountant.epsilon == pytest.approx(rdp_reference(composed, 5, 1e-5), rel=1e-10)


def test_restoring_k_rounds_at_once_gives_the_epsilon_of_k_rounds_one_by_one(kind="rdp",
                                                                            rel=0.0):
  def make():
    return PrivacyAccountant(dpa.GaussianDpEvent(1.0), Sampling.poisson(0.05, 400),
                             accountant=kind)
  stepwise = make()
  for _ in range(6):
    stepwise.compose()
  resumed = make().restore(6)
  assert resumed.rounds == stepwise.rounds == 6
  assert resumed.epsilon == pytest.approx(stepwise.epsilon, rel=rel, abs=0)
  assert resumed.compose().epsilon == pytest.approx(stepwise.compose().epsilon, rel=rel, abs=0)
  assert make().epsilon == 0.0  # No round, no privacy spent.


def test_default_delta_is_one_over_population_to_the_1_1():
  accountant = PrivacyAccountant(dpa.GaussianDpEvent(1.0), Sampling.poisson(0.1, 3383))
  assert accountant.delta == pytest.approx(3383**-1.1)
  assert accountant.delta < 1 / 3383


def test_no_noise_spends_infinite_epsilon():
  factory = fx.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(0.0, 10, 1.0, seed=0)
  accountant = PrivacyAccountant.from_factory(factory, Sampling.poisson(0.1, 100))
  assert math.isinf(accountant.compose().epsilon)


def test_dp_event_of_finds_the_dp_factory_inside_wrappers():
  fixed = fx.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(1.3, 10, 0.5, seed=0)
  assert fx.privacy.dp_event_of(fixed) == dpa.GaussianDpEvent(1.3)
  clipped = fx.aggregators.clipping_factory(2.0, fixed)
  zeroed = fx.aggregators.zeroing_factory(5.0, clipped)
  assert fx.privacy.dp_event_of(zeroed) == dpa.GaussianDpEvent(1.3)
  adaptive = fx.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(1.0, 40, seed=0)
  wrapped = fx.learning.dp_aggregator(1.0, 40, zeroing=True, seed=0)
  assert fx.privacy.dp_event_of(wrapped) == adaptive.dp_event()


def test_dp_event_of_a_factory_without_noise_or_not_a_factory():
  with pytest.raises(ValueError, match="adds no differential privacy noise"):
    fx.privacy.dp_event_of(fx.learning.robust_aggregator(weighted=False))
  with pytest.raises(TypeError, match="expects an aggregation factory"):
    fx.privacy.dp_event_of("gaussian")


@pytest.mark.parametrize("delta", [1.0, 1.5, 0.0, -1e-5])
def test_delta_outside_0_1_is_refused(delta):
  with pytest.raises(ValueError, match=r"delta must be in \(0, 1\)"):
    PrivacyAccountant(dpa.GaussianDpEvent(1.0), Sampling.poisson(0.1, 100), delta=delta)


def test_unreachable_target_epsilon_is_refused():
  with pytest.raises(ValueError, match="target epsilon cannot be reached: one round already"):
    PrivacyAccountant(dpa.GaussianDpEvent(0.5), Sampling.poisson(0.5, 100), delta=1e-5,
                      target_epsilon=0.1)


def test_poisson_accounting_with_a_uniform_fixed_size_sampler_is_refused():
  ids = [str(i) for i in range(100)]
  accountant = PrivacyAccountant(dpa.GaussianDpEvent(1.0), Sampling.poisson(0.1, 100))
  with pytest.raises(ValueError, match="assumes another sampling") as info:
    accountant.check_sampler(fx.simulation.UniformSampler(ids, 10, seed=0))
  assert "Poisson sampling at rate q = 0.1" in str(info.value)
  assert "uniform sampling of 10 of 100" in str(info.value)
  accountant.check_sampler(fx.simulation.PoissonSampler(ids, 0.1, seed=3))  # Matches.
  with pytest.raises(ValueError, match="rate, cohort or population differ"):
    accountant.check_sampler(fx.simulation.PoissonSampler(ids, 0.2, seed=3))
  with pytest.raises(ValueError, match="assumes another sampling"):
    accountant.check_sampler(None)  # Every client, every round.


def test_negative_noise_multiplier_is_refused():
  with pytest.raises(ValueError, match="noise_multiplier must be a finite float >= 0"):
    fx.learning.dp_aggregator(-1.0, 10)
  with pytest.raises(ValueError, match="negative noise multiplier"):
    PrivacyAccountant(dpa.GaussianDpEvent(-1.0), Sampling.poisson(0.1, 100))


def test_other_misuse():
  event = dpa.GaussianDpEvent(1.0)
  ids = [str(i) for i in range(10)]
  with pytest.raises(ValueError, match="with replacement cannot be accounted"):
    PrivacyAccountant(event, fx.simulation.UniformSampler(ids, 3, replace=True, seed=0))
  with pytest.raises(ValueError, match="needs the population"):
    PrivacyAccountant(event, None)
  with pytest.raises(TypeError, match="cannot tell how this object samples"):
    PrivacyAccountant(event, object())
  with pytest.raises(ValueError, match="unknown accountant"):
    PrivacyAccountant(event, Sampling.full(10), accountant="moments")
  with pytest.raises(ValueError, match="PLD accountant does not support"):
    PrivacyAccountant(event, Sampling.uniform(3, 10), accountant="pld")
  with pytest.raises(TypeError, match="expects a dp_accounting DpEvent"):
    PrivacyAccountant(1.0, Sampling.full(10))
  with pytest.raises(ValueError, match="rate must be a probability"):
    Sampling.poisson(1.5, 10)
  with pytest.raises(ValueError, match="clients_per_round must be an int in"):
    Sampling.uniform(11, 10)


@pytest.mark.parametrize("kind", ["rdp", "pld"])
@pytest.mark.parametrize("factory", [
    lambda: fx.learning.dp_aggregator(0.0, 10),
    lambda: fx.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(0.0, 10, 1.0)],
    ids=["adaptive", "fixed"])
def test_no_noise_spends_an_infinite_epsilon(kind, factory):
  sampler = fx.simulation.PoissonSampler([str(i) for i in range(100)], 0.1, seed=0)
  accountant = fx.privacy.PrivacyAccountant.from_factory(factory(), sampler, accountant=kind)
  assert accountant.epsilon == 0.0  # No round yet.
  assert accountant.compose().epsilon == math.inf
