"""`fx.privacy.PrivacyAccountant` with accountant='pld': epsilon against dp_accounting's
PLDAccountant, round by round and restored at once (the same tests as test_accountant.py's)."""

import dp_accounting as dpa
import pytest

from federax.privacy import PrivacyAccountant, Sampling
from tests.privacy import test_accountant as rdp_tests
from tests.privacy.test_accountant import pld_reference, rdp_reference


@pytest.mark.parametrize("q, z, delta", [(0.05, 0.9, 1e-5), (0.2, 2.0, 1e-7)])
def test_pld_epsilon_round_by_round_equals_dp_accountings_composed_at_once(q, z, delta):
  accountant = PrivacyAccountant(dpa.GaussianDpEvent(z), Sampling.poisson(q, 1000),
                                 accountant="pld", delta=delta)
  event = dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(z))
  by_round = []
  for _ in range(6):
    by_round.append(accountant.compose().epsilon)  # One convolution per round.
  for rounds in (1, 6):
    # dp_accounting composes T rounds at once (self-composition by FFT); the two discretized
    # compositions agree to far below any figure anyone reports.
    assert by_round[rounds - 1] == pytest.approx(pld_reference(event, rounds, delta),
                                                 rel=1e-6)
  # PLD is tighter than RDP's bound.
  assert by_round[-1] < rdp_reference(event, 6, delta)



def test_full_participation_is_the_gaussian_composed():
  rdp_tests.test_full_participation_is_the_gaussian_composed("pld")


def test_adaptive_clipping_accounts_the_quantile_estimators_noise():
  rdp_tests.test_adaptive_clipping_accounts_the_quantile_estimators_noise("pld")


def test_restoring_k_rounds_at_once_gives_the_epsilon_of_k_rounds_one_by_one():
  rdp_tests.test_restoring_k_rounds_at_once_gives_the_epsilon_of_k_rounds_one_by_one("pld",
                                                                                      1e-7)
