"""`python -m benchmarks --smoke`: the side-by-side harness end to end, federax only, tiny."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import pytest

from benchmarks import harness, process_tree

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run(*args):
  return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_smoke_runs_every_workload_and_writes_the_report(tmp_path, shared_data):
  results = tmp_path / "RESULTS.md"
  # W1 and W3: the harness's two data paths (LEAF writers, generated clients). W2's model runs
  # in the learning-rounds benchmark's smoke test (tests/benchmarks/test_learning_rounds.py).
  out = run("--smoke", "--workloads", "w1", "w3", "--data-dir", str(shared_data),
            "--results", str(results))
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  assert "smoke ok" in out.stdout
  report = json.loads((tmp_path / "suite.json").read_text())
  assert set(report["table"]) == {"w1", "w3"}
  for workload, rows in report["table"].items():
    assert {"federax", "JAX (centralized) (lax.scan)"} & set(rows), workload
    for label, row in rows.items():
      assert row["failed"] == 0, (workload, label)
      assert row["round_s"] > 0 and row["peak_pss_mib"] > 50, (workload, label)
  # The same examples each round in federax and in its floor (2 writers, 1 epoch).
  w1 = report["table"]["w1"]
  assert (w1["federax"]["per_run"][0]["examples_per_round"]
          == w1["JAX (centralized) (lax.scan)"]["per_run"][0]["examples_per_round"])
  text = results.read_text()
  for heading in ("## W1:", "## W3:", "| federax |", "## Raw figures"):
    assert heading in text


@pytest.mark.slow
def test_smoke_without_shared_data_runs_the_generated_workloads(tmp_path):
  out = run("--smoke", "--workloads", "w1", "w3", "--data-dir", str(tmp_path / "absent"),
            "--results", str(tmp_path / "RESULTS.md"))
  assert out.returncode == 0, out.stderr[-3000:]
  assert "w1: skipped, no FEMNIST" in out.stderr
  assert set(json.loads((tmp_path / "suite.json").read_text())["table"]) == {"w3"}


def test_a_peer_that_is_not_set_up_is_named_with_the_reason(tmp_path):
  tff = next(s for s in harness.systems("cpu") if s.name == "TFF")
  absent = dataclasses.replace(tff, python=tmp_path / "no-venv" / "bin" / "python")
  assert absent.missing() == f"not set up ({absent.python} missing)"
  no_script = dataclasses.replace(tff, python=pathlib.Path(sys.executable),
                                  argv=(str(tmp_path / "run_tff.py"),))
  assert no_script.missing() == f"{tmp_path / 'run_tff.py'} missing"
  assert dataclasses.replace(tff, python=pathlib.Path(sys.executable),
                             argv=(__file__,)).missing() is None


def test_the_monitor_sums_the_tree_and_stops_what_outlives_its_root(tmp_path):
  # A parent that starts a detached child which sleeps on after the parent exits.
  script = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
            "'import time; x = bytearray(64 << 20); time.sleep(60)']); time.sleep(1.5)")
  measured = process_tree.run_measured([sys.executable, "-c", script], timeout=30)
  assert measured["returncode"] == 0
  assert measured["peak_pss_mib"] > 64  # The child's 64 MiB counted with the parent's.
  assert len(measured["leftovers"]) == 1
  assert "python" in next(iter(measured["leftovers"].values()))
  pid = next(iter(measured["leftovers"]))
  assert process_tree._stat(pid) is None  # Stopped (gone, or a zombie waiting for init).


@pytest.mark.parametrize("rows,expected", [
    ({"federax": {"round_s": 0.01, "examples_per_s": 100.0},
      "JAX (centralized) (lax.scan)": {"round_s": 0.009, "examples_per_s": 111.0},
      "TFF": {"round_s": 0.25, "examples_per_s": 4.0}},
     [True, True]),
    ({"federax": {"round_s": 0.02, "examples_per_s": 50.0},
      "JAX (centralized) (lax.scan)": {"round_s": 0.009, "examples_per_s": 111.0},
      "TFF": {"round_s": 0.25, "examples_per_s": 4.0}},
     [False, False]),
])
def test_w1_verdicts(rows, expected):
  lines = harness.verdicts({"w1": rows})["w1"]
  assert [met for _, _, met, _ in lines] == expected
