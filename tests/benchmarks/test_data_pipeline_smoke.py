"""The data pipeline benchmark runs end to end on tiny sizes (real FEMNIST or a fixture)."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_data_pipeline_benchmark_smoke():
  result = subprocess.run([sys.executable, "-m", "benchmarks.data_pipeline", "--smoke"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "smoke ok" in result.stdout
  assert "| masked_batch+to_stacked | 2 |" in result.stdout
  assert "peak RSS (VmHWM)" in result.stdout
  assert "tf.data:" in result.stdout


def test_data_pipeline_smoke_without_shared_data(tmp_path):
  result = subprocess.run([sys.executable, "-m", "benchmarks.data_pipeline", "--smoke",
                           "--data-dir", str(tmp_path / "absent")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "smoke ok" in result.stdout
