"""`federax train --runtime ray`: a tiny synthetic run on the session's Ray cluster gives the
vectorized run's metrics (to float tolerance: 2 workers reorder the float sums)."""

import csv

import numpy as np
import pytest

import federax as fx
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
    assert a.keys() == b.keys()
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
