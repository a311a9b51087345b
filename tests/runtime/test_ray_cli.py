"""`federax train --runtime ray`: a tiny synthetic run on the session's Ray cluster gives the
vectorized run's metrics (to float tolerance: 2 workers reorder the float sums); a worker killed
under the drop policy shows in the round's `clients_dropped`."""

import csv
import os
import signal

import numpy as np
import pytest

import federax as fx
from federax.cli import experiment
from federax.cli.main import main

# Two rounds of FedProx's Synthetic(1,1) (generated), 4 clients a round, one evaluation.
QUICK = ["--rounds", "2", "--clients-per-round", "4", "--epochs", "1", "--max-elements", "20",
         "--eval-every", "2", "--eval-clients", "4", "--checkpoint-every", "2"]


def _metrics(run_dir):
  with open(run_dir / "metrics.csv", newline="") as f:
    return list(csv.DictReader(f))


def test_train_on_ray_gives_the_vectorized_metrics(ray_runtimes, tmp_path, monkeypatch):
  monkeypatch.setenv("FEDERAX_COMPILATION_CACHE", str(tmp_path / "cache"))
  before = fx.runtime.get_default()
  assert main(["train", "--out", str(tmp_path / "vec"), *QUICK]) == 0
  assert main(["train", "--out", str(tmp_path / "ray"), *QUICK, "--runtime", "ray",
               "--ray-workers", "2"]) == 0
  assert fx.runtime.get_default() is before  # The run's Ray runtime is not left as default.
  vec, ray = _metrics(tmp_path / "vec"), _metrics(tmp_path / "ray")
  assert [r["round"] for r in ray] == [r["round"] for r in vec] == ["0", "1", "2"]
  compared = 0
  for a, b in zip(vec, ray):
    assert b.keys() - a.keys() == {"clients_dropped"}  # Ray's rounds count their dropped clients.
    assert b["clients_dropped"] == ("" if a["round"] == "0" else "0")
    for key, value in a.items():
      if "time" in key or not value:
        assert not b[key] if not value else True
        continue
      np.testing.assert_allclose(float(b[key]), float(value), rtol=1e-4, atol=1e-6, err_msg=key)
      compared += 1
  assert compared > 10
  assert "runtime = \"ray\"" in (tmp_path / "ray" / "config.toml").read_text()
  assert "ray_workers = 2" in (tmp_path / "ray" / "config.toml").read_text()


def test_ray_flags_without_the_ray_runtime(tmp_path, capsys):
  assert main(["train", "--out", str(tmp_path / "x"), "--ray-workers", "2"]) != 0
  assert "ray_workers set without runtime ray" in capsys.readouterr().err


def test_clients_dropped_under_the_drop_policy_is_a_metrics_column(ray_runtimes, tmp_path,
                                                                   monkeypatch):
  monkeypatch.setenv("FEDERAX_COMPILATION_CACHE", str(tmp_path / "cache"))
  build = experiment.build_learning_process

  class KillBeforeRound2:
    """The process, with Ray worker 1 SIGKILLed just before round 2's call."""

    def __init__(self, process):
      self._process, self._rounds = process, 0

    def __getattr__(self, name):
      return getattr(self._process, name)

    def next(self, state, client_data):
      self._rounds += 1
      if self._rounds == 2:
        os.kill(fx.runtime.get_default().worker_pids()[1], signal.SIGKILL)
      return self._process.next(state, client_data)

  monkeypatch.setattr(experiment, "build_learning_process",
                      lambda *args: KillBeforeRound2(build(*args)))
  run_dir = tmp_path / "run"
  assert main(["train", "--out", str(run_dir), "--rounds", "2", "--clients-per-round", "4",
               "--epochs", "1", "--max-elements", "20", "--eval-every", "10", "--runtime", "ray",
               "--ray-workers", "2", "--ray-max-retries", "0",
               "--ray-min-clients-per-round", "2"]) == 0
  rows = _metrics(run_dir)
  # 4 clients on 2 workers: worker 1's block of 2 is dropped in round 2 (round 0: the
  # evaluation before training).
  dropped = [(r["round"], r["clients_dropped"]) for r in rows]
  assert dropped == [("0", ""), ("1", "0"), ("2", "2")], dropped
  config = (run_dir / "config.toml").read_text()
  assert "ray_max_retries = 0" in config and "ray_min_clients_per_round = 2" in config


def test_the_drop_policy_without_the_ray_runtime(tmp_path, capsys):
  assert main(["train", "--out", str(tmp_path / "x"), "--ray-min-clients-per-round", "2"]) != 0
  assert "ray_min_clients_per_round set without runtime ray" in capsys.readouterr().err
  assert main(["train", "--out", str(tmp_path / "y"), "--runtime", "ray",
               "--ray-max-retries", "-1"]) != 0
  assert "ray_max_retries must be >= 0, got -1" in capsys.readouterr().err


def test_the_straggler_timeout_flag_reaches_the_ray_runtime(tmp_path, capsys, monkeypatch):
  options = {}

  def ray(address=None, **kwargs):  # Records the options; no Ray started, no round run.
    options.update(kwargs)
    raise ImportError("recorded")
  monkeypatch.setattr(fx.runtime, "ray", ray)
  assert main(["train", "--out", str(tmp_path / "x"), *QUICK, "--runtime", "ray",
               "--ray-straggler-timeout", "2.5"]) != 0
  assert "--runtime ray: recorded" in capsys.readouterr().err
  assert options["straggler_timeout_s"] == 2.5
  assert "ray_straggler_timeout = 2.5" in (tmp_path / "x" / "config.toml").read_text()
  assert main(["train", "--out", str(tmp_path / "y"), "--runtime", "ray",
               "--ray-straggler-timeout", "0"]) != 0
  assert "ray_straggler_timeout must be a positive number of seconds, got 0.0" in (
      capsys.readouterr().err)
  assert main(["train", "--out", str(tmp_path / "z"), "--ray-straggler-timeout", "5"]) != 0
  assert "ray_straggler_timeout set without runtime ray" in capsys.readouterr().err


def test_dp_training_on_ray_runs_on_ray_and_gives_the_vectorized_metrics(ray_runtimes, tmp_path,
                                                                          monkeypatch):
  # DP's Poisson cohorts vary in size; the run padded them on the vectorized runtime by
  # replacing the default runtime, Ray's included: `--runtime ray` ran on the vectorized one.
  monkeypatch.setenv("FEDERAX_COMPILATION_CACHE", str(tmp_path / "cache"))
  dp = ["--rounds", "2", "--clients-per-round", "3", "--epochs", "1", "--max-elements", "20",
        "--eval-every", "10", "--seed", "10", "--dp-noise-multiplier", "1.0", "--dp-clip", "1.0",
        "--dp-delta", "1e-3"]
  assert main(["train", "--out", str(tmp_path / "vec"), *dp]) == 0
  assert main(["train", "--out", str(tmp_path / "ray"), *dp, "--runtime", "ray",
               "--ray-workers", "2"]) == 0
  vec, ray = _metrics(tmp_path / "vec"), _metrics(tmp_path / "ray")
  assert [r["round"] for r in ray] == [r["round"] for r in vec] == ["0", "1", "2"]
  for a, b in zip(vec[1:], ray[1:]):
    assert b.keys() - a.keys() == {"clients_dropped"} and b["clients_dropped"] == "0"
    for key in ("train/loss", "privacy/epsilon", "clients/num_sampled"):
      if key in a:
        np.testing.assert_allclose(float(b[key]), float(a[key]), rtol=1e-4, err_msg=key)
