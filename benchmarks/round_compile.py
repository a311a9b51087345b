"""Benchmark: XLA:CPU's compile of a workload's round program: Threefry's lowering, XLA options.

    python -m benchmarks.round_compile                  # W1 and W2, 3 compiles of each
    python -m benchmarks.round_compile --workloads w2 --repeats 5

Every `jax.random` draw, split and fold-in hashes with Threefry-2x32, which JAX lowers on CPU as
a rolled 5-trip `while` loop (straight-line on the other backends); XLA:CPU compiles each fusion
of a loop body into an LLVM module of its own. This benchmark trains round 1 of the workload
(`benchmarks/run_federax.py`'s FedAvg), takes the vectorized runtime's round program and payload,
then lowers and compiles it again and again in this process, alternating JAX's CPU rule, a
straight-line one (`hash_2x32`, registered here for CPU and active only inside this
benchmark's lowerings), XLA:CPU options that cut compile time, and the program traced with
each Threefry draw in its shape, as before the runtime drew them flat, or with a finiteness
check per leaf, as `all_finite` was before it summed every leaf's `x * 0` (`MODES`). Reports the
`while` loops in the lowered program, XLA's compile seconds (wall, and this process's CPU
seconds, steadier on a shared machine), steady runs of the compiled round, and whether its
outputs are bit-for-bit those of the default compile. Writes
benchmarks/results/round_compile.{json,md}. federax uses none of the first three
(docs/performance.md): the straight-line rule changed a `jax.random.normal` draw in its last bit, and without the
fusion emitters rounds run slower.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import json
import pathlib
import statistics
import time

import numpy as np

from benchmarks import measure, run_federax, workloads

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
# name: (Threefry straight-line, XLA compile options, Threefry draws in their shape, a
# finiteness check per leaf). Each is compiled from the same program; the last two trace it as
# it was before 2026-12-04 in one respect: without the runtime's flat draws, or with
# `all_finite` as an `all` per leaf (`per_leaf_all_finite`).
MODES = {"rolled": (False, {}, False, False), "straight-line": (True, {}, False, False),
         "no fusion emitters": (False, {"xla_cpu_use_fusion_emitters": False}, False, False),
         "no expensive LLVM passes": (False, {"xla_llvm_disable_expensive_passes": True}, False,
                                      False),
         "draws in their shape": (False, {}, True, False),
         "finiteness per leaf": (False, {}, False, True)}


def per_leaf_all_finite(tree):
  """`federax.learning._local.all_finite` before 2026-12-04: an `all` of each leaf."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_STRAIGHT = contextvars.ContextVar("straight_line_threefry", default=False)


def hash_2x32(key1, key2, x1, x2) -> list:
  """Threefry-2x32, 20 rounds, of the counts `(x1, x2)` under the key `(key1, key2)` (uint32
  arrays): JAX's `threefry2x32_p`, unrolled."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  rotl = lambda v, d: jnp.left_shift(v, np.uint32(d)) | jnp.right_shift(v, np.uint32(32 - d))
  ks = (key1, key2, key1 ^ key2 ^ np.uint32(0x1BD11BDA))
  x = [x1 + ks[0], x2 + ks[1]]
  for i in range(5):
    for r in _ROTATIONS[i % 2]:
      x[0] = x[0] + x[1]
      x[1] = x[0] ^ rotl(x[1], r)
    x[0] = x[0] + ks[(i + 1) % 3]
    x[1] = x[1] + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x


def install_straight_line() -> None:
  """A CPU rule for `threefry2x32_p`: `hash_2x32` while `_STRAIGHT` is set, else JAX's own."""
  from jax._src.interpreters import mlir as internal  # pylint: disable=g-import-not-at-top
  from jax.extend.random import threefry2x32_p  # pylint: disable=g-import-not-at-top
  from jax.interpreters import mlir  # pylint: disable=g-import-not-at-top
  original = internal._platform_specific_lowerings["cpu"][threefry2x32_p].rule  # pylint: disable=protected-access
  straight = mlir.lower_fun(hash_2x32, multiple_results=True)
  mlir.register_lowering(threefry2x32_p, lambda ctx, *args, **params: (
      straight if _STRAIGHT.get() else original)(ctx, *args, **params), platform="cpu")


def round_program(name: str):
  """(jitted round program, its payload) of the workload's round 1, after running it."""
  import jax  # pylint: disable=g-import-not-at-top
  from federax.learning import algorithms, optimizers  # pylint: disable=g-import-not-at-top
  from federax.runtime.vectorized import runtime as vrt  # pylint: disable=g-import-not-at-top
  calls, program = [], vrt.VectorizedRuntime._program  # pylint: disable=protected-access

  def traced_program(self, comp, plan):
    jitted = program(self, comp, plan)
    if plan is None or plan.clients is None:
      return jitted
    return lambda payload: calls.append((jitted, payload)) or jitted(payload)

  vrt.VectorizedRuntime._program = traced_program  # pylint: disable=protected-access
  try:
    workload = workloads.load(workloads.ensure(name)).with_rounds(1)
    spec, datasets = workload.spec, run_federax.client_datasets(workload)
    model = run_federax.build_model(spec)
    process = algorithms.build_weighted_fed_avg(
        model, optimizers.build_sgdm(spec["client_lr"]), optimizers.build_sgdm(spec["server_lr"]))
    state = process.initialize()
    measure.block(process.next(state, [datasets[i] for i in spec["cohorts"][0]]))
  finally:
    vrt.VectorizedRuntime._program = program  # pylint: disable=protected-access
  return max(calls, key=lambda c: len(jax.tree_util.tree_leaves(c[1])))


def compile_once(jitted, payload, mode: str, nonce: int) -> tuple[dict, list]:
  import jax  # pylint: disable=g-import-not-at-top
  jax.clear_caches()  # Lower anew: JAX caches lowerings by the traced program.
  from federax.runtime.vectorized import _cpu_rewrites  # pylint: disable=g-import-not-at-top
  straight, options, shaped, per_leaf = MODES[mode]
  token, flat = _STRAIGHT.set(straight), _cpu_rewrites._threefry_draw_of_dimensions  # pylint: disable=protected-access
  if shaped:  # As before 2026-12-04: each draw hashed in its shape.
    _cpu_rewrites._threefry_draw_of_dimensions = lambda eqn: False  # pylint: disable=protected-access
  try:
    with finiteness(per_leaf):
      lowered = jitted.lower(payload)
  finally:
    _STRAIGHT.reset(token)
    _cpu_rewrites._threefry_draw_of_dimensions = flat  # pylint: disable=protected-access
  wall, cpu = time.perf_counter(), time.process_time()
  # A no-op option (the dump limit, with no dump) that differs each time: JAX compiles anew.
  compiled = lowered.compile(compiler_options={"xla_dump_max_hlo_modules": -2 - nonce, **options})
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  out = measure.block(compiled(payload))
  runs = []
  for _ in range(3):
    start = time.perf_counter()
    measure.block(compiled(payload))
    runs.append(time.perf_counter() - start)
  run = statistics.median(runs)
  return ({"whiles": lowered.as_text().count("stablehlo.while"), "compile_s": wall,
           "compile_cpu_s": cpu, "run_s": run},
          [np.asarray(x) for x in jax.tree_util.tree_leaves(out)])


@contextlib.contextmanager
def finiteness(per_leaf: bool):
  """`all_finite` per leaf inside the block (as before 2026-12-04) if `per_leaf`."""
  from federax.learning import _local  # pylint: disable=g-import-not-at-top
  from federax.learning.templates import finalizers  # pylint: disable=g-import-not-at-top
  current = _local.all_finite
  if per_leaf:
    _local.all_finite = finalizers.all_finite = per_leaf_all_finite
  try:
    yield
  finally:
    _local.all_finite = finalizers.all_finite = current


def bench(name: str, repeats: int) -> dict:
  # A process traces its local computations when it is built: the per-leaf check needs its own.
  programs = {}
  for per_leaf in sorted({m[3] for m in MODES.values()}):
    with finiteness(per_leaf):
      programs[per_leaf] = round_program(name)
  runs, reference = {m: [] for m in MODES}, None
  for i in range(repeats):
    for mode in MODES:  # Interleaved: load on a shared machine hits all alike.
      jitted, payload = programs[MODES[mode][3]]
      row, leaves = compile_once(jitted, payload, mode, i * len(MODES) + list(MODES).index(mode))
      reference = reference or leaves
      row["bit_equal"] = all(np.array_equal(a, b) for a, b in zip(reference, leaves))
      runs[mode].append(row)
      print(json.dumps({"workload": name, "mode": mode, **row}), flush=True)
  median = {m: {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "bit_equal"}
            for m, rows in runs.items()}
  for m, rows in runs.items():
    median[m]["bit_equal"] = all(r["bit_equal"] for r in rows)
  return {"runs": runs, "median": median}


def render(report: dict) -> str:
  lines = [f"# XLA:CPU compile of the round program: Threefry's lowering and XLA options "
           f"({report['date']})", "", f"`{report['command']}`. Machine: "
           f"{measure.describe(report['machine'])}.", f"Medians of {report['repeats']} compiles "
           "of each, interleaved in one process. compile CPU s: the process's CPU seconds "
           "during XLA's compile (both cores' work; steadier than wall on a shared machine). "
           "run s: steady runs of the compiled round (median of 3). Bit-equal: every output of "
           "every compile equal to the default's (rolled, no options) first.", "",
           "| workload | compiled with | while loops | compile s | compile CPU s | run s | "
           "compile CPU / default's | bit-equal |", "|---|---|---:|---:|---:|---:|---:|---|"]
  for name, row in report["workloads"].items():
    base = row["median"]["rolled"]["compile_cpu_s"]
    for mode, m in row["median"].items():
      lines.append(f"| {name.upper()} | {mode} | {m['whiles']:.0f} | {m['compile_s']:.2f} | "
                   f"{m['compile_cpu_s']:.2f} | {m['run_s']:.3f} | "
                   f"{m['compile_cpu_s'] / base:.2f} | {m['bit_equal']} |")
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workloads", nargs="+", default=["w1", "w2"], choices=["w1", "w2"])
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  install_straight_line()
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
