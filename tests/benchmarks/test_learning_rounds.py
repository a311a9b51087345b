"""The learning-rounds benchmark runs end to end on real FEMNIST; its floors agree with federax."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"

needs_data = pytest.mark.skipif(not (DATA / "femnist-leaf").is_dir(),
                                reason=f"no FEMNIST LEAF data at {DATA / 'femnist-leaf'}")


def run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "benchmarks.learning_rounds", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@needs_data
def test_smoke_agrees_with_the_centralized_floor():
  # Smoke mode asserts that one client's round equals the centralized loop and scan (W1, and W2
  # without dropout).
  result = run("--smoke", "--data-dir", str(DATA))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "smoke ok" in result.stdout
  assert '"max_abs_diff_one_client"' in result.stdout


def test_missing_data_dir_is_reported(tmp_path):
  result = run("--smoke", "--data-dir", str(tmp_path / "absent"))
  assert result.returncode != 0
  assert "No FEMNIST LEAF data" in result.stderr
  assert "--data-dir" in result.stderr
