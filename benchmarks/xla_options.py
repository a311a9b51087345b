"""Benchmark: convolutions by YNNPACK (jaxlib 0.10's CPU default) against XLA's own kernels.

    python -m benchmarks.xla_options                 # conv timings and W2's round, 3 repeats
    python -m benchmarks.xla_options --repeats 5
    python -m benchmarks.xla_options --smoke        # the convolutions once; no results (tests)

federax compiles its programs with YNNPACK's convolution fusion off
(`federax/runtime/xla_options.py`). This measures why, in one process, alternating the two:

- the EMNIST CNN's convolutions on a batch of 20 (forward, kernel gradient, input gradient),
  each jitted alone, median of 20 runs;
- W2's round program (`benchmarks/round_compile.round_program`: FedAvg round 1 of 10 writers),
  compiled with jaxlib's default YNNPACK fusions and with federax's, steady runs of each, and
  the largest relative difference between their outputs.

Writes benchmarks/results/xla_options.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import statistics
import time

import numpy as np

from benchmarks import measure, round_compile
from federax.runtime import xla_options

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
YNN = xla_options.YNN_FUSIONS
# jaxlib 0.10.2's default YNNPACK fusions, and federax's (the same less convolutions).
SETTINGS = {"YNNPACK convolutions (jaxlib's default)":
            f"{xla_options.WITHOUT_CONVOLUTIONS},{xla_options.YNN_CONVOLUTIONS}",
            "XLA's convolutions (federax's)": xla_options.WITHOUT_CONVOLUTIONS}


def library_convolutions(hlo: str) -> int:
  """Fusions handed to a library (kCustom) that hold a convolution."""
  called = set(re.findall(r"kind=kCustom, calls=%([\w.\-]+)", hlo))
  bodies = re.split(r"\n(?=%?[\w.\-]+ \()", hlo)
  return sum(" convolution(" in b for b in bodies if b.split(" ", 1)[0].lstrip("%") in called)


def convolutions() -> dict:
  """name: (function, arguments) for the CNN's two convolutions and the second's gradients."""
  import jax  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  normal = lambda *shape: jax.numpy.asarray(rng.normal(size=shape), jax.numpy.float32)
  conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  x1, w1 = normal(20, 28, 28, 1), normal(3, 3, 1, 32)
  x2, w2 = normal(20, 26, 26, 32), normal(3, 3, 32, 64)
  return {"conv1 forward": (conv, (x1, w1)), "conv2 forward": (conv, (x2, w2)),
          "conv2 kernel gradient": (jax.grad(lambda w, x: (conv(x, w) ** 2).sum()), (w2, x2)),
          "conv2 input gradient": (jax.grad(lambda x, w: (conv(x, w) ** 2).sum()), (x2, w2))}


def time_ms(compiled, args, runs: int) -> float:
  measure.block(compiled(*args))
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    measure.block(compiled(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times) * 1e3


def bench_convolutions(repeats: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  rows = {}
  for name, (fn, args) in convolutions().items():
    compiled = {s: jax.jit(fn, compiler_options={YNN: v}).lower(*args).compile()
                for s, v in SETTINGS.items()}
    times = {s: [] for s in SETTINGS}
    for _ in range(repeats):
      for s in SETTINGS:  # Interleaved.
        times[s].append(time_ms(compiled[s], args, 20))
    rows[name] = {s: statistics.median(t) for s, t in times.items()}
    rows[name]["library convolutions"] = {
        s: library_convolutions(c.as_text()) for s, c in compiled.items()}
    print(json.dumps({name: rows[name]}), flush=True)
  return rows


def bench_round(repeats: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  jitted, payload = round_compile.round_program("w2")
  lowered = jitted.lower(payload)
  compiled, outputs, compile_s = {}, {}, {}
  for s, v in SETTINGS.items():
    start = time.perf_counter()
    compiled[s] = lowered.compile(compiler_options={YNN: v})
    compile_s[s] = time.perf_counter() - start
    outputs[s] = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(
        measure.block(compiled[s](payload)))]
  runs = {s: [] for s in SETTINGS}
  for _ in range(repeats):
    for s in SETTINGS:
      runs[s].append(time_ms(compiled[s], (payload,), 3) / 1e3)
  first, second = outputs.values()
  # Normwise, per output: a weight's delta has elements near zero, where a relative error
  # says nothing.
  difference = max(float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-30))
                   for a, b in zip(first, second) if a.size)
  return {"round_s": {s: statistics.median(r) for s, r in runs.items()}, "runs": runs,
          "compile_s": compile_s, "largest_relative_difference": difference,
          "library_convolutions": {s: library_convolutions(c.as_text())
                                   for s, c in compiled.items()}}


def render(report: dict) -> str:
  (a, b) = SETTINGS
  lines = [f"# Convolutions on XLA:CPU: YNNPACK against XLA's kernels ({report['date']})", "",
           f"`{report['command']}`. Machine: {measure.describe(report['machine'])}. One "
           "process, the two settings alternated; medians of "
           f"{report['repeats']} alternations.", "",
           f"| batch of 20 | {a} ms | {b} ms | YNNPACK / XLA |", "|---|---:|---:|---:|"]
  for name, row in report["convolutions"].items():
    lines.append(f"| {name} | {row[a]:.2f} | {row[b]:.2f} | {row[a] / row[b]:.2f} |")
  r = report["round"]
  lines += ["", f"| W2's round program (10 clients) | {a} | {b} | YNNPACK / XLA |",
            "|---|---:|---:|---:|",
            f"| steady round s | {r['round_s'][a]:.3f} | {r['round_s'][b]:.3f} | "
            f"{r['round_s'][a] / r['round_s'][b]:.2f} |",
            f"| compile s | {r['compile_s'][a]:.2f} | {r['compile_s'][b]:.2f} | "
            f"{r['compile_s'][a] / r['compile_s'][b]:.2f} |",
            f"| convolutions in library fusions | {r['library_convolutions'][a]} | "
            f"{r['library_convolutions'][b]} | - |", "",
            "Largest difference between the two programs' outputs, relative to each output's "
            f"largest magnitude: {r['largest_relative_difference']:.2g} (the convolutions sum "
            "in another order; a round of SGD carries the difference through every step)."]
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--smoke", action="store_true")
  args = parser.parse_args()
  if args.smoke:
    rows = bench_convolutions(1)
    assert all(set(r["library convolutions"].values()) - {0} and
               r["library convolutions"][list(SETTINGS)[1]] == 0 for r in rows.values()), rows
    print("smoke ok")
    return
  report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": measure.machine(), "repeats": args.repeats,
            "command": "python -m benchmarks.xla_options" + (
                "" if args.repeats == 3 else f" --repeats {args.repeats}"),
            "convolutions": bench_convolutions(args.repeats), "round": bench_round(args.repeats)}
  text = render(report)
  print(text)
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "xla_options.json").write_text(json.dumps(report, indent=2) + "\n")
  (RESULTS / "xla_options.md").write_text(text)


if __name__ == "__main__":
  main()
