"""Cost of privacy accounting per training round: `fx.privacy.PrivacyAccountant` (RDP and PLD)
at rounds 1, 10, 100 and 1000, against dp_accounting's accountants composing each round afresh.

    python -m benchmarks.privacy_accountant [--rounds 1000] [--cohort-rounds 20] [--smoke]

The setting is TFF's DP tutorial's final run: 3,383 clients, Poisson sampling of 120 per round,
noise multiplier 1.2, delta 1e-5. A round's cost is `compose()` then `epsilon` (what
`run_training_process` does after each round); the figure at round r is the median over rounds
r-4..r. Building the accountant (one round's RDP curve or privacy loss distribution, once) is
reported apart, as is `restore(rounds)` (a resumed run composing its rounds at once). The
baseline is the direct use of dp_accounting: `compose(event)` on its accountant every round, then
`get_epsilon` (flat too, but it recomputes one round's curve or distribution each time), timed
over 5 rounds.

Poisson cohorts vary in size; `--cohort-rounds` DP-FedAvg rounds on Synthetic(1,1) (an expected
10 of 30 clients, fixed clip) count the XLA compilations of the vectorized runtime against the
distinct cohort sizes met. Writes benchmarks/results/privacy_accountant.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import time

import dp_accounting as dpa

import federax as fx
from benchmarks import measure

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
POPULATION, CLIENTS_PER_ROUND, NOISE_MULTIPLIER, DELTA = 3383, 120, 1.2, 1e-5
RATE = CLIENTS_PER_ROUND / POPULATION
BASELINE_ROUNDS = 5
WINDOW = 5


def accountant(kind: str) -> fx.privacy.PrivacyAccountant:
  return fx.privacy.PrivacyAccountant(dpa.GaussianDpEvent(NOISE_MULTIPLIER),
                                      fx.privacy.Sampling.poisson(RATE, POPULATION),
                                      accountant=kind, delta=DELTA)


def federax_rounds(kind: str, rounds: int, marks: list[int]) -> dict:
  start = time.perf_counter()
  acc = accountant(kind)
  setup = time.perf_counter() - start
  seconds, epsilons = [], {}
  for round_num in range(1, rounds + 1):
    start = time.perf_counter()
    epsilon = acc.compose().epsilon
    seconds.append(time.perf_counter() - start)
    if round_num in marks:
      epsilons[round_num] = epsilon
  per_round = {r: statistics.median(seconds[max(0, r - WINDOW):r]) for r in marks}
  start = time.perf_counter()
  restored = accountant(kind).restore(rounds).epsilon
  restore = time.perf_counter() - start
  return {"setup_seconds": setup, "seconds_per_round": per_round, "epsilon": epsilons,
          "restore_seconds": restore, "restored_epsilon": restored}


def baseline_rounds(kind: str) -> float:
  """dp_accounting's accountant, composing the round's event afresh every round."""
  acc = dpa.rdp.RdpAccountant() if kind == "rdp" else dpa.pld.PLDAccountant()
  event = dpa.PoissonSampledDpEvent(RATE, dpa.GaussianDpEvent(NOISE_MULTIPLIER))
  seconds = []
  for _ in range(BASELINE_ROUNDS):
    start = time.perf_counter()
    acc.compose(event)
    acc.get_epsilon(DELTA)
    seconds.append(time.perf_counter() - start)
  return statistics.median(seconds)


def cohort_compiles(rounds: int) -> dict:
  """Per round: the cohort's size, its seconds and the compilations so far."""
  import jax  # pylint: disable=g-import-not-at-top
  from federax.cli.compilation_cache import CompileCounter  # pylint: disable=g-import-not-at-top
  from federax.simulation import baselines  # pylint: disable=g-import-not-at-top
  task = baselines.create_task("synthetic", baselines.ClientSpec(1, 10, max_elements=20), None,
                               seed=0)
  factory = fx.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(0.7, 10, 1.0, seed=0)
  process = fx.learning.algorithms.build_unweighted_fed_avg(
      task.model_fn, fx.learning.optimizers.build_sgdm(0.01),
      fx.learning.optimizers.build_sgdm(1.0), model_aggregator=factory)
  sampler = fx.simulation.PoissonSampler(task.datasets.train_data.client_ids, 10 / 30, seed=0)
  select = fx.program.build_client_selection_fn(
      task.datasets.train_data, None, task.datasets.train_preprocess_fn, sampler=sampler)
  state, per_round = process.initialize(), []
  with CompileCounter() as counter:
    for round_num in range(1, rounds + 1):
      data = select(round_num)
      start = time.perf_counter()
      state, _ = process.next(state, data)
      jax.block_until_ready(state)
      per_round.append({"round": round_num, "cohort": len(data),
                        "seconds": time.perf_counter() - start,
                        "compilations": counter.compilations})
  sizes = [r["cohort"] for r in per_round]
  seen, new, old = set(), [], []
  for r in per_round:
    (old if r["cohort"] in seen else new).append(r["seconds"])
    seen.add(r["cohort"])
  return {"rounds": per_round, "distinct_sizes": len(set(sizes)),
          "compilations": per_round[-1]["compilations"],
          "median_seconds_new_size": statistics.median(new),
          "median_seconds_seen_size": statistics.median(old) if old else None}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=1000)
  parser.add_argument("--cohort-rounds", type=int, default=20)
  parser.add_argument("--smoke", action="store_true", help="10 rounds; no results written")
  args = parser.parse_args()
  rounds = 10 if args.smoke else args.rounds
  marks = [r for r in (1, 10, 100, 1000) if r <= rounds]
  info = measure.machine()
  results = {}
  for kind in ("rdp", "pld"):
    results[kind] = federax_rounds(kind, rounds, marks)
    results[kind]["baseline_seconds_per_round"] = baseline_rounds(kind)
    last = max(marks)
    # Restoring k rounds at once gives the epsilon of k rounds composed one by one.
    assert abs(results[kind]["restored_epsilon"] / results[kind]["epsilon"][last] - 1) < 1e-6

  header = "| accountant | build (s) | " + " | ".join(f"round {r} (ms)" for r in marks) + (
      f" | restore({rounds}) (s) | dp_accounting compose per round (ms) | epsilon at round "
      f"{max(marks)} |")
  lines = [header, "|" + " --- |" * (header.count("|") - 1)]
  for kind, r in results.items():
    lines.append(f"| {kind.upper()} | {r['setup_seconds']:.3f} | "
                 + " | ".join(f"{1e3 * r['seconds_per_round'][m]:.3f}" for m in marks)
                 + f" | {r['restore_seconds']:.3f} | {1e3 * r['baseline_seconds_per_round']:.1f}"
                 f" | {r['epsilon'][max(marks)]:.4f} |")
  table = "\n".join(lines)
  print(table)
  cohorts = None
  if not args.smoke:
    cohorts = cohort_compiles(args.cohort_rounds)
    seen = cohorts["median_seconds_seen_size"]
    table += (f"\n\nVarying Poisson cohorts, {args.cohort_rounds} rounds: "
              f"{cohorts['distinct_sizes']} distinct sizes, {cohorts['compilations']} XLA "
              f"compilations; median round {cohorts['median_seconds_new_size']:.2f} s at a new "
              f"size, {'-' if seen is None else f'{seen:.3f} s'} at a size seen before.")
    print(table.rsplit("\n", 1)[1])
  if args.smoke:
    print("smoke ok")
    return
  RESULTS.mkdir(exist_ok=True)
  record = {"rounds": rounds, "population": POPULATION, "clients_per_round": CLIENTS_PER_ROUND,
            "noise_multiplier": NOISE_MULTIPLIER, "delta": DELTA, "window": WINDOW,
            "results": results, "cohort_compiles": cohorts, "machine": measure.describe(info),
            "python": platform.python_version(),
            "dp_accounting": _version("dp-accounting"), "date": time.strftime("%Y-%m-%d")}
  (RESULTS / "privacy_accountant.json").write_text(json.dumps(record, indent=2) + "\n")
  (RESULTS / "privacy_accountant.md").write_text(
      f"# Privacy accountant cost per round\n\n`python -m benchmarks.privacy_accountant "
      f"--rounds {rounds}` on {record['date']}, {record['machine']}, dp-accounting "
      f"{record['dp_accounting']}.\n\nTFF's tutorial setting: {POPULATION} clients, Poisson "
      f"sampling of {CLIENTS_PER_ROUND} per round (q = {RATE:.4f}), noise multiplier "
      f"{NOISE_MULTIPLIER}, delta {DELTA}. A round is `compose()` then `epsilon`; each figure is "
      f"the median over the {WINDOW} rounds up to it.\n\n{table}\n")


def _version(name: str) -> str:
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  return importlib.metadata.version(name)


if __name__ == "__main__":
  main()
