"""The benchmark harness runs (one tiny round per program) and agrees with the floor."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_core_round_benchmark_smoke():
  result = subprocess.run([sys.executable, "-m", "benchmarks.core_round", "--smoke"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "smoke ok" in result.stdout
