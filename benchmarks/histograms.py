"""Benchmark: hierarchical histograms and distinct counts, federax against TFF 0.87, same inputs.

    python -m benchmarks.histograms             # 1,000 clients x 10 records (TFF if set up)
    python -m benchmarks.histograms --smoke     # 20 clients, federax only (the test suite)

Workloads, on inputs drawn from seed 0 and written once to an .npz both systems read:
- `histogram no-noise` / `histogram central-gaussian`: one round of
  `build_hierarchical_histogram_process(0.0, 1.0, num_bins=64, arity=2,
  max_records_per_user=10, enable_secure_sum=True)` (noise multiplier 1.0 for the central
  mechanism), 1,000 clients of 10 uniform records each.
- `hyperloglog`: `count_distinct.create_federated_hyperloglog_computation()` over 1,000
  clients of 10 words each, drawn from 5,000.

Each call is timed from Python, inputs as users pass them, built beforehand (a dataset per
client: `fx.data.Dataset` / `tf.data.Dataset`; a list of words per client): the first call
(tracing and compiling) and the median of `--repeats` more. TFF runs in a process of its own
(`peers/tff/run_tff_analytics.py`, whose leftover `worker_binary` is stopped). The no-noise
trees and the distinct counts of the two systems must agree (checked). Writes
benchmarks/results/histograms.{json,md} (not with --smoke).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import tempfile

import numpy as np

import federax as fx
from benchmarks import measure, process_tree

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TFF_PYTHON = ROOT / "benchmarks" / "peers" / "tff" / ".venv" / "bin" / "python"
TFF_RUNNER = ROOT / "benchmarks" / "peers" / "tff" / "run_tff_analytics.py"
HISTOGRAM = dict(lower_bound=0.0, upper_bound=1.0, num_bins=64, arity=2,
                 max_records_per_user=10, noise_multiplier=1.0, enable_secure_sum=True)


def inputs(clients: int, records: int, vocabulary: int) -> dict:
  rng = np.random.default_rng(0)
  return {"records": rng.uniform(0.0, 1.0, size=(clients, records)).astype(np.float32),
          "words": np.char.add("w", rng.integers(0, vocabulary, size=(clients, records))
                               .astype(str)),
          "config": json.dumps({"histogram": HISTOGRAM})}


def federax_workloads(data: dict) -> dict:
  records = [fx.data.Dataset.from_tensor_slices(row) for row in data["records"]]
  words = [list(row) for row in data["words"]]

  def histogram(dp_mechanism):
    process = fx.analytics.build_hierarchical_histogram_process(
        dp_mechanism=dp_mechanism, seed=0, **HISTOGRAM)
    state = process.initialize()

    def run():
      out, _ = process.next(state, records)
      return out.aggregated_hierarchical_histogram["flat_values"]

    return run

  hll = fx.analytics.count_distinct.create_federated_hyperloglog_computation()
  return {"histogram no-noise": histogram("no-noise"),
          "histogram central-gaussian": histogram("central-gaussian"),
          "hyperloglog": lambda: hll(words)}


def run_tff(data: dict, repeats: int, python: pathlib.Path) -> dict:
  """TFF's figures in its own process, or {"skipped": why}."""
  if not python.exists():
    return {"skipped": f"TFF is not set up ({python} missing: "
                       "bash benchmarks/peers/tff/setup.sh)"}
  with tempfile.TemporaryDirectory() as tmp:
    path, out = pathlib.Path(tmp) / "inputs.npz", pathlib.Path(tmp) / "tff.json"
    np.savez(path, **data)
    run = process_tree.run_measured(
        [str(python), str(TFF_RUNNER), "--inputs", str(path), "--out", str(out),
         "--repeats", str(repeats)], timeout=3600, log_path=str(pathlib.Path(tmp) / "log"))
    if run["returncode"] != 0 or not out.exists():
      raise RuntimeError(f"the TFF runner failed:\n{run['output'][-3000:]}")
    return json.loads(out.read_text())


def render(report: dict) -> str:
  lines = ["# Analytics: hierarchical histograms and distinct counts, federax vs TFF 0.87",
           "", f"`{report['command']}`; {report['clients']} clients x {report['records']} "
           f"records (or words); {measure.describe(report['machine'])}.", "",
           "| workload | federax first call s | federax s | TFF first call s | TFF s | "
           "TFF / federax |", "|---|---|---|---|---|---|"]
  for name, ours in report["federax"].items():
    theirs = report["tff"].get("workloads", {}).get(name)
    if theirs:
      tff_s = statistics.median(theirs["times_s"])
      cells = f"{theirs['first_s']:.2f} | {tff_s:.3f} | {tff_s / ours['s']:.0f}x"
    else:
      cells = "- | - | -"
    lines.append(f"| {name} | {ours['first_s']:.2f} | {ours['s']:.3f} | {cells} |")
  if "skipped" in report["tff"]:
    lines += ["", f"TFF: {report['tff']['skipped']}"]
  lines += ["", "Seconds per call from Python, inputs included; the first call traces and "
            "compiles (federax) or builds and serializes the computation (TFF). Steady state: "
            "the median of the repeats."]
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true", help="20 clients, federax only")
  parser.add_argument("--clients", type=int, default=1000)
  parser.add_argument("--records", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--tff-python", type=pathlib.Path, default=TFF_PYTHON,
                      help="the TFF peer's interpreter (default: its setup.sh virtualenv)")
  args = parser.parse_args()
  clients, repeats = (20, 1) if args.smoke else (args.clients, args.repeats)
  data = inputs(clients, args.records, vocabulary=5000)
  ours = {}
  for name, fn in federax_workloads(data).items():
    timing = measure.timed(fn, repeats)
    ours[name] = {"first_s": timing["first_s"], "s": timing["s"],
                  "compile_s": timing["compile_s"], "result": np.asarray(timing["result"])}
    print(f"federax {name}: first {timing['first_s']:.2f} s, then {timing['s']:.4f} s")
  tff = {"skipped": "--smoke"} if args.smoke else run_tff(data, repeats, args.tff_python)
  if "workloads" in tff:  # The same answers: exact trees without noise, equal counts.
    np.testing.assert_array_equal(ours["histogram no-noise"]["result"],
                                  tff["workloads"]["histogram no-noise"]["result"])
    assert abs(int(ours["hyperloglog"]["result"]) - tff["workloads"]["hyperloglog"]["result"]) <= 1
  else:  # Without TFF, the no-noise tree against NumPy.
    leaves = np.bincount((data["records"].ravel() * 64).astype(int), minlength=64)
    assert int(ours["histogram no-noise"]["result"][0]) == leaves.sum()
    np.testing.assert_array_equal(ours["histogram no-noise"]["result"][-64:], leaves)
  report = {"command": "python -m benchmarks.histograms" + (" --smoke" if args.smoke else ""),
            "clients": clients, "records": args.records, "machine": measure.machine(),
            "federax": {k: {key: v for key, v in r.items() if key != "result"}
                        for k, r in ours.items()},
            "tff": {k: v for k, v in tff.items() if k != "workloads"} | (
                {"workloads": {k: {key: v for key, v in r.items() if key != "result"}
                               for k, r in tff["workloads"].items()}}
                if "workloads" in tff else {})}
  text = render(report)
  print(text)
  if args.smoke:
    print("smoke ok")
    return
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "histograms.json").write_text(json.dumps(report, indent=1) + "\n")
  (RESULTS / "histograms.md").write_text(text)


if __name__ == "__main__":
  main()
