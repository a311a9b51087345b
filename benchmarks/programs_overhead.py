"""Overhead of the program layer: `run_training_process` with checkpoints and every release
manager, against the same rounds called in a bare loop.

    python -m benchmarks.programs_overhead [--rounds 200] [--repeats 3] [--data-dir DIR]

The workload is the `emnist_digits` baseline (the seed tutorial: linear 784->10 from zeros,
10 writers per round, 5 epochs, batch 20, client SGD 0.02, server SGD 1.0) on the FEMNIST
writers in `../shared/data/femnist-leaf`. Both contenders run the same process object (compiled
before timing) and build each round's client datasets with the same selection function, so the
difference is the loop, the metric flattening, the CSV, TensorBoard, in-memory and logging
release managers, and a checkpoint every 10 rounds. Contenders run in pairs, in alternating order, `--repeats` times
each; medians are reported, and the overhead is the median of the paired ratios. Writes benchmarks/results/programs_overhead.{json,md}. Target: under 5% extra time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import platform
import statistics
import tempfile
import time

import jax

import federax as fx
from benchmarks import measure
from federax import program
from federax.simulation import baselines, build_client_selection_fn, run_training_process

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "femnist-leaf"
CHECKPOINT_EVERY = 10


def build(data_dir: pathlib.Path, clients_per_round: int, seed: int = 0):
  spec = baselines.ClientSpec(num_epochs=5, batch_size=20, shuffle_buffer_size=100)
  task = baselines.create_task("emnist_digits", spec, data_dir=data_dir, seed=seed)
  process = fx.learning.algorithms.build_weighted_fed_avg(
      task.model_fn, fx.learning.optimizers.build_sgdm(0.02),
      fx.learning.optimizers.build_sgdm(1.0))
  select = build_client_selection_fn(task.datasets.train_data, clients_per_round,
                                     task.datasets.train_preprocess_fn, seed=seed)
  return process, select


def bare_loop(process, select, rounds: int) -> float:
  start = time.perf_counter()
  state = process.initialize()
  for round_num in range(1, rounds + 1):
    state, _ = process.next(state, select(round_num))
  jax.block_until_ready(state)
  return time.perf_counter() - start


def program_loop(process, select, rounds: int) -> float:
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    managers = [program.CSVFileReleaseManager(tmp / "metrics.csv", key_fieldname="round"),
                program.TensorBoardReleaseManager(tmp / "events"),
                program.MemoryReleaseManager(), program.LoggingReleaseManager()]
    start = time.perf_counter()
    state = run_training_process(
        process, select, rounds,
        program_state_manager=program.FileProgramStateManager(tmp / "checkpoints"),
        rounds_per_saving_program_state=CHECKPOINT_EVERY, metrics_managers=managers)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    managers[1].close()
    return seconds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=200)
  parser.add_argument("--repeats", type=int, default=6)
  parser.add_argument("--clients-per-round", type=int, default=10)
  parser.add_argument("--data-dir", type=pathlib.Path, default=DEFAULT_DATA)
  parser.add_argument("--smoke", action="store_true", help="3 rounds, 1 repeat; no results")
  args = parser.parse_args()
  if args.smoke:
    args.rounds, args.repeats = 3, 1
  if not args.data_dir.exists():
    raise SystemExit(f"programs_overhead needs the FEMNIST data at {args.data_dir} "
                     f"(--data-dir)")
  # The logging release manager formats and writes every round, as it would in a real run.
  logging.basicConfig(level=logging.INFO, handlers=[logging.FileHandler(os.devnull)])

  process, select = build(args.data_dir, args.clients_per_round)
  # Compile every program first: one untimed pass meets every round's padded shape.
  bare_loop(process, select, args.rounds)
  program_loop(process, select, min(3, args.rounds))

  times = {"bare loop": [], "run_training_process": []}
  contenders = {"bare loop": bare_loop, "run_training_process": program_loop}
  for repeat in range(args.repeats):  # Pairs, in alternating order, so drift hits both alike.
    for name in sorted(contenders, reverse=bool(repeat % 2)):
      times[name].append(contenders[name](process, select, args.rounds))
  medians = {k: statistics.median(v) for k, v in times.items()}
  # The median of the paired ratios: robust to a slow stretch of the shared machine.
  overhead = statistics.median(p / b for p, b in zip(times["run_training_process"],
                                                     times["bare loop"])) - 1
  lines = [f"| contender | median s ({args.rounds} rounds) | s per round | runs (s) |",
           "| --- | --- | --- | --- |"]
  for name, ts in times.items():
    lines.append(f"| {name} | {medians[name]:.3f} | {medians[name] / args.rounds:.4f} | "
                 f"{', '.join(f'{t:.3f}' for t in ts)} |")
  lines.append(f"\nprogram-layer overhead (median of paired ratios): {100 * overhead:+.1f}% "
               f"(target: under +5%)")
  print("\n".join(lines))
  if args.smoke:
    print("smoke ok")
    return
  RESULTS.mkdir(exist_ok=True)
  record = {"rounds": args.rounds, "repeats": args.repeats,
            "clients_per_round": args.clients_per_round, "checkpoint_every": CHECKPOINT_EVERY,
            "seconds": times, "median_seconds": medians, "overhead": overhead,
            "machine": measure.describe(measure.machine()), "python": platform.python_version(),
            "jax": jax.__version__, "date": time.strftime("%Y-%m-%d")}
  (RESULTS / "programs_overhead.json").write_text(json.dumps(record, indent=2) + "\n")
  (RESULTS / "programs_overhead.md").write_text(
      f"# Program-layer overhead\n\n`python -m benchmarks.programs_overhead --rounds "
      f"{args.rounds} --repeats {args.repeats}` on {record['date']}, {record['machine']}, "
      f"JAX {jax.__version__}.\n\nemnist_digits FedAvg, {args.clients_per_round} clients per "
      f"round; the program runs with a checkpoint every {CHECKPOINT_EVERY} rounds and the CSV, "
      f"TensorBoard, memory and logging release managers.\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
