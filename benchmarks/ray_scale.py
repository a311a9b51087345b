"""Benchmark: simulated scale-out on the Ray runtime: a 10^5-client population, 1,000 clients a
round, 4 workers, 100 FedAvg rounds; round time and driver memory, round by round.

    python -m benchmarks.ray_scale            # the full run (~10 minutes on 2 cores)
    python -m benchmarks.ray_scale --smoke    # 2,000 clients, 40 a round, 2 workers, 6 rounds

The clients are generated where they run: each Ray worker makes client k's data from k alone
(`load_client`, FedProx's Synthetic(1,1) recipe with the per-client draws seeded by k: no
population-sized table anywhere), so the driver sends ids (`fx.runtime.ClientIds`), never data.
Each round samples its cohort uniformly without replacement from the population (seeded by the
round), so most of a round's clients are new to the workers. FedAvg of the logistic regression
(60 features, 10 classes), 1 epoch of batch 10, client SGD 0.01, server SGD 1.0.

Every round prints and records its seconds and the driver's resident memory (VmRSS, after a
`gc.collect()`; also before it), and the workers' at a few rounds; "flat" is read from the median round of the first 10 rounds after the
compiling one against the last 10, and the driver's RSS growth from the end of round 10 to the
end. The first round is checked against the vectorized runtime on the same cohort (float sums
reordered across workers: to 1e-5). Ray runs locally on 127.0.0.1; the workers share this
machine's cores (4 workers on 2 cores: half a CPU each, as Ray counts). Writes
benchmarks/results/ray_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import importlib
import json
import pathlib
import statistics
import time

import numpy as np

import federax as fx
from benchmarks import measure

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
FULL = dict(population=100_000, clients_per_round=1000, workers=4, rounds=100, examples=20)
SMOKE = dict(population=2000, clients_per_round=40, workers=2, rounds=6, examples=20)
FEATURES, CLASSES, BATCH = 60, 10, 10
WINDOW = 10  # Rounds in each of the first and last medians.


def load_client(client_id: int, examples: int, seed: int = 0):
  """Client `client_id`'s Synthetic(1,1) dataset (`examples` examples, batches of 10), made
  from the id alone: its model W_k ~ N(u_k, 1), b_k ~ N(u_k, 1) with u_k ~ N(0, 1), its inputs
  x ~ N(v_k, diag(j^-1.2)) with v_k ~ N(B_k, 1), B_k ~ N(0, 1), labels argmax(x W_k^T + b_k)."""
  from federax.simulation.dataset import Dataset  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng([seed, 2, client_id])
  u, shift = rng.normal(0, 1.0), rng.normal(0, 1.0)
  w = rng.normal(u, 1.0, (CLASSES, FEATURES))
  b = rng.normal(u, 1.0, CLASSES)
  v = rng.normal(shift, 1.0, FEATURES)
  sigma = np.arange(1, FEATURES + 1, dtype=np.float64) ** -1.2
  x = (v + rng.standard_normal((examples, FEATURES)) * np.sqrt(sigma)).astype(np.float32)
  y = np.argmax(x.astype(np.float64) @ w.T + b, axis=1).astype(np.int32)
  return Dataset.from_tensor_slices(collections.OrderedDict(x=x, y=y)).masked_batch(BATCH)


def _this():
  """This module by its importable name, so the loader pickles by reference (as `__main__`,
  cloudpickle would pickle it by value)."""
  return importlib.import_module("benchmarks.ray_scale")


def cohort(population: int, size: int, round_num: int) -> list[int]:
  """Round `round_num`'s client ids: `size` of `population`, uniformly, without replacement."""
  rng = np.random.default_rng([17, round_num])
  return sorted(int(k) for k in rng.choice(population, size, replace=False))


def _worker_rss_mib(pids: list[int]) -> list[float]:
  out = []
  for pid in pids:
    try:
      with open(f"/proc/{pid}/status", encoding="ascii") as f:
        out.append(next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:")))
    except (OSError, StopIteration):
      out.append(float("nan"))
  return out


def run(spec: dict, cpus: int) -> dict:
  from federax.learning import algorithms, optimizers  # pylint: disable=g-import-not-at-top
  from federax.simulation.baselines import synthetic  # pylint: disable=g-import-not-at-top
  process = algorithms.build_weighted_fed_avg(
      synthetic.create_logistic_regression_model(), optimizers.build_sgdm(0.01),
      optimizers.build_sgdm(1.0))
  load = functools.partial(_this().load_client, examples=spec["examples"])
  per_worker_cpus = min(1.0, cpus / spec["workers"])
  ray_rt = fx.runtime.ray(num_workers=spec["workers"], timeout_s=300,
                          resources_per_worker={"num_cpus": per_worker_cpus})
  pids = ray_rt.worker_pids()
  state = process.initialize()
  rows = []
  for r in range(1, spec["rounds"] + 1):
    ids = fx.runtime.ClientIds(cohort(spec["population"], spec["clients_per_round"], r), load,
                               num_examples=[spec["examples"]] * spec["clients_per_round"])
    start = time.perf_counter()
    with ray_rt:
      next_state, metrics = measure.block(process.next(state, ids))
    seconds = time.perf_counter() - start
    if r == 1:  # The same round on the vectorized runtime (the clients loaded here).
      with fx.runtime.vectorized():
        reference = measure.block(process.next(state, ids)).state
      diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(
          process.get_model_weights(next_state).trainable,
          process.get_model_weights(reference).trainable))
      assert diff < 1e-5, f"round 1 on Ray differs from the vectorized round by {diff}"
    state = next_state
    raw = measure.rss_mib()
    gc.collect()  # Garbage cycles waiting for Python's collector are not growth.
    row = {"round": r, "s": seconds, "driver_rss_mib": measure.rss_mib(),
           "driver_rss_before_gc_mib": raw,
           "loss": float(metrics["client_work"]["train"]["loss"]),
           "clients_dropped": ray_rt.last_call["clients_dropped"]}
    if r in (1, WINDOW, spec["rounds"]) or r % 25 == 0:
      row["worker_rss_mib"] = _worker_rss_mib(pids)
    rows.append(row)
    print(f"round {r:3d}: {seconds:.3f} s, driver RSS {row['driver_rss_mib']:.1f} MiB, "
          f"loss {row['loss']:.4f}", flush=True)
  window = min(WINDOW, (len(rows) - 1) // 2)
  first = statistics.median(x["s"] for x in rows[1:1 + window])
  last = statistics.median(x["s"] for x in rows[-window:])
  warm = rows[window - 1] if window else rows[0]
  return {"spec": spec, "worker_cpus": per_worker_cpus, "round1_max_abs_diff_vs_vectorized": diff,
          "rounds": rows, "window": window, "first_round_s": rows[0]["s"],
          "first_median_s": first, "last_median_s": last, "last_over_first": last / first,
          "driver_rss_warm_mib": warm["driver_rss_mib"],
          "driver_rss_end_mib": rows[-1]["driver_rss_mib"],
          "driver_rss_growth_mib": rows[-1]["driver_rss_mib"] - warm["driver_rss_mib"],
          "driver_rss_before_gc_growth_mib": (rows[-1]["driver_rss_before_gc_mib"] -
                                              warm["driver_rss_before_gc_mib"]),
          "worker_cache": ray_rt._get([w.cache_info.remote() for w in
                                       ray_rt._pool.take(spec["workers"], 60)])}


def render(report: dict) -> str:
  r, spec = report["result"], report["result"]["spec"]
  w = r["window"]
  lines = [
      "# Ray runtime: simulated scale-out", "", report["machine"], "",
      f"{spec['population']:,} generated clients (Synthetic(1,1), {spec['examples']} examples "
      f"each, made on the workers from their ids), {spec['clients_per_round']:,} a round sampled "
      f"uniformly, FedAvg of a logistic regression, {spec['rounds']} rounds, "
      f"{spec['workers']} Ray workers of {r['worker_cpus']:g} CPU each on {report['cpus']} "
      "cores (Ray local on 127.0.0.1).", "",
      "| | value |", "|---|---|",
      f"| first round (compiles) | {r['first_round_s']:.2f} s |",
      f"| median round, rounds 2-{w + 1} | {r['first_median_s']:.3f} s |",
      f"| median round, last {w} | {r['last_median_s']:.3f} s |",
      f"| last / first | {r['last_over_first']:.2f} |",
      f"| driver RSS after round {w} | {r['driver_rss_warm_mib']:.1f} MiB |",
      f"| driver RSS at the end | {r['driver_rss_end_mib']:.1f} MiB |",
      f"| driver RSS growth | {r['driver_rss_growth_mib']:+.1f} MiB |",
      f"| the same, measured before each round's gc.collect() | "
      f"{r['driver_rss_before_gc_growth_mib']:+.1f} MiB |",
      f"| round 1, max abs diff vs vectorized | {r['round1_max_abs_diff_vs_vectorized']:.1e} |",
      "| workers' client caches (loads, kept) | "
      + ", ".join(f"{c['loads']}/{c['kept']}" for c in r["worker_cache"]) + " |", "",
      "| round | s | driver RSS (MiB) | workers' RSS (MiB) |", "|---|---|---|---|"]
  for row in r["rounds"]:
    workers = " ".join(f"{x:.0f}" for x in row.get("worker_rss_mib", []))
    lines.append(f"| {row['round']} | {row['s']:.3f} | {row['driver_rss_mib']:.1f} | {workers} |")
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true")
  for name, value in FULL.items():
    parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                        help=f"default {value:,} ({SMOKE[name]:,} with --smoke)")
  args = parser.parse_args()
  spec = {k: getattr(args, k) if getattr(args, k) is not None else v
          for k, v in (SMOKE if args.smoke else FULL).items()}
  info = measure.machine()
  report = {"machine": measure.describe(info), "cpus": info["cpus"],
            "command": "python -m benchmarks.ray_scale" + (" --smoke" if args.smoke else ""),
            "result": run(spec, info["cpus"] or 1)}
  text = render(report)
  print(text)
  if args.smoke:
    print("smoke ok")
    return
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "ray_scale.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
  (RESULTS / "ray_scale.md").write_text(text)


if __name__ == "__main__":
  main()
