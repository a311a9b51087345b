"""The SCAFFOLD-on-FEMNIST notebook (client states): what it prints, checked for meaning."""

import re

import pytest

from tutorials import notebooks

pytestmark = pytest.mark.slow  # Runs a notebook in a fresh process on real data.


def test_scaffold_on_femnist(tmp_path):
  out = notebooks.run("scaffold_on_femnist", tmp_path)
  assert "<control_variate=<float32[784,10],float32[10]>>" in out
  rounds = re.findall(r"round (\d): train loss SCAFFOLD ([\d.]+), FedAvg ([\d.]+); clients with "
                      r"a state: (\d+)", out)
  assert [int(r[0]) for r in rounds] == [1, 2, 3]
  scaffold_losses = [float(r[1]) for r in rounds]
  assert scaffold_losses[-1] < scaffold_losses[0] < 2.31  # ln(10) = 2.30 at zero weights.
  assert rounds[0][1] == rounds[0][2]  # Round 1: all control variates are zero, so FedAvg.
  stored = [int(r[3]) for r in rounds]
  assert stored[0] == 6 and stored == sorted(stored) and stored[-1] <= 12  # Touched only.
  test_losses = [float(x) for x in re.findall(r"test loss \w+ +([\d.]+)", out)]
  assert len(test_losses) == 2 and all(loss < 2.30 for loss in test_losses)
  assert re.search(r"store bytes (\d+)", out).group(1) == str(stored[-1] * (784 * 10 + 10) * 4)
