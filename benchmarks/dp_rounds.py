"""Benchmark: what differential privacy costs a FedAvg round, against plain unweighted FedAvg.

    python -m benchmarks.dp_rounds            # the full run (several minutes on 2 cores)
    python -m benchmarks.dp_rounds --smoke    # tiny sizes, one repeat (the test suite)
    python -m benchmarks.dp_rounds --contenders dp_aggregator   # a subset (and fedavg)

The workloads of `benchmarks.aggregators` (its helpers build them): W2, TFF's EMNIST
`cnn_dropout` (1.2M parameters) on the first W2 cohort of 10 FEMNIST writers, and the
784-1024-256-10 MLP (1.07M parameters) at 100 clients of 2 batches of 20 generated examples.
Each is an unweighted FedAvg round (client SGD, server SGD 1.0) from one fixed state with:

- `fedavg`: the plain unweighted mean (the baseline);
- `dp_aggregator`: `fx.learning.dp_aggregator(z, clients)`, DP-FedAvg with TFF's defaults
  (adaptive zeroing, adaptive clipping with a noised count, Gaussian noise);
- `gaussian_fixed`: `DifferentiallyPrivateFactory.gaussian_fixed(z, clients, 0.1)`;
- for comparison only: `tree_aggregation(z, clients, 0.1, restart_frequency=1024)` (DP-FTRL;
  11 levels of the tree in the state) and `local_dp`
  (`fx.learning.local_dp_aggregator(z, 0.1)`, one noise draw per client);

`z = min(1, clients / 20)` (see `contenders`).

Target: `dp_aggregator` and `gaussian_fixed` within 1.10x of `fedavg`. Rounds are timed
interleaved (`measure.interleaved`). Writes benchmarks/results/dp_rounds.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import federax as fx
from benchmarks import aggregators, learning_rounds, measure

RESULTS = aggregators.RESULTS
TARGET = 1.10
DPF = fx.aggregators.DifferentiallyPrivateFactory


def contenders(clients: int) -> dict:
  """`name -> (weighted, make)`: every round unweighted, as DP needs. The noise multiplier is
  `min(1, clients / 20)`: `dp_aggregator` needs it below twice its count's noise, `0.05 *
  clients` (TFF's rule); the noise's size does not change the cost."""
  z = min(1.0, clients / 20)
  return {
      "fedavg": (False, lambda n: fx.aggregators.UnweightedMeanFactory()),
      "dp_aggregator": (False, lambda n: fx.learning.dp_aggregator(z, clients, seed=0)),
      "gaussian_fixed": (False, lambda n: DPF.gaussian_fixed(z, clients, 0.1, seed=0)),
      "tree_aggregation": (False, lambda n: DPF.tree_aggregation(
          z, clients, 0.1, noise_seed=0, restart_frequency=1024)),
      "local_dp": (False, lambda n: fx.learning.local_dp_aggregator(z, 0.1, seed=0)),
  }


def bench(model, lr: float, data: list, repeats: int, names: list[str]) -> dict:
  table = contenders(len(data))
  return aggregators.bench(model, lr, data, repeats, names, table, baseline="fedavg")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--data-dir", type=pathlib.Path, default=learning_rounds.DATA)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--contenders", default=",".join(contenders(1)),
                      help="comma-separated names (fedavg always runs: the reference)")
  args = parser.parse_args()
  known = list(contenders(1))
  unknown = [n for n in args.contenders.split(",") if n not in known]
  if unknown:
    parser.error(f"unknown contenders {unknown}; known: {known}")
  names = ["fedavg"] + [n for n in args.contenders.split(",") if n != "fedavg"]
  repeats = 1 if args.smoke else args.repeats
  command = "python -m benchmarks.dp_rounds" + (" --smoke" if args.smoke else "")
  if names != known:
    command += f" --contenders {','.join(names)}"
  report = {"command": command,
            "machine": measure.machine(), "target": f"dp_aggregator, gaussian_fixed <= "
            f"{TARGET}x fedavg", "workloads": {}}
  if args.smoke:
    data = aggregators.mlp_clients(3, 20)
    report["workloads"]["mlp-smoke"] = bench(
        aggregators.mlp_model([784, 16, 10], data[0].element_spec), 0.1, data, repeats, names)
  else:
    cohort = learning_rounds.w2_cohorts(args.data_dir, 10, 1)[0]
    report["workloads"]["w2 (10 clients)"] = bench(
        learning_rounds.cnn_model(cohort[0].element_spec), learning_rounds.W2_LR, cohort,
        repeats, names)
    data = aggregators.mlp_clients(100, 40)
    report["workloads"]["mlp 1M (100 clients)"] = bench(
        aggregators.mlp_model([784, 1024, 256, 10], data[0].element_spec), 0.1, data, repeats,
        names)
  table = aggregators.render(report, baseline="fedavg")
  print(table)
  missed = [f"{w}: {name} {r['ratio_to_fedavg']:.2f}x" for w, rows in report["workloads"].items()
            for name, r in rows.items()
            if name in ("dp_aggregator", "gaussian_fixed") and r["ratio_to_fedavg"] > TARGET]
  print(f"target <= {TARGET}x: " + ("met" if not missed else "missed (" + "; ".join(missed) + ")"))
  if args.smoke:
    print("smoke ok")
    return
  RESULTS.mkdir(parents=True, exist_ok=True)
  # A subset writes its own files, next to the full run's.
  stem = "dp_rounds" if names == known else "_".join(["dp_rounds"] + names)
  (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
  (RESULTS / f"{stem}.md").write_text(f"`{report['command']}`\n\n{table}\n")


if __name__ == "__main__":
  main()
