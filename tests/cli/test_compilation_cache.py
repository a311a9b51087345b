"""`federax train` keeps JAX's persistent compilation cache: a second process compiles nothing."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from federax.cli import compilation_cache
from federax.cli.main import main

QUICK = ["--rounds", "2", "--clients-per-round", "3", "--epochs", "1", "--max-elements", "20",
         "--eval-every", "2", "--checkpoint-every", "2"]
ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_directory_comes_from_the_option_then_the_environment_then_the_cache_home(
    tmp_path, monkeypatch):
  monkeypatch.delenv(compilation_cache.ENV_VAR, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert compilation_cache.resolve(None) == tmp_path / "xdg" / "federax" / "jax"
  monkeypatch.delenv("XDG_CACHE_HOME")
  assert compilation_cache.resolve(None) == pathlib.Path.home() / ".cache" / "federax" / "jax"
  monkeypatch.setenv(compilation_cache.ENV_VAR, str(tmp_path / "env"))
  assert compilation_cache.resolve(None) == tmp_path / "env"
  assert compilation_cache.resolve(str(tmp_path / "flag")) == tmp_path / "flag"
  assert compilation_cache.resolve("none") is None
  monkeypatch.setenv(compilation_cache.ENV_VAR, "NONE")
  assert compilation_cache.resolve(None) is None


def test_the_cache_settings_last_only_for_the_run(tmp_path):
  import jax
  before = {k: jax.config.values[k] for k in ("jax_compilation_cache_dir",
                                              *compilation_cache.SETTINGS)}
  with compilation_cache.enabled(tmp_path / "cache") as in_use:
    assert in_use == tmp_path / "cache"
    assert jax.config.values["jax_compilation_cache_dir"] == str(tmp_path / "cache")
    assert jax.config.values["jax_persistent_cache_min_compile_time_secs"] == 0
  assert {k: jax.config.values[k] for k in before} == before


@pytest.mark.slow
def test_the_summary_counts_compilations_and_says_when_the_cache_is_off(tmp_path, capsys):
  # `none` turns off also the cache JAX_COMPILATION_CACHE_DIR sets (tests/conftest.py sets one
  # for the suite): it had been left on, its hits counted under "cache off".
  assert os.environ.get("JAX_COMPILATION_CACHE_DIR")
  assert main(["train", "--out", str(tmp_path / "run"), *QUICK,
               "--compilation-cache", "none"]) == 0
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["compilation_cache"] is None
  assert summary["compilations"] >= 0 and summary["compilation_cache_hits"] == 0
  assert "compilation cache off" in capsys.readouterr().out


def train_in_a_fresh_process(run_dir, cache):
  result = subprocess.run([sys.executable, "-m", "federax.cli", "train", "--out", str(run_dir),
                           *QUICK, "--compilation-cache", str(cache)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads((run_dir / "summary.json").read_text()), result.stdout


@pytest.mark.slow
def test_a_second_process_loads_every_program_from_the_cache(tmp_path):
  cache = tmp_path / "cache"
  first, _ = train_in_a_fresh_process(tmp_path / "first", cache)
  assert first["compilations"] > 0 and first["compilation_cache_hits"] == 0
  second, out = train_in_a_fresh_process(tmp_path / "second", cache)
  assert second["compilations"] == 0
  assert second["compilation_cache_hits"] == first["compilations"]
  assert f"0, {first['compilations']} programs from the cache" in out
  resumed = subprocess.run([sys.executable, "-m", "federax.cli", "resume", str(tmp_path / "first"),
                            "--rounds", "4", "--compilation-cache", str(cache)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert json.loads((tmp_path / "first" / "summary.json").read_text())["compilations"] == 0


def test_a_cache_directory_that_cannot_be_made_is_warned_about_and_skipped(tmp_path, caplog):
  blocker = tmp_path / "file"
  blocker.write_text("")
  with compilation_cache.enabled(blocker / "cache") as in_use:
    assert in_use is None
  assert "No compilation cache" in caplog.text
