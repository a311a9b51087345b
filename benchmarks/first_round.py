"""Benchmark: time to the first model, W1 and W2's first round in a fresh process, cold and warm.

    python -m benchmarks.first_round               # W1 and W2, 3 processes of each kind
    python -m benchmarks.first_round --smoke       # generated, one cold + one warm (the tests)

Each measurement is a new process of `benchmarks/run_federax.py` training one round, as
`python -m benchmarks` measures "first round s" (`process.next` of round 1, compile included)
and start-up (process start to a built, initialized process). Three kinds of process:

- no cache: JAX's persistent compilation cache off, as in `benchmarks/RESULTS.md`;
- cold: the cache on, in an empty directory (what the first `federax train` on a machine does);
- warm: the cache on, in the directory a cold process of the same workload just filled.

Where TFF 0.87 is set up (`bash benchmarks/peers/tff/setup.sh`), a fourth kind of process, TFF's
runner (`benchmarks/peers/tff/run_tff.py`, as `python -m benchmarks` runs it), interleaved with
the others, so that both systems' first rounds come from one run on one machine. Without it the
table quotes TFF's figures from `benchmarks/RESULTS.md` (W1 0.77 s, W2 1.97 s).

Reports medians, the compilations each process ran and its cache hits; writes
benchmarks/results/first_round.{json,md} (not with --smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import harness, measure, workloads

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TFF_FIRST_ROUND_S = {"w1": 0.77, "w2": 1.97}  # benchmarks/RESULTS.md, median of 3 runs.
WARM_TARGET_S = 0.3
KINDS = ("no cache", "cold", "warm")
TFF = next(s for s in harness.systems("cpu") if s.name == "TFF")


def tff_process(workload: str, scratch: pathlib.Path, index: int) -> dict:
  """One fresh process of TFF's runner training one round (its `worker_binary` stopped after)."""
  run = harness.run_one(TFF, workload, scratch, dict(os.environ), 1, None, 900, index)
  if "result" not in run:
    raise SystemExit(f"{' '.join(run['command'])} failed:\n{run['error']}")
  return {"first_round_s": run["result"]["rounds"][0]["s"],
          "startup_s": run["result"]["startup_s"], "process_wall_s": run["wall_s"]}


def one_process(workload: str, out: pathlib.Path, cache: pathlib.Path | None,
                extra: list[str]) -> dict:
  """One fresh runner process training one round; its first round, start-up and compiles."""
  command = [sys.executable, "-m", "benchmarks.run_federax", "--workload", workload, "--rounds",
             "1", "--out", str(out), *extra]
  if cache is not None:
    command += ["--compilation-cache", str(cache)]
  start = time.perf_counter()
  child = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
  wall = time.perf_counter() - start
  if child.returncode:
    raise SystemExit(f"{' '.join(command)} failed:\n{child.stderr[-3000:]}")
  result = json.loads(out.read_text())
  return {"first_round_s": result["rounds"][0]["s"], "startup_s": result["startup_s"],
          "process_wall_s": wall, **result["compiles"]}


def bench(name: str, workload: str, repeats: int, scratch: pathlib.Path, extra: list[str],
          kinds=KINDS) -> dict:
  """`repeats` rounds of (no cache, cold, warm[, TFF]) processes, interleaved so that load on a
  shared machine hits the kinds alike; a new empty cache directory for each cold one."""
  runs = {kind: [] for kind in kinds}
  for i in range(repeats):
    cache = scratch / f"{name}-cache-{i}"
    out = scratch / f"{name}-{i}.json"
    for kind in kinds:
      runs[kind].append(tff_process(workload, scratch, i) if kind == "TFF" else
                        one_process(workload, out, None if kind == "no cache" else cache, extra))
      print(json.dumps({"workload": name, "kind": kind, **runs[kind][-1]}), flush=True)
  median = lambda kind, key: statistics.median(r[key] for r in runs[kind])
  summary = {kind: {key: median(kind, key) for key in runs[kind][0]} for kind in kinds}
  return {"runs": runs, "median": summary}


def render(report: dict) -> str:
  lines = [f"# Time to the first model: first rounds in a fresh process ({report['date']})", "",
           f"`{report['command']}`. Machine: {measure.describe(report['machine'])}.",
           f"Medians of {report['repeats']} processes of each kind, run interleaved. First round: "
           "`process.next` of round 1 (compiling included). Start-up: process start to an "
           "initialized process (imports, data, `initialize()`). Compilations: XLA programs "
           "the process compiled (the rest came from the cache); compile s: XLA's compile "
           "seconds (or the cache's load); trace + lower s: JAX tracing the programs and "
           "lowering them to MLIR, which a warm cache does not save. These three cover the "
           "whole process (start-up and round 1).", "",
           "| workload | process | first round s | start-up s | compilations | cache hits | "
           "compile s | trace + lower s | first round / no cache's | TFF 0.87 first round s |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  measured_tff = False
  for name, row in report["workloads"].items():
    tff = row["median"].get("TFF", {}).get("first_round_s", TFF_FIRST_ROUND_S.get(name))
    measured_tff |= "TFF" in row["median"]
    base = row["median"].get("no cache", row["median"]["cold"])["first_round_s"]
    for kind, m in row["median"].items():
      if kind == "TFF":
        lines.append(f"| {name.upper()} | TFF 0.87 | {m['first_round_s']:.2f} | "
                     f"{m['startup_s']:.2f} | - | - | - | - | - | {tff:.2f} |")
        continue
      lines.append(f"| {name.upper()} | {kind} | {m['first_round_s']:.2f} | "
                   f"{m['startup_s']:.2f} | {m['compilations']:.0f} | {m['cache_hits']:.0f} | "
                   f"{m['compile_s']:.2f} | {m['trace_s'] + m['lower_s']:.2f} | "
                   f"{m['first_round_s'] / base:.2f} | "
                   f"{'-' if tff is None else f'{tff:.2f}'} |")
  lines += ["", f"Targets: first round at most TFF's in a fresh process; at most {WARM_TARGET_S} s "
            "with a warm cache. " + (
                "TFF's figures: its runner's processes, interleaved with federax's in this run."
                if measured_tff else "TFF's figures come from `benchmarks/RESULTS.md`, another "
                "run: compare them with this run's no-cache figures through the ratio column.")]
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true",
                      help="a small generated workload, one process of each kind; no results")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--data-dir", type=pathlib.Path, default=workloads.DATA)
  args = parser.parse_args()
  if args.smoke:
    cases = {"w3": ("w3", ["--clients", "20"])}
    repeats, kinds = 1, KINDS[1:]  # Cold then warm: whether the second process compiles.
  else:
    if not (args.data_dir / "femnist-leaf").is_dir():
      sys.exit(f"No FEMNIST LEAF data at {args.data_dir / 'femnist-leaf'}; pass --data-dir.")
    cases = {name: (str(workloads.ensure(name, args.data_dir)), []) for name in ("w1", "w2")}
    repeats, kinds = args.repeats, KINDS + (() if TFF.missing() else ("TFF",))
  report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": measure.machine(), "repeats": repeats,
            "command": "python -m benchmarks.first_round" + (
                " --smoke" if args.smoke else f" --repeats {repeats}"), "workloads": {}}
  with tempfile.TemporaryDirectory() as scratch:
    for name, (workload, extra) in cases.items():
      report["workloads"][name] = bench(name, workload, repeats, pathlib.Path(scratch), extra,
                                        kinds)
  text = render(report)
  print(text)
  if args.smoke:
    warm = report["workloads"]["w3"]["median"]["warm"]
    assert warm["compilations"] == 0 and warm["cache_hits"] > 0, warm
    print("smoke ok")
    return
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "first_round.json").write_text(json.dumps(report, indent=2) + "\n")
  (RESULTS / "first_round.md").write_text(text)


if __name__ == "__main__":
  main()
