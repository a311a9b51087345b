"""Benchmark: one FedAvg round from intrinsics vs the hand-written JAX floor and the sequential runtime.

    python -m benchmarks.core_round            # the full run (several minutes on 2 cores)
    python -m benchmarks.core_round --smoke    # one tiny round per program (the test suite runs this)

Clients hold 80-120 random 28x28 examples (about 100); 5 epochs of batch 20 as masked batches.
Prints a table and writes benchmarks/results/core_round.{json,md}. Seconds per round are
medians over repeats after a first (compiling) call, which is reported separately.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import subprocess
import sys
import time

import jax
import numpy as np

import federax as fx
from benchmarks import fedavg_programs as programs
from benchmarks import measure
from federax.runtime.padding import bucket
from federax.simulation import Dataset

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
BATCH, EPOCHS = 20, 5


def make_clients(n: int, rng: np.random.Generator, epochs: int = EPOCHS) -> list:
  datasets = []
  for _ in range(n):
    size = int(rng.integers(80, 121))
    data = {"x": rng.random((size, 784), dtype=np.float32),
            "y": rng.integers(0, 10, size).astype(np.int32)}
    datasets.append(Dataset.from_tensor_slices(data).repeat(epochs).masked_batch(BATCH))
  return datasets


def stacked_arrays(datasets: list) -> tuple:
  """The floor's inputs: the same padded batches, stacked to [clients, batches, ...]."""
  stacks = [d.to_stacked() for d in datasets]
  length = bucket(max(s["x"].shape[0] for s in stacks))
  pad = lambda a: np.concatenate([a, np.zeros((length - a.shape[0],) + a.shape[1:], a.dtype)])
  x = np.stack([pad(s["x"]) for s in stacks])
  y = np.stack([pad(s["y"]) for s in stacks])
  mask = np.stack([pad(s["mask"]) for s in stacks])
  real = np.stack([pad(np.ones(s["x"].shape[0], bool)) for s in stacks])
  return x, y, mask, real


def timed(fn, repeats: int) -> tuple[float, float]:
  """(first call seconds, median seconds of `repeats` further calls)."""
  t = measure.timed(fn, repeats)
  return t["first_s"], t["s"]


def bench_model(name: str, logits_fn, model, n: int, repeats: int, sequential: bool,
                epochs: int) -> dict:
  rng = np.random.default_rng(n)
  datasets = make_clients(n, rng, epochs)
  arrays = stacked_arrays(datasets)
  fedavg_round = programs.federax_round(logits_fn, model, BATCH)
  row = {"model": name, "clients": n, "batches_per_client": int(arrays[3].shape[1]),
         "examples_per_round": int(arrays[2].sum())}

  with fx.runtime.vectorized() as runtime:
    row["federax_first_s"], row["federax_s"] = timed(lambda: fedavg_round(model, datasets), repeats)
    cached = [d.cache() for d in datasets]  # What a user whose clients return every round does.
    _, row["federax_cached_s"] = timed(lambda: fedavg_round(model, cached), repeats)
    row["streamed"] = _streams(runtime, lambda: fedavg_round(model, datasets))
    if not row["streamed"]:  # A streamed round reads its data while the program runs.
      plan, payload = _prepared(runtime, fedavg_round, model, datasets)
      program = runtime._program(fedavg_round, plan)
      _, row["federax_compute_s"] = timed(lambda: program(payload), repeats)
  floors = {"scan": programs.floor_round(logits_fn)}
  if name == "conv":
    floors["unrolled_scan"] = programs.floor_round(logits_fn, unroll=arrays[3].shape[1])
    floors["client_loop"] = programs.floor_round_client_loop(logits_fn)
  for floor_name, floor in floors.items():
    first, median = timed(lambda: floor(model, *arrays), repeats)
    row[f"floor_{floor_name}_first_s"], row[f"floor_{floor_name}_s"] = first, median
  best = min(row[f"floor_{f}_s"] for f in floors)
  row["floor_best_s"] = best
  row["ratio_to_floor"] = row["federax_s"] / best
  if "federax_compute_s" in row:
    row["compute_ratio_to_floor"] = row["federax_compute_s"] / best
  if sequential:
    with fx.runtime.sequential():
      row["sequential_first_s"], row["sequential_s"] = timed(
          lambda: fedavg_round(model, datasets), min(repeats, 1))
    row["sequential_ratio"] = row["sequential_s"] / row["federax_s"]
  reference = programs.floor_round(logits_fn)(model, *arrays)
  result = fedavg_round(model, datasets)
  row["max_abs_diff_vs_floor"] = float(max(np.max(np.abs(np.asarray(result[k]) - np.asarray(reference[k])))
                                           for k in reference))
  return row


def _streams(runtime, call) -> bool:
  """Whether `call` reads its client datasets while the program runs (`runtime.streaming`)."""
  reads = []
  original = runtime._streams.read
  runtime._streams.read = lambda *args: reads.append(args) or original(*args)
  try:
    call()
  finally:
    del runtime._streams.read
  return bool(reads)


def _prepared(runtime, comp, model, datasets):
  """The call's plan and converted argument, to time the compiled program without host-side
  stacking."""
  from federax.runtime import _invoke
  signature, python_arg, _ = _invoke.bind(comp, (model, datasets), {})
  plan, payload, _ = runtime._prepare(comp, signature, python_arg, traced=False)
  return plan, payload


def memory_probe(n: int, chunk: int | None) -> dict:
  """Peak resident memory of one process running one round (run in a fresh subprocess)."""
  rng = np.random.default_rng(n)
  datasets = make_clients(n, rng)
  model = programs.linear_model(rng)
  input_bytes = sum(d.to_stacked()["x"].nbytes for d in datasets)
  fedavg_round = programs.federax_round(programs.linear_logits, model, BATCH)
  before = measure.vm_hwm_mib()
  with fx.runtime.vectorized(chunk_size=chunk) as runtime:
    streamed = _streams(runtime, lambda: fedavg_round(model, datasets))
  peak = measure.vm_hwm_mib()
  return {"clients": n, "chunk_size": chunk, "streamed": streamed,
          "peak_rss_mb": peak, "rss_growth_during_round_mb": peak - before,
          "input_mb": input_bytes / 2**20, "data_mb": input_bytes / EPOCHS / 2**20}


MEMORY_PROBES = [(100, 128), (1000, 128), (2000, 128), (1000, None)]  # 128: the default.


def run_memory(n: int, chunk: int | None) -> dict:
  out = subprocess.run([sys.executable, "-m", "benchmarks.core_round", "--memory-probe", str(n),
                        str(chunk)], capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true", help="one tiny round of each program")
  parser.add_argument("--memory-probe", nargs=2, metavar=("CLIENTS", "CHUNK"))
  parser.add_argument("--memory-only", action="store_true",
                      help="redo only the memory probes, keeping the timed rounds in the results")
  args = parser.parse_args()
  if args.memory_only:
    report = json.loads((RESULTS / "core_round.json").read_text())
    report["memory"] = [run_memory(n, chunk) for n, chunk in MEMORY_PROBES]
    report["memory_command"] = "python -m benchmarks.core_round --memory-only"
    (RESULTS / "core_round.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "core_round.md").write_text(render(report))
    print(render(report))
    return
  if args.memory_probe:
    n, chunk = int(args.memory_probe[0]), args.memory_probe[1]
    print(json.dumps(memory_probe(n, None if chunk == "None" else int(chunk))))
    return

  rng = np.random.default_rng(0)
  if args.smoke:
    configs = [("linear", programs.linear_logits, programs.linear_model(rng), 3, 1, True, 1),
               ("conv", programs.conv_logits, programs.conv_model(rng), 2, 1, False, 1)]
  else:
    configs = [("linear", programs.linear_logits, programs.linear_model(rng), 10, 5, True, EPOCHS),
               ("linear", programs.linear_logits, programs.linear_model(rng), 100, 5, True, EPOCHS),
               ("linear", programs.linear_logits, programs.linear_model(rng), 1000, 3, True, EPOCHS),
               ("conv", programs.conv_logits, programs.conv_model(rng), 10, 3, True, EPOCHS)]
  rows = []
  for config in configs:
    row = bench_model(*config)
    rows.append(row)
    print(json.dumps(row), flush=True)
  memory = [] if args.smoke else [run_memory(n, chunk) for n, chunk in MEMORY_PROBES]
  report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{measure.describe(measure.machine())}, "
            f"{jax.device_count()} {jax.default_backend()} device(s)",
            "versions": {"federax": fx.__version__, "jax": jax.__version__, "python": platform.python_version()},
            "command": "python -m benchmarks.core_round" + (" --smoke" if args.smoke else ""),
            "rounds": rows, "memory": memory}
  if args.smoke:
    assert all(r["max_abs_diff_vs_floor"] < 1e-4 for r in rows), rows
    print("smoke ok")
    return
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "core_round.json").write_text(json.dumps(report, indent=2))
  (RESULTS / "core_round.md").write_text(render(report))
  print(render(report))


def render(report: dict) -> str:
  lines = [f"# FedAvg round from intrinsics vs the hand-written floor ({report['date']})", "",
           f"Machine: {report['machine']}; versions: {report['versions']}.",
           f"Command: `{report['command']}`.", "",
           "| model | clients | batches/client | federax s/round | cached datasets s | federax compiled program s | "
           "best floor s | ratio | compute ratio | floor variants s | first call s (federax / floor) "
           "| sequential s/round | max |diff| |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in report["rounds"]:
    variants = ", ".join(f"{k[6:-2]} {v:.4f}" for k, v in r.items()
                         if k.startswith("floor_") and k.endswith("_s") and "first" not in k
                         and "best" not in k)
    seq = f"{r['sequential_s']:.3f} ({r['sequential_ratio']:.2f}x federax)" if "sequential_s" in r else "-"
    compute = (f"{r['federax_compute_s']:.4f}", f"{r['compute_ratio_to_floor']:.2f}") \
        if "federax_compute_s" in r else ("(streamed)", "-")
    lines.append(
        f"| {r['model']} | {r['clients']} | {r['batches_per_client']} | {r['federax_s']:.4f} | "
        f"{r['federax_cached_s']:.4f} | {compute[0]} | {r['floor_best_s']:.4f} | {r['ratio_to_floor']:.2f} | "
        f"{compute[1]} | {variants} | {r['federax_first_s']:.2f} / "
        f"{r['floor_scan_first_s']:.2f} | {seq} | {r['max_abs_diff_vs_floor']:.1e} |")
  lines += ["", "Ratio: federax seconds per round (datasets in, NumPy out) over the best floor "
            "(arrays already stacked). Cached datasets: the same round on the datasets' `cache()`, as "
            "for clients that return every round. Compute ratio: federax's compiled program alone over "
            "the floor (not for a streamed cohort, whose datasets are read while the program runs).",
            "", "Peak memory of one round in a fresh process (VmHWM), linear model. Client data: the "
            "clients' arrays as held before the round; stacked: their 5 epochs of padded batches.", "",
            "| clients | chunk size | streamed | peak RSS MB | growth during round MB | client data MB "
            "| stacked MB |", "|---|---|---|---|---|---|---|"]
  for m in report["memory"]:
    lines.append(f"| {m['clients']} | {m['chunk_size']} | {'yes' if m.get('streamed') else 'no'} | "
                 f"{m['peak_rss_mb']:.0f} | {m['rss_growth_during_round_mb']:.0f} | "
                 f"{m.get('data_mb', m['input_mb'] / EPOCHS):.0f} | {m['input_mb']:.0f} |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
