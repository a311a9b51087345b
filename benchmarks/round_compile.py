"""Benchmark: XLA:CPU's compile of a workload's round program, Threefry rolled vs straight-line.

    python -m benchmarks.round_compile                  # W1 and W2, 3 compiles of each
    python -m benchmarks.round_compile --workloads w2 --repeats 5

Trains round 1 of the workload (`benchmarks/run_federax.py`'s FedAvg), takes its round program
and payload, then lowers and compiles it again and again in this process, alternating JAX's CPU
lowering of Threefry (a rolled 5-trip `while` per hash) and the straight-line one the
vectorized runtime uses (`federax/runtime/vectorized/_threefry.py`). Reports the `while` loops
in the lowered program, XLA's compile seconds (wall, and this process's CPU seconds, steadier
on a shared machine), a steady run of the compiled round, and whether its outputs are
bit-for-bit those of the rolled lowering. Writes benchmarks/results/round_compile.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

from benchmarks import measure, run_federax, workloads

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
MODES = ("rolled", "straight-line")


def round_program(name: str):
  """(jitted round program, its payload) of the workload's round 1, after running it."""
  from federax.runtime.vectorized import _threefry, runtime as vrt  # pylint: disable=g-import-not-at-top
  from federax.learning import algorithms, optimizers  # pylint: disable=g-import-not-at-top
  inner, calls = {}, []
  wrap, program = _threefry.straight_line, vrt.VectorizedRuntime._program  # pylint: disable=protected-access

  def straight_line(jitted):
    outer = wrap(jitted)
    inner[id(outer)] = jitted
    return outer

  def traced_program(self, comp, plan):
    outer = program(self, comp, plan)
    if plan is None or plan.clients is None:
      return outer
    return lambda payload: calls.append((inner[id(outer)], payload)) or outer(payload)

  _threefry.straight_line, vrt.VectorizedRuntime._program = straight_line, traced_program  # pylint: disable=protected-access
  try:
    workload = workloads.load(workloads.ensure(name)).with_rounds(1)
    spec, datasets = workload.spec, run_federax.client_datasets(workload)
    model = run_federax.build_model(spec)
    process = algorithms.build_weighted_fed_avg(
        model, optimizers.build_sgdm(spec["client_lr"]), optimizers.build_sgdm(spec["server_lr"]))
    state = process.initialize()
    measure.block(process.next(state, [datasets[i] for i in spec["cohorts"][0]]))
  finally:
    _threefry.straight_line, vrt.VectorizedRuntime._program = wrap, program  # pylint: disable=protected-access
  import jax  # pylint: disable=g-import-not-at-top
  return max(calls, key=lambda c: len(jax.tree_util.tree_leaves(c[1])))


def compile_once(jitted, payload, mode: str, nonce: int) -> tuple[dict, list]:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from federax.runtime.vectorized import _threefry  # pylint: disable=g-import-not-at-top
  jax.clear_caches()  # Lower anew: JAX caches lowerings by the traced program.
  token = _threefry._ACTIVE.set(mode == "straight-line")  # pylint: disable=protected-access
  try:
    lowered = jitted.lower(payload)
  finally:
    _threefry._ACTIVE.reset(token)  # pylint: disable=protected-access
  wall, cpu = time.perf_counter(), time.process_time()
  # A no-op option (the dump limit, with no dump) that differs each time: JAX compiles anew.
  compiled = lowered.compile(compiler_options={"xla_dump_max_hlo_modules": -2 - nonce})
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  out = measure.block(compiled(payload))
  start = time.perf_counter()
  measure.block(compiled(payload))
  run = time.perf_counter() - start
  return ({"whiles": lowered.as_text().count("stablehlo.while"), "compile_s": wall,
           "compile_cpu_s": cpu, "run_s": run},
          [np.asarray(x) for x in jax.tree_util.tree_leaves(out)])


def bench(name: str, repeats: int) -> dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  jitted, payload = round_program(name)
  runs, reference, equal = {m: [] for m in MODES}, None, True
  for i in range(repeats):
    for mode in MODES:  # Interleaved: load on a shared machine hits both alike.
      row, leaves = compile_once(jitted, payload, mode, i * len(MODES) + MODES.index(mode))
      reference = reference or leaves
      equal &= all(np.array_equal(a, b) for a, b in zip(reference, leaves))
      runs[mode].append(row)
      print(json.dumps({"workload": name, "mode": mode, **row}), flush=True)
  median = {m: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            for m, rows in runs.items()}
  return {"runs": runs, "median": median, "bit_equal": equal}


def render(report: dict) -> str:
  lines = [f"# XLA:CPU compile of the round program: Threefry rolled vs straight-line "
           f"({report['date']})", "", f"`{report['command']}`. Machine: "
           f"{measure.describe(report['machine'])}.", f"Medians of {report['repeats']} compiles "
           "of each, interleaved in one process. compile CPU s: the process's CPU seconds "
           "during XLA's compile (both cores' work; steadier than wall on a shared machine). "
           "run s: a steady run of the compiled round. Bit-equal: every output of every "
           "compile equal to the rolled lowering's first.", "",
           "| workload | Threefry | while loops | compile s | compile CPU s | run s | "
           "compile CPU / rolled's | bit-equal |", "|---|---|---:|---:|---:|---:|---:|---|"]
  for name, row in report["workloads"].items():
    base = row["median"]["rolled"]["compile_cpu_s"]
    for mode, m in row["median"].items():
      lines.append(f"| {name.upper()} | {mode} | {m['whiles']:.0f} | {m['compile_s']:.2f} | "
                   f"{m['compile_cpu_s']:.2f} | {m['run_s']:.3f} | "
                   f"{m['compile_cpu_s'] / base:.2f} | {row['bit_equal']} |")
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workloads", nargs="+", default=["w1", "w2"], choices=["w1", "w2"])
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": measure.machine(), "repeats": args.repeats,
            "command": "python -m benchmarks.round_compile" + (
                "" if args.workloads == ["w1", "w2"] else f" --workloads {' '.join(args.workloads)}")
            + ("" if args.repeats == 3 else f" --repeats {args.repeats}"),
            "workloads": {name: bench(name, args.repeats) for name in args.workloads}}
  text = render(report)
  print(text)
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "round_compile.json").write_text(json.dumps(report, indent=2) + "\n")
  (RESULTS / "round_compile.md").write_text(text)


if __name__ == "__main__":
  main()
