"""Benchmark: W1 and W3 FedAvg rounds on the Ray runtime (1 and 2 workers) against the
vectorized runtime, in the same process and run, and where the Ray round's time goes.

    python -m benchmarks.ray_runtime            # the full run (a few minutes on 2 cores)
    python -m benchmarks.ray_runtime --smoke    # W1 of 2 clients (the test suite)

W1 is TFF's seed tutorial as in `benchmarks/learning_rounds.py`: the 10 first FEMNIST digit
writers, `repeat(5).shuffle(100, seed=1).masked_batch(20)`, the linear 784 -> 10 model, client
SGD 0.02, server SGD 1.0. W3 is `benchmarks/run_federax.py`'s: 1,000 generated FedProx
Synthetic(1,1) clients of 100 examples, all in the round, logistic regression. Ray runs locally on 127.0.0.1 (`fx.runtime.ray()`, one CPU per
worker). Contenders run interleaved (`measure.interleaved`), medians after the first round:

- `vectorized`: the same round in this process;
- `ray-1`, `ray-2`: the client data passed as a list (sent from the driver each round);
- `ray-1-ids`, `ray-2-ids`: `fx.runtime.ClientIds`: the workers load their clients once and
  keep them (and a fixed cohort's converted block).

Where the time goes (estimates, per round): `compute` is the vectorized round of the largest
worker's clients alone, in this process; `serialization` is pickling and unpickling the round's
client data (what the driver ships per round without `ClientIds`); `scheduling` is the rest:
Ray's task dispatch, the object store, the driver's combining of partial aggregates.
Writes benchmarks/results/ray_runtime.{json,md}.
"""

from __future__ import annotations

import argparse
import functools
import importlib
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


def _this():
  """This module by its importable name: its loaders then pickle by reference (run as
  `__main__`, cloudpickle would pickle them by value, with this process's caches of data)."""
  return importlib.import_module("benchmarks.ray_runtime")


def _round(process, state, data):
  return measure.block(process.next(state, data))


def _seconds(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def compare(process, data: list, cohort, repeats: int, runtimes: dict) -> dict:
  """Interleaved rounds of `process` on each runtime (list data; `cohort`, the same clients as
  `ClientIds`, on 2 workers), their agreement with the vectorized round, and the breakdown."""
  state = process.initialize()
  cloud = __import__("ray").cloudpickle
  assert len(cloud.dumps(cohort.load_fn)) < 10_000  # The loader carries no client data.

  def contender(name, arg):
    def run():
      with runtimes[name.removesuffix("-ids")]:
        return _round(process, state, arg)
    return run

  contenders = {"vectorized": contender("vectorized", data), "ray-1": contender("ray-1", data),
                "ray-2": contender("ray-2", data), "ray-1-ids": contender("ray-1-ids", cohort),
                "ray-2-ids": contender("ray-2-ids", cohort)}
  timings = measure.interleaved(contenders, repeats)
  reference = process.get_model_weights(timings["vectorized"]["result"].state).trainable
  max_diff = {}
  for name, t in timings.items():  # Every contender's round gives the vectorized weights.
    weights = process.get_model_weights(t["result"].state).trainable
    max_diff[name] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                         for a, b in zip(weights, reference))
  assert max(max_diff.values()) < 1e-5, max_diff
  row = {"clients": len(data), "repeats": repeats, "max_abs_diff_vs_vectorized": max_diff}
  for name, t in timings.items():
    row[f"{name}_first_s"], row[f"{name}_s"] = t["first_s"], t["s"]
  for name in ("ray-1", "ray-2", "ray-1-ids", "ray-2-ids"):
    row[f"{name}_over_vectorized"] = row[f"{name}_s"] / row["vectorized_s"]

  # Where the time goes.
  half = (len(data) + 1) // 2
  with runtimes["vectorized"]:
    _round(process, state, data[:half])
    compute = {1: row["vectorized_s"],
               2: _seconds(lambda: _round(process, state, data[:half]), repeats)}
  serialization = _seconds(lambda: cloud.loads(cloud.dumps(data)), repeats)
  row["client_data_pickled_bytes"] = len(cloud.dumps(data))
  row["breakdown"] = {}
  for name, workers, ships in (("ray-1", 1, True), ("ray-2", 2, True), ("ray-1-ids", 1, False),
                               ("ray-2-ids", 2, False)):
    total, ser = row[f"{name}_s"], serialization if ships else 0.0
    row["breakdown"][name] = {"compute_s": compute[workers], "serialization_s": ser,
                              "scheduling_s": total - compute[workers] - ser}
  return row


def bench_w1(data_dir: pathlib.Path, smoke: bool, runtimes: dict) -> dict:
  clients, repeats = (2, 2) if smoke else (10, 20)
  tutorial, data = w1_data(data_dir, clients, smoke=True)  # Lazy parse of these writers only.
  ids = sorted(femnist.load_data(data_dir / "femnist-leaf")[0].client_ids)[:clients]
  data = [d.cache() for d in data]
  process = fed_avg(tutorial.hand_written_model(data[0].element_spec), W1_LR)
  sizes = [len(d.to_stacked()["mask"]) for d in data]  # Batches per writer.
  cohort = fx.runtime.ClientIds(ids, functools.partial(_this().load_writer,
                                                     data_dir=str(data_dir)),
                                num_examples=sizes)
  return compare(process, data, cohort, repeats, runtimes)


_W3: dict = {}  # Per process (a Ray worker too): W3's generated population.


def load_w3_client(k: int, clients: int):
  """W3's client k (FedProx Synthetic(1,1), 100 examples, batch 10), generated where it runs."""
  from benchmarks import run_federax  # pylint: disable=g-import-not-at-top
  if clients not in _W3:
    _W3[clients] = run_federax.generated_datasets(dict(run_federax.W3, clients=clients))
  return _W3[clients][k]


def bench_w3(smoke: bool, runtimes: dict) -> dict:
  """W3: 1,000 clients of 100 examples, all in the round, logistic regression, 1 epoch."""
  from benchmarks import run_federax  # pylint: disable=g-import-not-at-top
  from federax.learning import algorithms, optimizers  # pylint: disable=g-import-not-at-top
  clients, repeats = (20, 2) if smoke else (1000, 7)
  spec = dict(run_federax.W3, clients=clients)
  data = [load_w3_client(k, clients) for k in range(clients)]
  process = algorithms.build_weighted_fed_avg(
      run_federax.build_model(spec), optimizers.build_sgdm(spec["client_lr"]),
      optimizers.build_sgdm(spec["server_lr"]))
  cohort = fx.runtime.ClientIds(list(range(clients)),
                                functools.partial(_this().load_w3_client, clients=clients))
  return compare(process, data, cohort, repeats, runtimes)


def render(report: dict) -> str:
  lines = ["# Ray runtime vs vectorized: W1 and W3 FedAvg rounds", "", report["machine"], "",
           "Medians of interleaved rounds after the first; Ray local on 127.0.0.1, one CPU per "
           f"worker (this machine has {report['cpus']}).", ""]
  for key, title in (("w1", "W1 (FEMNIST digit writers, linear model)"),
                     ("w3", "W3 (Synthetic(1,1), 100 examples each, logistic regression)")):
    if key in report:
      lines += _table(report[key], f"## {title}")
  return "\n".join(lines) + "\n"


def _table(row: dict, title: str) -> list:
  lines = [title, "", f"{row['clients']} clients a round, {row['repeats']} repeats.", "",
           "| runtime | first round (s) | round (s) | x vectorized | compute (s) | "
           "serialization (s) | scheduling (s) |", "|---|---|---|---|---|---|---|"]
  for name in ("vectorized", "ray-1", "ray-2", "ray-1-ids", "ray-2-ids"):
    b = row["breakdown"].get(name)
    ratio = row.get(f"{name}_over_vectorized", 1.0)
    cells = ([f"{b['compute_s']:.4f}", f"{b['serialization_s']:.4f}", f"{b['scheduling_s']:.4f}"]
             if b else ["", "", ""])
    lines.append(f"| {name} | {row[f'{name}_first_s']:.2f} | {row[f'{name}_s']:.4f} | "
                 f"{ratio:.2f} | " + " | ".join(cells) + " |")
  lines += ["", f"Client data pickled: {row['client_data_pickled_bytes'] / 2**20:.1f} MiB per "
            "round (sent by the driver without `ClientIds`).",
            f"Max |weights - vectorized| after the round: {row['max_abs_diff_vs_vectorized']}.",
            ""]
  return lines


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--data-dir", type=pathlib.Path, default=DATA)
  args = parser.parse_args()
  os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Stay on loopback.
  info = measure.machine()
  runtimes = {"vectorized": fx.runtime.vectorized(),
              "ray-1": fx.runtime.ray(num_workers=1), "ray-2": fx.runtime.ray(num_workers=2)}
  report = {"machine": measure.describe(info), "cpus": info["cpus"],
            "w1": bench_w1(args.data_dir, args.smoke, runtimes)}
  if not args.smoke:  # W3 runs the same contenders on generated clients: the smoke skips it.
    report["w3"] = bench_w3(args.smoke, runtimes)
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
