"""`federax train` end to end on the baseline tasks that read the shared real data."""

import csv

import pytest

from federax.cli.main import main

FEW = ["--rounds", "2", "--clients-per-round", "2", "--eval-clients", "2", "--eval-every", "1",
       "--max-elements", "40"]


@pytest.mark.parametrize("task, data", [("emnist_digits", "femnist-leaf"),
                                        ("emnist", "femnist-leaf"),
                                        ("shakespeare", "shakespeare-tff")])
@pytest.mark.slow
def test_train_on_real_data(tmp_path, shared_data, task, data):
  run_dir = tmp_path / task
  assert main(["train", "--task", task, "--data-dir", str(shared_data / data),
               "--out", str(run_dir), *FEW]) == 0
  with open(run_dir / "metrics.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["round"] for r in rows] == ["0", "1", "2"]
  for row in rows[1:]:
    assert 0 < float(row["client_work/train/loss"]) < 10
    examples = int(row["client_work/train/num_examples"])
    if task != "shakespeare":  # There --max-elements caps snippets, not the sequences cut out.
      assert examples == 2 * 40
    assert examples > 0
  accuracy = [c for c in rows[0] if c.startswith("evaluation/") and c.endswith("accuracy")
              and "current_round" in c]
  assert accuracy and all(0 <= float(r[accuracy[0]]) <= 1 for r in rows)
  assert (run_dir / "metrics.png").stat().st_size > 10_000
