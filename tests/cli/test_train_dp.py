"""`federax train --dp-...`: DP-FedAvg with Poisson sampling, privacy/epsilon in metrics.csv,
(epsilon, delta) in the summary, the target epsilon, and the flags' misuse."""

import csv
import json

import dp_accounting as dpa
import pytest

import federax as fx
from federax.cli.main import main

# Synthetic(1,1): 30 training clients; 3 per round is Poisson rate 0.1. Seed 10 samples 2
# clients in each of rounds 1-3, so the rounds share one compiled program.
DP = ["--rounds", "3", "--clients-per-round", "3", "--epochs", "1", "--max-elements", "20",
      "--eval-every", "3", "--seed", "10", "--dp-noise-multiplier", "1.0", "--dp-clip", "1.0",
      "--dp-delta", "1e-3"]


def rows(run_dir):
  with open(run_dir / "metrics.csv", newline="") as f:
    return list(csv.DictReader(f))


def reference(rounds, delta=1e-3):
  event = dpa.PoissonSampledDpEvent(0.1, dpa.GaussianDpEvent(1.0))
  return dpa.rdp.RdpAccountant().compose(event, rounds).get_epsilon(delta)


def test_dp_run_reports_epsilon_every_round_and_states_it_in_the_summary(tmp_path, capsys):
  run_dir = tmp_path / "run"
  before = fx.runtime.get_default()
  assert main(["train", "--out", str(run_dir), *DP]) == 0
  assert fx.runtime.get_default() is before  # The run's padding runtime is not left as default.
  table = rows(run_dir)
  assert [r["privacy/epsilon"] != "" for r in table] == [False, True, True, True]
  for row in table[1:]:
    assert float(row["privacy/epsilon"]) == pytest.approx(reference(int(row["round"])),
                                                          rel=1e-9)
    assert float(row["privacy/delta"]) == 1e-3
  out = capsys.readouterr().out
  assert f"user-level ({reference(3):.4g}, 0.001)-DP after 3 rounds" in out
  assert "RDP; Poisson sampling at rate q = 0.1 of 30 clients; noise multiplier 1" in out
  privacy = json.loads((run_dir / "summary.json").read_text())["privacy"]
  assert privacy["epsilon"] == pytest.approx(reference(3)) and privacy["delta"] == 1e-3
  assert privacy["level"] == "user" and not privacy["stopped_at_target"]
  written = (run_dir / "config.toml").read_text()
  assert "dp_noise_multiplier = 1.0" in written and "dp_clip = 1.0" in written


def test_target_epsilon_stops_the_run_and_resume_does_not_go_past_it(tmp_path, capsys):
  run_dir = tmp_path / "run"
  target = (reference(1) + reference(2)) / 2
  assert main(["train", "--out", str(run_dir), *DP, "--dp-target-epsilon", str(target)]) == 0
  assert [int(r["round"]) for r in rows(run_dir)] == [0, 1]
  out = capsys.readouterr().out
  assert f"target epsilon {target:g} reached: stopped before round 2" in out
  assert main(["resume", str(run_dir), "--rounds", "5"]) == 0
  assert [int(r["round"]) for r in rows(run_dir)] == [0, 1]
  assert "stopped before round 2" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--algorithm", "fedsgd", "--dp-noise-multiplier", "1"],
     "cannot train with differential privacy: it averages the clients' updates weighted"),
    (["--dp-clip", "1.0"], "set without dp_noise_multiplier"),
    (["--dp-noise-multiplier", "-1"], "dp_noise_multiplier must be >= 0, got -1.0"),
    (["--dp-noise-multiplier", "1", "--dp-clip", "wide"],
     "dp_clip expects a positive number or 'adaptive', got 'wide'"),
    (["--dp-noise-multiplier", "1", "--dp-clip", "0"], "dp_clip must be a positive number"),
    (["--dp-noise-multiplier", "1", "--dp-delta", "1.5"], r"dp_delta must be in (0, 1)"),
    (["--dp-noise-multiplier", "1", "--dp-target-epsilon", "0"],
     "dp_target_epsilon must be a positive number"),
    (["--dp-noise-multiplier", "1", "--dp-accountant", "moments"], "invalid choice: 'moments'"),
    (["--dp-noise-multiplier", "1", "--clients-per-round", "3"],
     "clipped_count_stddev is too low for the requested total noise_multiplier"),
])
def test_dp_flag_misuse_is_one_line_and_writes_no_run(tmp_path, capsys, flags, message):
  run_dir = tmp_path / "run"
  with pytest.raises(SystemExit) as exit_info:
    raise SystemExit(main(["train", "--out", str(run_dir), *flags]))
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert message in err and len(err.strip().splitlines()) == 1
  assert not (run_dir / "config.toml").exists()


def test_a_cohort_larger_than_the_population_is_refused(tmp_path, capsys):
  status = main(["train", "--out", str(tmp_path / "run"), "--clients-per-round", "40",
                 "--dp-noise-multiplier", "1", "--dp-clip", "1"])
  assert status == 2
  assert "clients_per_round 40 exceeds the 30 training clients" in capsys.readouterr().err


def test_dp_settings_from_a_config_file(tmp_path):
  from federax.cli import config as config_lib
  path = tmp_path / "dp.toml"
  path.write_text('[train]\ndp-noise-multiplier = 0.8\ndp-clip = "adaptive"\n'
                  'dp-accountant = "pld"\nclients-per-round = 20\n')
  config = config_lib.resolve(config_lib.read_toml(path), {"dp_clip": "0.5"})
  assert (config.dp_noise_multiplier, config.dp_clip, config.dp_accountant) == (0.8, 0.5, "pld")
  assert config_lib.read_toml(_written(tmp_path, config))["dp_clip"] == 0.5


def _written(tmp_path, config):
  from federax.cli import config as config_lib
  path = tmp_path / "written.toml"
  path.write_text(config_lib.to_toml(config))
  return path
