"""benchmarks/dp_tutorial runs end to end on one LEAF sample and one round, so it never rots."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dp_tutorial_benchmark(shared_data):
  # Its smoke mode asserts accuracies in [0, 1] and epsilon == dp_accounting's by hand.
  result = subprocess.run([sys.executable, "-m", "benchmarks.dp_tutorial", "--smoke",
                           "--noise-multipliers", "0.0", "1.0", "--data-dir", str(shared_data)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  out = result.stdout
  assert "smoke ok" in out
  for z, tff in (("0.0", "0.805"), ("1.0", "0.383")):
    assert f"| {z} | " in out and f" | {tff} | " in out
  assert "| inf | inf |" in out  # No noise: no guarantee, by both computations.
