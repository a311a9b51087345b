"""`federax train` and `federax resume`: run directories, reproducibility, resumption, errors."""

import csv
import json
import pathlib
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from federax.cli.main import main
from tensorboard_events import scalars

# A few fast rounds of the default task (FedProx's Synthetic(1,1), generated, no download).
# Two batches per client (--max-elements 20, batch 10), so every round has one shape: one compile.
QUICK = ["--rounds", "4", "--clients-per-round", "3", "--epochs", "1", "--max-elements", "20",
         "--eval-every", "2", "--checkpoint-every", "2"]


def train(tmp_path, name, *flags):
  out = tmp_path / name
  assert main(["train", "--out", str(out), *QUICK, *flags]) == 0
  return out


def rows(run_dir):
  with open(run_dir / "metrics.csv", newline="") as f:
    return list(csv.DictReader(f))


def png_size(path):
  data = pathlib.Path(path).read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  return struct.unpack(">II", data[16:24])


def final_state(run_dir):
  """The leaves of the latest checkpoint (the final weights and optimizer state)."""
  latest = max((run_dir / "checkpoints").glob("program_state_*"),
               key=lambda p: int(p.name.rsplit("_", 1)[1]))
  with np.load(latest / "state.npz") as npz:
    return latest.name, {k: npz[k] for k in npz.files}


def test_run_directory_holds_config_metrics_events_checkpoints_plot_summary(tmp_path, capsys):
  run_dir = train(tmp_path, "run")
  out = capsys.readouterr().out
  assert "summary" in out and str(run_dir / "metrics.png") in out
  assert {p.name for p in run_dir.iterdir()} >= {
      "config.toml", "metrics.csv", "events", "checkpoints", "metrics.png", "summary.json"}
  table = rows(run_dir)
  assert [int(r["round"]) for r in table] == [0, 1, 2, 3, 4]
  assert not any("time_in_seconds" in column for column in table[0])  # Timings vary: not here.
  train_loss = "client_work/train/loss"
  eval_loss = "evaluation/client_work/eval/current_round_metrics/loss"
  assert [bool(r[train_loss]) for r in table] == [False, True, True, True, True]
  assert [bool(r[eval_loss]) for r in table] == [True, False, True, False, True]
  shown = scalars(run_dir / "events")
  assert [step for step, _ in shown[train_loss]] == [1, 2, 3, 4]
  assert [step for step, _ in shown[eval_loss]] == [0, 2, 4]
  assert [v for _, v in shown[train_loss]] == pytest.approx(
      [float(r[train_loss]) for r in table[1:]], rel=1e-6)
  from federax.cli import plot
  assert png_size(run_dir / "metrics.png") == (plot.FIGSIZE[0] * plot.DPI,
                                               plot.FIGSIZE[1] * plot.DPI)
  summary = json.loads((run_dir / "summary.json").read_text())
  assert summary["train_loss"] == pytest.approx(float(table[-1][train_loss]))
  assert summary["eval_accuracy_round"] == 4
  assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
      "program_state_0", "program_state_2", "program_state_4"]
  assert 'task = "synthetic"' in (run_dir / "config.toml").read_text()


@pytest.mark.slow
def test_same_seed_same_csv_different_seed_different_csv(tmp_path):
  a = train(tmp_path, "a", "--seed", "7")
  b = train(tmp_path, "b", "--seed", "7")
  c = train(tmp_path, "c", "--seed", "8")
  assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
  assert (a / "metrics.csv").read_bytes() != (c / "metrics.csv").read_bytes()


def test_config_file_then_flags(tmp_path):
  config = tmp_path / "experiment.toml"
  config.write_text('[train]\nalgorithm = "fedadam"\nserver-lr = 0.05\nseed = 3\n')
  run_dir = train(tmp_path, "run", "--config", str(config), "--seed", "4")
  written = (run_dir / "config.toml").read_text()
  assert 'algorithm = "fedadam"' in written and "server_lr = 0.05" in written
  assert "seed = 4" in written


@pytest.mark.parametrize("algorithm", ["fedavgm", "fedyogi", "fedadagrad", "fedprox", "fedsgd"])
def test_every_algorithm_trains(tmp_path, algorithm):
  run_dir = train(tmp_path, "run", "--algorithm", algorithm, "--rounds", "2",
                  "--server-lr", "0.1")
  assert np.isfinite(float(rows(run_dir)[-1]["client_work/train/loss"]))


@pytest.mark.parametrize("argv, message", [
    (["train", "--task", "mnist"], "invalid choice: 'mnist'"),
    (["train", "--rounds", "-3"], "rounds must be >= 1, got -3"),
    (["train", "--rounds", "0"], "rounds must be >= 1, got 0"),
    (["train", "--rounds", "ten"], "expected an integer, got 'ten'"),
    (["train", "--client-lr", "-1"], "client_lr must be a positive number"),
    (["train", "--data-dir", "/nonexistent/federax-data"],
     "data directory /nonexistent/federax-data does not exist"),
    (["train", "--config", "/nonexistent/x.toml"], "config file /nonexistent/x.toml does not"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["resume", "/nonexistent/run"], "is not a run directory"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_flags_give_one_line_and_status_2(tmp_path, monkeypatch, capsys, argv, message):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(SystemExit) as exit_info:
    status = main(argv)
    raise SystemExit(status)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and message in err, err
  assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("content, message", [
    ("rounds = -1\n", "rounds must be >= 1, got -1"),
    ('task = "mnist"\n', "unknown task 'mnist'"),
    ("epochs = 1.5\n", "epochs expects an integer, got 1.5"),
    ("learning_rate = 1\n", "unknown setting 'learning_rate'"),
    ("rounds = \n", "is not valid TOML"),
])
def test_bad_configs_give_one_line_and_status_2(tmp_path, monkeypatch, capsys, content, message):
  monkeypatch.chdir(tmp_path)
  config = tmp_path / "bad.toml"
  config.write_text(content)
  assert main(["train", "--config", str(config)]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and message in err, err


def test_out_directory_holding_a_run_is_refused(tmp_path, capsys):
  run_dir = train(tmp_path, "run", "--rounds", "1")
  assert main(["train", "--out", str(run_dir)]) == 2
  assert "already holds a run; continue it with `federax resume" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_extends_a_finished_run_like_a_longer_one(tmp_path):
  longer = train(tmp_path, "longer", "--rounds", "6")
  run_dir = train(tmp_path, "extended")
  assert main(["resume", str(run_dir), "--rounds", "6"]) == 0
  assert (run_dir / "metrics.csv").read_bytes() == (longer / "metrics.csv").read_bytes()
  name, state = final_state(run_dir)
  longer_name, longer_state = final_state(longer)
  assert name == longer_name == "program_state_6"
  assert state.keys() == longer_state.keys()
  for key in state:
    np.testing.assert_array_equal(state[key], longer_state[key], err_msg=key)


def test_truncated_or_unknown_checkpoint_is_refused_and_left_alone(tmp_path, capsys):
  run_dir = train(tmp_path, "run")
  latest = run_dir / "checkpoints" / "program_state_4"
  npz = latest / "state.npz"
  npz.write_bytes(npz.read_bytes()[:100])
  before = npz.read_bytes()
  assert main(["resume", str(run_dir), "--rounds", "6"]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "state.npz" in err, err
  assert npz.read_bytes() == before

  run_dir2 = train(tmp_path, "run2")
  path = run_dir2 / "checkpoints" / "program_state_4" / "manifest.json"
  path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 99}))
  before = path.read_bytes()
  assert main(["resume", str(run_dir2), "--rounds", "6"]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "format version 99" in err, err
  assert path.read_bytes() == before


def run_federax(*args, **kwargs):
  return subprocess.Popen([sys.executable, "-m", "federax.cli", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


LONG = ["--rounds", "40", "--clients-per-round", "3", "--epochs", "1", "--max-elements", "20",
        "--eval-every", "5", "--checkpoint-every", "3", "--seed", "11"]


def wait_for_checkpoint(run_dir, version, process, timeout=120):
  deadline = time.monotonic() + timeout
  while not (run_dir / "checkpoints" / f"program_state_{version}").exists():
    assert process.poll() is None, process.communicate()
    assert time.monotonic() < deadline, "no checkpoint in time"
    time.sleep(0.01)


@pytest.mark.slow
def test_killed_with_sigkill_then_resumed_equals_uninterrupted(tmp_path):
  reference = run_federax("train", "--out", str(tmp_path / "reference"), *LONG)
  killed_dir = tmp_path / "killed"
  killed = run_federax("train", "--out", str(killed_dir), *LONG)
  wait_for_checkpoint(killed_dir, 6, killed)
  time.sleep(0.05)  # Into the rounds after the checkpoint: their metrics get written twice.
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  assert not (killed_dir / "summary.json").exists(), "the run ended before it was killed"
  assert reference.wait() == 0, reference.communicate()
  resumed = run_federax("resume", str(killed_dir))
  assert resumed.wait() == 0, resumed.communicate()
  assert (killed_dir / "metrics.csv").read_bytes() == \
      (tmp_path / "reference" / "metrics.csv").read_bytes()
  name, state = final_state(killed_dir)
  reference_name, reference_state = final_state(tmp_path / "reference")
  assert name == reference_name == "program_state_40"
  assert state.keys() == reference_state.keys()
  for key in state:
    np.testing.assert_array_equal(state[key], reference_state[key], err_msg=key)


def test_sigint_saves_a_checkpoint_and_exits_130(tmp_path):
  run_dir = tmp_path / "run"
  process = run_federax("train", "--out", str(run_dir), *LONG)
  wait_for_checkpoint(run_dir, 3, process)
  process.send_signal(signal.SIGINT)
  out, err = process.communicate(timeout=120)
  assert process.returncode == 130, err
  assert f"federax resume {run_dir}" in out
  versions = sorted(int(p.name.rsplit("_", 1)[1])
                    for p in (run_dir / "checkpoints").glob("program_state_*"))
  assert 3 <= versions[-1] < 40, versions
  assert int(rows(run_dir)[-1]["round"]) == versions[-1]
  assert "Traceback" not in err


def test_centralized_evaluation_on_pooled_test_data_matches_evaluating_every_client(tmp_path):
  run_dir = train(tmp_path, "run", "--centralized-eval", "--eval-clients", "0")
  assert "centralized_eval = true" in (run_dir / "config.toml").read_text()
  for row in rows(run_dir):
    if not row["evaluation/centralized/loss"]:
      continue
    federated = "evaluation/client_work/eval/current_round_metrics/"
    assert row["evaluation/centralized/num_examples"] == row[federated + "num_examples"]
    for metric in ("loss", "sparse_categorical_accuracy"):
      assert float(row["evaluation/centralized/" + metric]) == pytest.approx(
          float(row[federated + metric]), rel=1e-5)
