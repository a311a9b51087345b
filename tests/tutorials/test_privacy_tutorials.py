"""TFF's "Differential privacy in TFF" tutorial, ported as a notebook: what it prints, checked.

The notebook runs once per module in FAST mode (one LEAF sample, 1 round per noise
multiplier). Its epsilons are recomputed here with dp_accounting from the printed population
and settings (an independent computation, not the accountant's), its calibration must give
TFF's "120 clients with noise multiplier 1.2", and its accuracies must be probabilities that a
2-round model reaches (above chance for the noiseless run is not promised in 2 rounds).
"""

from __future__ import annotations

import math
import re

import dp_accounting
import pytest

from tutorials import notebooks

pytestmark = pytest.mark.slow  # Runs a notebook in a fresh process on real data.

NAME = "federated_learning_with_differential_privacy"
ROUNDS, CLIENTS_PER_ROUND, DELTA = 1, 50, 1e-5
NOISE_MULTIPLIERS = [0.0, 0.5, 0.75, 1.0]
_NUMBER = r"([0-9.]+|inf)"


@pytest.fixture(scope="module")
def printed(tmp_path_factory, shared_data):
  return notebooks.run(NAME, tmp_path_factory.mktemp(NAME), timeout=1200)


def rdp_epsilon(q: float, z: float, rounds: int, delta: float = DELTA) -> float:
  event = dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds)
  return dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(delta)


def population(printed: str) -> int:
  return int(re.search(r"^(\d+) training clients$", printed, re.M)[1])


def test_sweep_prints_accuracy_and_epsilon_per_noise_multiplier(printed):
  n = population(printed)
  assert 100 <= n <= 120, n  # FAST mode: LEAF's 'flic' sample, its digit writers.
  lines = re.findall(rf"^Noise multiplier ([0-9.]+): accuracy ([0-9.]+), epsilon {_NUMBER} "
                     rf"\(delta 1e-05, (\d+) rounds, q = ([0-9.]+)\)$", printed, re.M)
  assert [float(z) for z, *_ in lines] == NOISE_MULTIPLIERS
  for z, accuracy, epsilon, rounds, q in lines:
    z, q = float(z), float(q)
    assert int(rounds) == ROUNDS and q == pytest.approx(CLIENTS_PER_ROUND / n, abs=1e-4)
    assert 0.0 <= float(accuracy) <= 1.0
    if z == 0:
      assert epsilon == "inf"  # No noise, no guarantee.
    else:
      assert float(epsilon) == pytest.approx(rdp_epsilon(CLIENTS_PER_ROUND / n, z, ROUNDS),
                                             rel=1e-3)
  epsilons = [float(e) for _, _, e, *_ in lines[1:]]
  assert epsilons == sorted(epsilons, reverse=True)  # More noise, less privacy spent.


def test_evaluations_every_run(printed):
  rounds = [int(r) for r in re.findall(r"^Round +(\d+): \{", printed, re.M)]
  assert rounds == [0, ROUNDS] * len(NOISE_MULTIPLIERS)
  table = re.findall(r"^ +(\d+) +([0-9.]+) +([0-9.]+) +([0-9.]+)$", printed, re.M)
  assert len(table) == 2 * len(NOISE_MULTIPLIERS)
  for _, _, accuracy, loss in table:
    assert 0.0 <= float(accuracy) <= 1.0 and 0.0 < float(loss) < 10.0


def test_accountant_agrees_with_the_computation_by_hand(printed):
  lines = re.findall(r"^Noise multiplier ([0-9.]+): epsilon ([0-9.]+) by fx.privacy, "
                     r"([0-9.]+) by dp_accounting \((\w+)\)$", printed, re.M)
  assert [float(z) for z, *_ in lines] == NOISE_MULTIPLIERS[1:]
  for _, ours, by_hand, verdict in lines:
    assert verdict == "agree" and float(ours) == pytest.approx(float(by_hand), rel=1e-5)
  assert "Noise multiplier 0.0: no noise, no privacy (epsilon inf)" in printed


def test_calibration_gives_tffs_120_clients_at_noise_multiplier_1_2(printed):
  by_hand = "To get (2, 1e-05)-DP, use 120 clients with noise multiplier 1.2."
  assert by_hand in printed.splitlines()
  ours = re.search(r"^To get \(2, 1e-05\)-DP, use 120 clients with noise multiplier 1.2 "
                   r"\(epsilon ([0-9.]+)\)\.$", printed, re.M)
  assert ours, printed[-2000:]
  epsilon = float(ours[1])
  assert epsilon <= 2.0 and epsilon == pytest.approx(rdp_epsilon(120 / 3383, 1.2, 100), rel=1e-3)


def test_final_run_reports_the_training_loops_privacy_metric(printed):
  n = population(printed)
  final = re.search(r"^Final model: accuracy ([0-9.]+), user-level \(([0-9.]+), 1e-05\)-DP "
                    r"after (\d+) rounds of (\d+) expected clients of (\d+)$", printed, re.M)
  assert final, printed[-2000:]
  accuracy, epsilon, rounds, clients, total = final.groups()
  assert int(rounds) == ROUNDS and int(total) == n and int(clients) == min(120, n // 2)
  assert 0.0 <= float(accuracy) <= 1.0
  assert float(epsilon) == pytest.approx(rdp_epsilon(int(clients) / n, 1.2, ROUNDS), rel=1e-3)
  assert not math.isinf(float(epsilon))
