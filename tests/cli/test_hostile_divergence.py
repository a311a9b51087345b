"""`federax train` with learning rates that blow up: robust aggregation (TFF's zeroing and
clipping) keeps the model bounded, and a run whose round diverged stops with one line on stderr
and status 1, its metrics and checkpoints those of the rounds before."""

import collections
import csv

import numpy as np
import pytest

from federax.cli._divergence import DivergedError, StopWhenDiverged
from federax.cli.main import main
from federax.learning.models import ModelWeights

QUICK = ["--rounds", "2", "--clients-per-round", "3", "--epochs", "1", "--max-elements", "20",
         "--eval-every", "2", "--checkpoint-every", "1"]


def rows(run_dir):
  with open(run_dir / "metrics.csv", newline="") as f:
    return list(csv.DictReader(f))


def checkpoints(run_dir):
  return sorted(int(p.name.rsplit("_", 1)[1])
                for p in (run_dir / "checkpoints").glob("program_state_*"))


def test_huge_client_updates_are_zeroed_and_the_model_stays_where_it_was(tmp_path):
  # Client SGD at 1e30 makes updates of norm ~1e30 (finite): a plain mean applied them, and the
  # synthetic task's model (from zeros) reached a norm of 1e30 with exit status 0.
  run_dir = tmp_path / "run"
  assert main(["train", "--out", str(run_dir), *QUICK, "--client-lr", "1e30"]) == 0
  table = rows(run_dir)[1:]
  assert [int(r["aggregator/zeroed_count"]) for r in table] == [3, 3]
  assert all(float(r["client_work/train/loss"]) > 1e20 for r in table)  # They did diverge.
  latest = run_dir / "checkpoints" / f"program_state_{max(checkpoints(run_dir))}" / "state.npz"
  with np.load(latest) as npz:  # The state's leaves in order: the model's kernel and bias first.
    kernel, bias = npz["leaf_0"], npz["leaf_1"]
  assert kernel.shape == (60, 10) and bias.shape == (10,)
  assert np.all(kernel == 0.0) and np.all(bias == 0.0)


def test_a_round_in_which_every_client_diverged_stops_the_run(tmp_path, capsys):
  # At 1e37 every client's local model overflows to NaN: every update is dropped, the model
  # cannot move, and the run used to go on to the end (with a train loss over no client).
  run_dir = tmp_path / "run"
  assert main(["train", "--out", str(run_dir), *QUICK, "--client-lr", "1e37"]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1, err
  assert err.startswith("federax train: error: training diverged in round 1: the updates of "
                        "all 3 clients were NaN or Inf"), err
  assert "the latest checkpoint is of round 0" in err and "lower --client-lr" in err
  assert [r["round"] for r in rows(run_dir)] == ["0"]
  assert checkpoints(run_dir) == [0]


class _Process:
  """A stand-in `LearningProcess` whose model becomes `value` after a round."""

  State = collections.namedtuple("State", "global_model_weights")
  Output = collections.namedtuple("Output", "state metrics")

  def __init__(self, value):
    self.value = value

  def next(self, state, client_data):
    weights = ModelWeights([np.zeros(3, np.float32), np.full(2, self.value, np.float32)],
                           [np.zeros(1, np.int32)])
    metrics = {"client_work": {"train": {"num_non_finite_clients": np.int32(0)}}}
    return self.Output(self.State(weights), metrics)

  def get_model_weights(self, state):
    return state.global_model_weights


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_model_that_is_no_longer_finite_stops_the_run(value):
  guarded = StopWhenDiverged(_Process(1.0), first_round=7, last_saved=lambda: 5)
  out = guarded.next(None, [[], []])
  assert guarded.get_model_weights(out.state) is out.state.global_model_weights  # Delegated.
  guarded._process.value = value
  with pytest.raises(DivergedError, match=r"^training diverged in round 8: the model's weights "
                     r"are no longer finite \(NaN or Inf in \.trainable\[1\]\); the latest "
                     r"checkpoint is of round 5; lower --client-lr or --server-lr and start a "
                     r"new run$"):
    guarded.next(out.state, [[], []])
