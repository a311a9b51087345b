"""The heavy-hitters benchmark runs end to end on 8 Shakespeare roles (no TFF), so it never rots;
its smoke mode asserts that the round's result equals the standalone decoder's."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_heavy_hitters_benchmark(shared_data):
  result = subprocess.run([sys.executable, "-m", "benchmarks.heavy_hitters", "--smoke",
                           "--data-dir", str(shared_data)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "smoke ok" in result.stdout
  assert "| 2000 | 8 | 681 | 0 |" in result.stdout  # Capacity, clients, decoded, not decoded.
