"""Benchmark: what each model aggregator costs a FedAvg round, against the plain mean.

    python -m benchmarks.aggregators            # the full run (several minutes on 2 cores)
    python -m benchmarks.aggregators --smoke    # tiny sizes, one repeat (the test suite)

Two workloads, each a weighted FedAvg round (client SGD, server SGD 1.0) from one fixed state:
- W2: TFF's EMNIST `cnn_dropout` (1.2M parameters), the first W2 cohort of 10 FEMNIST writers
  (benchmarks.learning_rounds), 1 epoch of batch 20.
- MLP: 784-1024-256-10 (1.07M parameters) at 100 clients of 2 batches of 20 generated examples,
  so the aggregation, not local training, dominates.

Aggregators: `MeanFactory`, `robust_aggregator`, `compression_aggregator`, `secure_aggregator`
(TFF's defaults), the robust rules `MedianFactory`, `KrumFactory(num_byzantine=1)` and
`ddp_secure_aggregator(min(1, 0.05 n), n)` for `n` clients (distributed DP: Skellam noise
drawn by every client; unweighted FedAvg: they do not weigh). `--aggregators mean,ddp` runs a
subset. Rounds are timed interleaved (`measure.interleaved`),
so a burst of load hits every aggregator alike; the ratio to the mean's round is the figure.
Writes benchmarks/results/aggregators.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib

import jax
import numpy as np

import federax as fx
from benchmarks import learning_rounds, measure
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights
from federax.learning.models import metrics as model_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# name: (weighted FedAvg, the aggregator for a cohort of n clients)
AGGREGATORS = {
    "mean": (True, lambda n: fx.aggregators.MeanFactory()),
    "robust": (True, lambda n: fx.learning.robust_aggregator()),
    "compression": (True, lambda n: fx.learning.compression_aggregator()),
    "secure": (True, lambda n: fx.learning.secure_aggregator()),
    "median": (False, lambda n: fx.aggregators.MedianFactory()),
    "krum": (False, lambda n: fx.aggregators.KrumFactory(num_byzantine=1)),
    # The noise multiplier the default adaptive clip's count noise (0.05 n) allows, up to 1.
    "ddp": (False, lambda n: fx.learning.ddp_secure_aggregator(min(1.0, 0.05 * n), n,
                                                                seed=0)),
}


def mlp_model(sizes: list[int], input_spec) -> FunctionalModel:
  keys = jax.random.split(jax.random.PRNGKey(0), len(sizes) - 1)
  weights = []
  for key, (a, b) in zip(keys, zip(sizes, sizes[1:])):
    weights += [np.asarray(jax.random.normal(key, (a, b)) * np.sqrt(2 / a), np.float32),
                np.zeros(b, np.float32)]

  def predict(weights, x, training=False):
    w = getattr(weights, "trainable", weights)
    h = x.reshape(x.shape[0], -1)
    for i in range(0, len(w), 2):
      h = h @ w[i] + w[i + 1]
      h = jax.nn.relu(h) if i + 2 < len(w) else jax.nn.softmax(h)
    return h

  return FunctionalModel(
      initial_weights=ModelWeights(weights, []), predict_on_batch_fn=predict,
      loss_fn=learning_rounds.sparse_categorical_crossentropy,
      metrics_fns=model_metrics.to_metrics_fns([model_metrics.sparse_categorical_accuracy()]),
      input_spec=input_spec)


def mlp_clients(clients: int, examples: int, seed: int = 0) -> list:
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(clients):
    x = rng.normal(size=(examples, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=examples).astype(np.int32)
    data = fx.data.Dataset.from_tensor_slices(collections.OrderedDict(x=x, y=y))
    out.append(data.masked_batch(20))
  return out


def build(name: str, model, lr: float, clients: int, table: dict = AGGREGATORS):
  """FedAvg with the aggregator `table[name] = (weighted, make)` for `clients`, client SGD `lr`."""
  weighted, make = table[name]
  build_fn = (algorithms.build_weighted_fed_avg if weighted
              else algorithms.build_unweighted_fed_avg)
  return build_fn(model, optimizers.build_sgdm(lr), optimizers.build_sgdm(1.0),
                  model_aggregator=make(clients))


def bench(model, lr: float, data: list, repeats: int, names: list[str],
          table: dict = AGGREGATORS, baseline: str = "mean") -> dict:
  """Each aggregator's FedAvg round from one fixed state, timed interleaved; the ratio to the
  `baseline` aggregator's round is `ratio_to_{baseline}`."""
  rounds = {}
  for name in names:
    process = build(name, model, lr, len(data), table)
    state = process.initialize()
    rounds[name] = lambda p=process, s=state: p.next(s, data).state
  timed = measure.interleaved(rounds, repeats)
  base_s = timed[baseline]["s"]
  return {name: {"s": r["s"], "first_s": r["first_s"], "compile_s": r["compile_s"],
                 f"ratio_to_{baseline}": r["s"] / base_s} for name, r in timed.items()}


def render(report: dict, baseline: str = "mean") -> str:
  lines = [f"| workload | aggregator | s / round | x {baseline} | first round s |",
           "| --- | --- | --- | --- | --- |"]
  for workload, rows in report["workloads"].items():
    for name, r in rows.items():
      lines.append(f"| {workload} | {name} | {r['s']:.3f} | {r[f'ratio_to_{baseline}']:.2f} | "
                   f"{r['first_s']:.1f} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--data-dir", type=pathlib.Path, default=learning_rounds.DATA)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--aggregators", default=",".join(AGGREGATORS),
                      help="comma-separated names (the mean always runs: the reference)")
  args = parser.parse_args()
  names = ["mean"] + [n for n in args.aggregators.split(",") if n in AGGREGATORS and n != "mean"]
  repeats = 1 if args.smoke else args.repeats
  command = "python -m benchmarks.aggregators" + (" --smoke" if args.smoke else "")
  if names != list(AGGREGATORS):
    command += f" --aggregators {','.join(names)}"
  if not args.smoke and args.repeats != parser.get_default("repeats"):
    command += f" --repeats {args.repeats}"
  report = {"command": command,
            "machine": measure.machine(),
            "workloads": {}}
  if args.smoke:
    data = mlp_clients(3, 20)
    report["workloads"]["mlp-smoke"] = bench(
        mlp_model([784, 16, 10], data[0].element_spec), 0.1, data, repeats, names)
  else:
    cohort = learning_rounds.w2_cohorts(args.data_dir, 10, 1)[0]
    report["workloads"]["w2 (10 clients)"] = bench(
        learning_rounds.cnn_model(cohort[0].element_spec), learning_rounds.W2_LR, cohort,
        repeats, names)
    data = mlp_clients(100, 40)
    report["workloads"]["mlp 1M (100 clients)"] = bench(
        mlp_model([784, 1024, 256, 10], data[0].element_spec), 0.1, data, repeats, names)
  report["load_average_at_end"] = list(os.getloadavg())  # Other work on a shared machine.
  table = render(report)
  print(table)
  if args.smoke:
    print("smoke ok")
    return
  RESULTS.mkdir(parents=True, exist_ok=True)
  # A subset writes its own files, next to the full run's.
  stem = "aggregators" if names == list(AGGREGATORS) else "_".join(["aggregators"] + names)
  (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
  (RESULTS / f"{stem}.md").write_text(f"`{report['command']}`\n\n{table}\n")


if __name__ == "__main__":
  main()
