"""Benchmark: a W1 FedAvg round on the Ray runtime (1 and 2 workers) against the vectorized
runtime, in the same process and run, and where the Ray round's time goes.

    python -m benchmarks.ray_runtime            # the full run (about two minutes on 2 cores)
    python -m benchmarks.ray_runtime --smoke    # 2 clients, 2 repeats (the test suite)

W1 is TFF's seed tutorial as in `benchmarks/learning_rounds.py`: the 10 first FEMNIST digit
writers, `repeat(5).shuffle(100, seed=1).masked_batch(20)`, the linear 784 -> 10 model, client
SGD 0.02, server SGD 1.0. Ray runs locally on 127.0.0.1 (`fx.runtime.ray()`, one CPU per
worker). Contenders run interleaved (`measure.interleaved`), medians after the first round:

- `vectorized`: the same round in this process;
- `ray-1`, `ray-2`: the client data passed as a list (sent from the driver each round);
- `ray-2-ids`: `fx.runtime.ClientIds`: the workers load their writers once and keep them.

Where the time goes (estimates, per round): `compute` is the vectorized round of the largest
worker's clients alone, in this process; `serialization` is pickling and unpickling the round's
client data (what the driver ships per round without `ClientIds`); `scheduling` is the rest:
Ray's task dispatch, the object store, the driver's combining of partial aggregates.
Writes benchmarks/results/ray_runtime.{json,md}.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import time

import jax
import numpy as np

import federax as fx
from benchmarks import measure
from benchmarks.learning_rounds import DATA, RESULTS, W1_LR, fed_avg, w1_data
from federax.simulation.datasets import femnist

_TRAIN: dict = {}  # Per process (a Ray worker too): the FEMNIST client data, parsed once.


def load_writer(client_id: str, data_dir: str):
  """W1's preprocessed dataset of one writer, loaded where it runs (a Ray worker)."""
  from benchmarks.learning_rounds import load_tutorial  # pylint: disable=g-import-not-at-top
  if data_dir not in _TRAIN:
    _TRAIN[data_dir] = (femnist.load_data(pathlib.Path(data_dir) / "femnist-leaf")[0],
                        load_tutorial())
  train, tutorial = _TRAIN[data_dir]
  return tutorial.preprocess(train.create_dataset(client_id).filter(
      lambda e: e["label"] < 10)).cache()


def _round(process, state, data):
  return measure.block(process.next(state, data))


def _seconds(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def bench(data_dir: pathlib.Path, smoke: bool) -> dict:
  clients, repeats = (2, 2) if smoke else (10, 20)
  tutorial, data = w1_data(data_dir, clients, smoke=True)  # Lazy parse of these writers only.
  ids = sorted(femnist.load_data(data_dir / "femnist-leaf")[0].client_ids)[:clients]
  data = [d.cache() for d in data]
  model = tutorial.hand_written_model(data[0].element_spec)
  process = fed_avg(model, W1_LR)
  state = process.initialize()
  sizes = [len(d.to_stacked()["mask"]) for d in data]  # Batches per writer.
  runtimes = {"vectorized": fx.runtime.vectorized(),
              "ray-1": fx.runtime.ray(num_workers=1), "ray-2": fx.runtime.ray(num_workers=2)}
  cohort = fx.runtime.ClientIds(ids, functools.partial(load_writer, data_dir=str(data_dir)),
                                num_examples=sizes)

  def contender(name, arg):
    def run():
      with runtimes[name.removesuffix("-ids")]:
        return _round(process, state, arg)
    return run

  contenders = {"vectorized": contender("vectorized", data), "ray-1": contender("ray-1", data),
                "ray-2": contender("ray-2", data), "ray-2-ids": contender("ray-2-ids", cohort)}
  timings = measure.interleaved(contenders, repeats)
  results = {name: t["result"] for name, t in timings.items()}
  reference = results["vectorized"].state
  max_diff = {}
  for name, out in results.items():  # Every contender's round gives the vectorized weights.
    diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(
        process.get_model_weights(out.state).trainable,
        process.get_model_weights(reference).trainable)]
    max_diff[name] = max(diffs)
  assert max(max_diff.values()) < 1e-5, max_diff
  row = {"clients": clients, "batches_per_client": sizes, "repeats": repeats,
         "max_abs_diff_vs_vectorized": max_diff}
  for name, t in timings.items():
    row[f"{name}_first_s"], row[f"{name}_s"] = t["first_s"], t["s"]
  for name in ("ray-1", "ray-2", "ray-2-ids"):
    row[f"{name}_over_vectorized"] = row[f"{name}_s"] / row["vectorized_s"]

  # Where the time goes.
  half = (clients + 1) // 2
  with runtimes["vectorized"]:
    _round(process, state, data[:half])
    compute = {1: row["vectorized_s"],
               2: _seconds(lambda: _round(process, state, data[:half]), repeats)}
  cloud = __import__("ray").cloudpickle
  serialization = _seconds(lambda: cloud.loads(cloud.dumps(data)), repeats)
  row["client_data_pickled_bytes"] = len(cloud.dumps(data))
  row["breakdown"] = {}
  for name, workers, ships in (("ray-1", 1, True), ("ray-2", 2, True), ("ray-2-ids", 2, False)):
    total, ser = row[f"{name}_s"], serialization if ships else 0.0
    row["breakdown"][name] = {"compute_s": compute[workers], "serialization_s": ser,
                              "scheduling_s": total - compute[workers] - ser}
  return row


def render(report: dict) -> str:
  row = report["w1"]
  lines = ["# Ray runtime vs vectorized: a W1 FedAvg round", "", report["machine"], "",
           f"{row['clients']} writers, medians of {row['repeats']} interleaved rounds after the "
           "first; Ray local on 127.0.0.1, one CPU per worker (this machine has "
           f"{report['cpus']}).", "",
           "| runtime | first round (s) | round (s) | x vectorized | compute (s) | "
           "serialization (s) | scheduling (s) |", "|---|---|---|---|---|---|---|"]
  for name in ("vectorized", "ray-1", "ray-2", "ray-2-ids"):
    b = row["breakdown"].get(name)
    ratio = row.get(f"{name}_over_vectorized", 1.0)
    cells = ([f"{b['compute_s']:.4f}", f"{b['serialization_s']:.4f}", f"{b['scheduling_s']:.4f}"]
             if b else ["", "", ""])
    lines.append(f"| {name} | {row[f'{name}_first_s']:.2f} | {row[f'{name}_s']:.4f} | "
                 f"{ratio:.2f} | " + " | ".join(cells) + " |")
  lines += ["", f"Client data pickled: {row['client_data_pickled_bytes'] / 2**20:.1f} MiB per "
            "round (sent by the driver without `ClientIds`).",
            f"Max |weights - vectorized| after the round: {row['max_abs_diff_vs_vectorized']}."]
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--data-dir", type=pathlib.Path, default=DATA)
  args = parser.parse_args()
  os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Stay on loopback.
  info = measure.machine()
  report = {"machine": measure.describe(info), "cpus": info["cpus"],
            "w1": bench(args.data_dir, args.smoke)}
  text = render(report)
  print(text)
  if args.smoke:
    print("smoke ok")
    return
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "ray_runtime.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
  (RESULTS / "ray_runtime.md").write_text(text)


if __name__ == "__main__":
  main()
