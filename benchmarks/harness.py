"""federax side by side with TFF, Flower and the centralized floors: `python -m benchmarks`.

    python -m benchmarks                      # W1, W2, W3, every installed system (16 min here)
    python -m benchmarks --workloads w1 --systems federax tff --repeats 3
    python -m benchmarks --smoke              # federax only, tiny: checks the harness (tests)
    python -m benchmarks --device gpu         # federax and the JAX floor on the GPU: W2, CIFAR-10
    python -m benchmarks export               # writes the workload files only

Every system runs each workload in a fresh process, `--repeats` times, the systems taking turns
so that load on a shared machine hits them alike. The runners (`run_federax.py`,
`peers/*/run_*.py`) read the same workload files and write one JSON each (peers/FORMAT.md); this
harness samples the proportional set size of each runner's whole process tree, stops what a
runner leaves behind, and writes `benchmarks/RESULTS.md` and `benchmarks/results/suite.json`.
Peers are set up by `bash benchmarks/peers/<peer>/setup.sh`; a peer not set up is skipped and
RESULTS.md says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
from typing import Optional

from benchmarks import measure, process_tree, workloads

ROOT = workloads.ROOT
BENCH = ROOT / "benchmarks"
PEERS = BENCH / "peers"


@dataclasses.dataclass(frozen=True)
class System:
  """One contender: how to run a workload file, and which workloads it takes."""

  name: str
  setting: str
  workloads: tuple
  argv: tuple            # The command before `--workload W --out O`.
  python: pathlib.Path   # Its interpreter: it must exist for the system to run.
  role: str = "framework"  # or "floor"

  @property
  def label(self) -> str:
    return f"{self.name} ({self.setting})" if self.setting else self.name

  def missing(self) -> Optional[str]:
    if not self.python.exists():
      return f"not set up ({self.python} missing)"
    script = next((pathlib.Path(a) for a in self.argv if a.endswith(".py")), None)
    if script is not None and not script.exists():
      return f"{script} missing"
    return None


def systems(device: str) -> list[System]:
  here = pathlib.Path(sys.executable)
  federax = ("-m", "benchmarks.run_federax")
  tff_python = PEERS / "tff" / ".venv" / "bin" / "python"
  flower_python = PEERS / "flower" / ".venv" / "bin" / "python"
  flower = (str(PEERS / "flower" / "run_flower.py"),)
  found = [
      System("federax", "", ("w1", "w2", "w3", "cifar10"), federax, here),
      System("JAX (centralized)", "lax.scan", ("w1", "w3"),
             federax + ("--system", "floor", "--floor-loop", "scan"), here, "floor"),
      System("JAX (centralized)", "jitted step, Python loop", ("w1", "w2", "cifar10"),
             federax + ("--system", "floor", "--floor-loop", "python"), here, "floor"),
  ]
  if device == "cpu":
    found += [
        System("TFF", "", ("w1", "w2"), (str(PEERS / "tff" / "run_tff.py"),), tff_python),
        System("Flower", "num_cpus=1", ("w1", "w2"), flower + ("--num-cpus", "1"),
               flower_python),
        System("Flower", "num_cpus=2", ("w1", "w2"), flower + ("--num-cpus", "2"),
               flower_python),
        System("PyTorch (centralized)", "", ("w1", "w2"), flower + ("--centralized",),
               flower_python, "floor"),
    ]
  return found


# --- Running --------------------------------------------------------------------------------------

def run_one(system: System, workload: str, out_dir: pathlib.Path, env: dict, rounds: Optional[int],
            clients: Optional[int], timeout: float, index: int) -> dict:
  """One fresh process of `system` on `workload`; its result JSON plus the harness's figures."""
  name = pathlib.Path(workload).stem
  stem = f"{name}-{system.label}-{index}".replace(" ", "_").replace("/", "_")
  out = out_dir / f"{stem}.json"
  command = [str(system.python), *system.argv, "--workload", workload, "--out", str(out)]
  if rounds:
    command += ["--rounds", str(rounds)]
  if clients and workload in ("w3", "cifar10"):
    command += ["--clients", str(clients)]
  if system.python == pathlib.Path(sys.executable):  # federax's runners import `benchmarks`.
    env = dict(env, PYTHONPATH=str(ROOT))
  measured = process_tree.run_measured(command, env=env, timeout=timeout,
                                       log_path=str(out_dir / f"{stem}.log"))
  run = {"command": command, "returncode": measured["returncode"], "wall_s": measured["wall_s"],
         "peak_pss_mib": measured["peak_pss_mib"],
         "leftovers_stopped": sorted(set(measured["leftovers"].values()))}
  if measured["returncode"] == 0 and out.exists():
    run["result"] = json.loads(out.read_text())
  else:
    run["error"] = measured["output"][-2000:]
  return run


def summarize(runs: list) -> dict:
  """Medians over runs of: seconds per round (median after the first), first round, start-up,
  examples per second (all rounds after the first), peak PSS."""
  good = [r for r in runs if "result" in r]
  if not good:
    return {"runs": len(runs), "failed": len(runs), "error": runs[0].get("error", "")}

  def per_run(r):
    rounds = r["result"]["rounds"]
    later = rounds[1:] or rounds
    return {"round_s": statistics.median(x["s"] for x in later),
            "first_round_s": rounds[0]["s"],
            "startup_s": r["result"].get("startup_s", float("nan")),
            "examples_per_s": sum(x["examples"] for x in later) / sum(x["s"] for x in later),
            "peak_pss_mib": r["peak_pss_mib"], "examples_per_round": rounds[0]["examples"],
            "final_loss": rounds[-1].get("loss")}

  figures = [per_run(r) for r in good]
  summary = {k: statistics.median(f[k] for f in figures)
             for k in ("round_s", "first_round_s", "startup_s", "examples_per_s",
                       "peak_pss_mib")}
  summary.update(runs=len(runs), failed=len(runs) - len(good), per_run=figures,
                 versions=good[0]["result"].get("versions", {}),
                 version=good[0]["result"].get("version", ""),
                 notes=good[0]["result"].get("notes", []),
                 leftovers_stopped=sorted({n for r in runs for n in r["leftovers_stopped"]}))
  memory = good[0]["result"].get("memory")
  if memory:
    summary["memory"] = memory
  return summary


# --- Report ---------------------------------------------------------------------------------------

TARGETS = {
    "w1": "federax >= 20x faster per round than TFF, >= 10x than Flower's best setting, and "
          "<= 1.25x the centralized JAX loop's seconds per round",
    "w2": "federax >= 0.8 of the centralized JAX floor's examples/s, and per round at least as "
          "fast as TFF and Flower",
    "w3": "resident memory flat within 5% from round 100 to round 1,000",
}


def verdicts(table: dict) -> dict:
  """Each workload's target, checked on this run's medians."""
  out = {}
  for workload, rows in table.items():
    ours = rows.get("federax")
    if not ours or "round_s" not in ours:
      continue
    lines = []

    def best(prefix):
      found = [(label, r) for label, r in rows.items() if label.startswith(prefix)
               and "round_s" in r]
      return min(found, key=lambda lr: lr[1]["round_s"]) if found else (None, None)

    floor_label, floor = best("JAX (centralized)")
    if floor and workload == "w1":
      ratio = ours["round_s"] / floor["round_s"]
      lines.append(("federax / centralized JAX, seconds per round", ratio, ratio <= 1.25,
                    floor_label))
    elif floor:
      efficiency = ours["examples_per_s"] / floor["examples_per_s"]
      lines.append(("federax / centralized JAX, examples per second", efficiency,
                    efficiency >= 0.8 if workload == "w2" else None, floor_label))
    for peer, need in (("TFF", 20.0 if workload == "w1" else 1.0),
                       ("Flower", 10.0 if workload == "w1" else 1.0)):
      label, row = best(peer)
      if row:
        speedup = row["round_s"] / ours["round_s"]
        lines.append((f"{label} / federax, seconds per round", speedup,
                      speedup >= need if workload in ("w1", "w2") else None, f">= {need:g}x"))
    if workload == "w3" and ours.get("memory"):
      later = [m["rss_mib"] for m in ours["memory"] if m["round"] >= 100]
      if len(later) >= 2 and max(m["round"] for m in ours["memory"]) >= 1000:
        middle = statistics.median(later)
        spread = max(abs(x / middle - 1) for x in later)
        lines.append(("largest deviation of resident memory from its median, rounds 100 to "
                      "1,000", spread, spread <= 0.05, "every sample within 5%"))
    out[workload] = lines
  return out


def render(report: dict) -> str:
  lines = [f"# Benchmarks: federax, TFF, Flower and the centralized floors ({report['date']})", "",
           f"Produced by `{report['command']}` in {report['wall_s'] / 60:.1f} minutes. Machine: "
           + ", ".join(f"{k} {v}" for k, v in report["machine"].items()) + ".",
           f"Device: {report['device']}. Each figure is the median over {report['repeats']} runs, "
           "each run a fresh process; seconds per round is the median of a run's rounds after "
           "the first; examples/s counts every round after the first (recompiling ones "
           "included); peak memory is the proportional set size of the runner's whole process "
           "tree, sampled every 0.25 s.", ""]
  for workload, rows in report["table"].items():
    lines += [f"## {workload.upper()}: {report['descriptions'].get(workload, '')}", "",
              "| system | s / round | examples / s | first round s | start-up s | "
              "peak PSS MiB | runs |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, row in rows.items():
      if "round_s" not in row:
        lines.append(f"| {label} | failed | | | | | {row.get('runs', 0)} |")
        continue
      lines.append(f"| {label} | {row['round_s']:.4f} | {row['examples_per_s']:,.0f} | "
                   f"{row['first_round_s']:.2f} | {row['startup_s']:.1f} | "
                   f"{row['peak_pss_mib']:,.0f} | {row['runs'] - row['failed']} |")
    lines.append("")
    for name, value, met, detail in report["verdicts"].get(workload, []):
      verdict = "" if met is None else (" (target met)" if met else " (**target missed**)")
      shown = f"{value:.1%}" if "memory" in name else f"{value:.2f}"
      lines.append(f"- {name}: **{shown}** [{detail}]{verdict}")
    for label, reason in report["skipped"].get(workload, {}).items():
      lines.append(f"- {label}: skipped, {reason}.")
    for label, row in rows.items():
      if row.get("leftovers_stopped"):
        lines.append(f"- {label}: processes left running after the runner exited, stopped by "
                     f"the harness: {', '.join(row['leftovers_stopped'])}.")
      if row.get("memory") and workload in ("w3", "cifar10"):
        lines.append(f"- {label}: resident memory (MiB) by round: " + ", ".join(
            f"{m['round']}: {m['rss_mib']:.0f}" for m in row["memory"]))
    lines.append("")
  lines += ["## Versions", ""]
  for workload, rows in report["table"].items():
    for label, row in rows.items():
      if row.get("versions"):
        lines.append(f"- {label}: " + ", ".join(f"{k} {v}" for k, v in row["versions"].items()
                                                if k != "devices"))
    break
  lines += ["", "## Raw figures (each run)", ""]
  for workload, rows in report["table"].items():
    for label, row in rows.items():
      for i, run in enumerate(row.get("per_run", [])):
        lines.append(f"- {workload} {label} run {i + 1}: " + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in run.items()))
  notes = BENCH / "RESULTS_NOTES.md"
  if notes.exists() and not report["smoke"]:
    lines += ["", notes.read_text().strip()]
  return "\n".join(lines) + "\n"


# --- Main -----------------------------------------------------------------------------------------

DESCRIPTIONS = {
    "w1": "TFF's seed tutorial (10 digit writers, 5 epochs of batch 20, linear, 10 rounds)",
    "w2": "EMNIST `cnn_dropout`, 62 classes, 10 writers a round, 1 epoch of batch 20, 20 rounds",
    "w3": "1,000 clients a round of 100 Synthetic(1,1) examples, logistic regression, 1 epoch "
          "of batch 10, 1,000 rounds (federax only)",
    "cifar10": "pfl-research's CIFAR-10 setup: 1,000 clients of 50 synthetic 32x32x3 images, 50 "
               "a round, 1 epoch of batch 10, `simple_cnn`",
}


def parse(argv) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("command", nargs="?", choices=["run", "export"], default="run")
  parser.add_argument("--workloads", nargs="+", choices=list(DESCRIPTIONS))
  parser.add_argument("--systems", nargs="+", help="names to include: federax, jax, tff, flower, "
                      "pytorch (default: every installed one)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
  parser.add_argument("--smoke", action="store_true",
                      help="federax and the JAX floor only, one tiny round of each workload")
  parser.add_argument("--data-dir", type=pathlib.Path, default=workloads.DATA)
  parser.add_argument("--results", type=pathlib.Path, default=None,
                      help="where RESULTS.md goes (default benchmarks/RESULTS.md; smoke: a "
                           "temporary directory)")
  parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse(argv)
  if args.command == "export":
    for name in ("w1", "w2"):
      print(workloads.export(name, args.data_dir, workloads.CACHE))
    return 0
  started = datetime.datetime.now(datetime.timezone.utc)
  chosen = args.workloads or (["w2", "cifar10"] if args.device == "gpu" else ["w1", "w2", "w3"])
  env = dict(os.environ, JAX_PLATFORMS="cuda" if args.device == "gpu" else "cpu")
  if args.device == "gpu":
    check = subprocess.run([sys.executable, "-c", "import jax; print(jax.devices('gpu'))"],
                           env=env, capture_output=True, text=True, check=False)
    if check.returncode:
      print("--device gpu: JAX sees no GPU here (install jax[cuda12] on a GPU machine).",
            file=sys.stderr)
      return 2
  contenders = [s for s in systems(args.device) if not args.systems or any(
      s.name.lower().startswith(want.lower()) for want in args.systems)]
  if args.smoke:
    contenders = [s for s in contenders if s.python == pathlib.Path(sys.executable)]
  repeats = 1 if args.smoke else args.repeats
  cache = workloads.CACHE / "smoke" if args.smoke else workloads.CACHE
  out_dir = pathlib.Path(tempfile.mkdtemp(prefix="federax-bench-"))
  results = args.results or ((out_dir / "RESULTS.md") if args.smoke else BENCH / "RESULTS.md")

  table: dict = {}
  skipped: dict = {}
  for workload in chosen:
    if workload in ("w1", "w2"):
      if not (args.data_dir / "femnist-leaf").exists():
        print(f"{workload}: skipped, no FEMNIST under {args.data_dir}", file=sys.stderr)
        continue
      path = str(workloads.export(workload, args.data_dir, cache, smoke=True) if args.smoke
                 else workloads.ensure(workload, args.data_dir, cache))
    else:
      path = workload
    rounds, clients = (2, 8) if args.smoke else (None, None)
    runs: dict = {}
    for s in contenders:
      if workload not in s.workloads:
        continue
      reason = s.missing()
      if reason:
        skipped.setdefault(workload, {})[s.label] = reason
        continue
      runs[s.label] = []
    for index in range(1 if workload == "w3" else repeats):
      for s in contenders:
        if s.label not in runs:
          continue
        run = run_one(s, path, out_dir, env, rounds, clients, args.timeout, index)
        runs[s.label].append(run)
        status = "ok" if "result" in run else f"FAILED (see {out_dir})"
        print(f"{workload} {s.label} run {index + 1}: {status}, {run['wall_s']:.1f} s wall, "
              f"peak PSS {run['peak_pss_mib']:.0f} MiB", flush=True)
    table[workload] = {label: summarize(r) for label, r in runs.items()}

  report = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": measure.machine(),
            "device": args.device, "repeats": repeats, "smoke": args.smoke,
            "command": "python -m benchmarks " + " ".join(argv if argv is not None
                                                          else sys.argv[1:]),
            "descriptions": DESCRIPTIONS, "table": table, "skipped": skipped}
  report["verdicts"] = verdicts(table)
  report["wall_s"] = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
  text = render(report)
  print(text)
  results.parent.mkdir(parents=True, exist_ok=True)
  results.write_text(text)
  raw = results.parent / "suite.json" if args.smoke else BENCH / "results" / "suite.json"
  raw.write_text(json.dumps(report, indent=1, default=str) + "\n")
  failed = [f"{w} {label}" for w, rows in table.items() for label, row in rows.items()
            if row.get("failed")]
  if failed:
    print("failed runs: " + ", ".join(failed), file=sys.stderr)
    return 1
  if args.smoke:
    print("smoke ok")
  return 0
