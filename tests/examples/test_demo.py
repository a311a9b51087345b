"""The intrinsics demo (examples/fedavg_synthetic.py) trains and writes its metrics and plot."""

import csv
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_demo_trains_and_writes_metrics_and_plot(tmp_path):
  result = subprocess.run(
      [sys.executable, str(ROOT / "examples/fedavg_synthetic.py"), "--rounds", "12",
       "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, check=True)
  assert "round  12" in result.stdout
  rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
  assert [int(r["round"]) for r in rows] == list(range(1, 13))
  accuracy = [float(r["test_accuracy"]) for r in rows]
  assert max(accuracy[-3:]) > accuracy[0] + 0.15  # It learns (10 classes; chance is 0.1).
  png = (tmp_path / "metrics.png").read_bytes()
  assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_readme_first_command_runs_the_main_job():
  readme = (ROOT / "README.md").read_text()
  commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv")]
  assert commands[0].endswith("&& .venv/bin/federax train"), commands[0]
  pyproject = (ROOT / "pyproject.toml").read_text()
  assert 'federax = "federax.cli:main"' in pyproject
