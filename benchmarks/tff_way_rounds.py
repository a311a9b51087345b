"""Benchmark: TFF's seed tutorial written TFF's way (`batch(20)`, no mask, no cache) vs the floor.

    python -m benchmarks.tff_way_rounds              # 10 writers, 30 interleaved repeats
    python -m benchmarks.tff_way_rounds --smoke      # 2 writers, 2 repeats; writes nothing

The data of `benchmarks/learning_rounds.py`'s W1 (FEMNIST digits, the 10 first writers by
sorted id, `repeat(5).shuffle(100, seed=1)`), batched as every TFF tutorial does:
`.batch(20).map(format)` with no mask and no `cache()`, the model's `input_spec` taken from
`element_spec`. The vectorized runtime pads each client's short last batch and the learning
layer masks the padded rows (docs/architecture.md, "Short batches"), so no call may fall back
to the sequential runtime: FallbackWarning is an error here.

In one process, each contender runs one FedAvg round (client SGD 0.02, server SGD 1.0) per
repeat, all in turn (`measure.interleaved`), so load on a shared machine hits them alike:

- federax, TFF's way: the hand-written `FunctionalModel` (`examples/image_classification.py`'s
  `hand_written_model`) on the loader's datasets as they are (their arrays are read-only, so
  the runtime keeps the cohort after its second round: docs/architecture.md, "Kept cohorts");
- the same pipelines over writable copies of the arrays, as a user's own arrays are (each
  round reads them before its program), and those on a runtime with `read_ahead=True` (the
  runtime reads the next round's datasets while this round's program runs);
- the loader's with the Keras model (`from_keras_model`), with the batches passed as lists,
  and with `cache()` appended;
- federax as `examples/image_classification.py` runs it: `masked_batch(20)` and `cache()`;
- the floors of `learning_rounds.py`: one centralized jitted `lax.scan` (and a Python loop over a
  jitted step) of the same SGD over the same batches, read and padded beforehand.

Before timing, the first rounds' loss, accuracy and num_examples of every federax contender must
equal those of `masked_batch` (1e-6), and the hand-written model's one client round must equal
the floors. Writes benchmarks/results/tff_way_rounds.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import pathlib
import sys
import time
import warnings

os.environ.setdefault("KERAS_BACKEND", "jax")  # Before Keras is imported anywhere.

import jax
import jax.numpy as jnp
import numpy as np

import federax as fx
from benchmarks import learning_rounds as lr
from benchmarks import measure
from federax.core.datasets import aligned_empty
from federax.learning.models import ModelWeights
from federax.runtime.padding import bucket
from federax.simulation.datasets import femnist

RESULTS = lr.RESULTS
CHECKED_ROUNDS = 3


def tff_format(element):
  """The tutorial's `batch_format_fn`, TFF's own: no mask."""
  return collections.OrderedDict(x=element["pixels"].reshape(-1, 784),
                                 y=element["label"].reshape(-1, 1))


def client_datasets(data_dir: pathlib.Path, clients: int, smoke: bool):
  """(the tutorial, the TFF-way datasets, the same over writable arrays, the tutorial's masked
  and cached ones) of the same writers."""
  tutorial = lr.load_tutorial()
  if smoke:  # Lazy: parses only the shards these writers are in.
    train, _ = femnist.load_data(data_dir / "femnist-leaf")
    raw = [train.create_dataset(c).filter(lambda e: e["label"] < 10)
           for c in sorted(train.client_ids)[:clients]]
  else:
    train, _ = femnist.load_data(data_dir / "femnist-leaf", only_digits=True)
    raw = [train.create_dataset(c) for c in sorted(train.client_ids)[:clients]]
  epochs = lambda d: d.repeat(tutorial.NUM_EPOCHS).shuffle(tutorial.SHUFFLE_BUFFER, seed=1)
  tff_way = [epochs(d).batch(tutorial.BATCH_SIZE).map(tff_format) for d in raw]
  writable = [fx.data.Dataset.from_tensor_slices(d.to_stacked()) for d in raw]  # Fresh copies.
  tff_way_writable = [epochs(d).batch(tutorial.BATCH_SIZE).map(tff_format) for d in writable]
  masked = [tutorial.preprocess(d).cache() for d in raw]
  return tutorial, tff_way, tff_way_writable, masked


def floor_batches(datasets) -> dict:
  """Every client's batches in client order, padded, with their rows as the mask; aligned so
  that XLA:CPU takes them uncopied (`federax.core.datasets.ALIGNMENT`), as federax's own
  inputs are: an unaligned 12 MB input costs the floor a copy of about 1 ms every call."""
  padded = [d.to_padded_stacked() for d in datasets]
  rows = [r if r is not None else np.ones(s["y"].shape[:2], bool) for s, r in padded]
  stacked = {"x": np.concatenate([s["x"] for s, _ in padded]),
             "y": np.concatenate([s["y"] for s, _ in padded]), "mask": np.concatenate(rows)}
  return {k: _aligned(v) for k, v in stacked.items()}


def _aligned(x: np.ndarray) -> np.ndarray:
  out = aligned_empty(x.shape, x.dtype)
  out[...] = x
  return out


def first_rounds(process, data, rounds: int, runtime) -> list:
  state = process.initialize()
  out = []
  for _ in range(rounds):
    with runtime:
      state, metrics = process.next(state, data)
    out.append({k: float(v) for k, v in metrics["client_work"]["train"].items()})
  return out


def largest_difference(a: list, b: list) -> float:
  return max(abs(x[k] - y[k]) / max(abs(y[k]), 1.0) for x, y in zip(a, b) for k in y)


def one_client_check(tutorial, data) -> float:
  """Max |federax - floor| after one round of one client (server SGD 1.0: its weights)."""
  model = tutorial.hand_written_model(data[0].element_spec)
  process = lr.fed_avg(model, lr.W1_LR)
  state, _ = process.next(process.initialize(), data[:1])
  ours = process.get_model_weights(state).trainable
  predict = lambda w, x, training, key: model.predict_on_batch(ModelWeights(w, []), x, training)
  step = lr.sgd_step(predict, lr.W1_LR)
  batches = floor_batches(data[:1])
  keys = jnp.zeros((len(batches["mask"]), 2), jnp.uint32)
  weights = list(model.initial_weights.trainable)
  floors = [lr.floor_loop(step)(weights, batches, keys), lr.floor_scan(step)(weights, batches, keys)]
  return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for floor in floors for a, b in zip(ours, floor))


def bench(data_dir: pathlib.Path, smoke: bool, repeats: int) -> dict:
  clients = 2 if smoke else 10
  tutorial, tff_way, tff_way_writable, masked = client_datasets(data_dir, clients, smoke)
  spec = tff_way[0].element_spec
  as_lists = [list(d) for d in tff_way]
  processes = {
      "tff_way": (lr.fed_avg(tutorial.hand_written_model(spec), lr.W1_LR), tff_way),
      "tff_way_writable": (lr.fed_avg(tutorial.hand_written_model(spec), lr.W1_LR),
                           tff_way_writable),
      "tff_way_read_ahead": (lr.fed_avg(tutorial.hand_written_model(spec), lr.W1_LR),
                             tff_way_writable),
      "tff_way_keras": (lr.fed_avg(tutorial.keras_model_fn(spec), lr.W1_LR), tff_way),
      "tff_way_lists": (lr.fed_avg(tutorial.hand_written_model(spec), lr.W1_LR), as_lists),
      "tff_way_cached": (lr.fed_avg(tutorial.hand_written_model(spec), lr.W1_LR),
                         [d.cache() for d in tff_way]),
      "masked_cached": (lr.fed_avg(tutorial.hand_written_model(masked[0].element_spec),
                                   lr.W1_LR), masked),
      "masked_cached_keras": (lr.fed_avg(tutorial.keras_model_fn(masked[0].element_spec),
                                         lr.W1_LR), masked),
  }
  # Every contender on the default runtime but one, on its own runtime with read-ahead.
  runtimes = collections.defaultdict(contextlib.nullcontext)
  runtimes["tff_way_read_ahead"] = fx.runtime.vectorized(read_ahead=True)
  row = {"clients": clients, "repeats": repeats, "input_spec": str(fx.to_type(spec)),
         "max_abs_diff_one_client": one_client_check(tutorial, tff_way)}
  rounds = {name: first_rounds(p, data, CHECKED_ROUNDS, runtimes[name])
            for name, (p, data) in processes.items()}
  row["first_rounds"] = rounds
  row["max_rel_diff_vs_masked"] = {
      name: largest_difference(rounds[name], rounds["masked_cached_keras" if "keras" in name
                                                  else "masked_cached"])
      for name in ("tff_way", "tff_way_writable", "tff_way_read_ahead", "tff_way_keras",
                   "tff_way_lists", "tff_way_cached")}

  predict = lambda w, x, training, key: tutorial.hand_written_model(spec).predict_on_batch(
      ModelWeights(w, []), x, training)
  step = lr.sgd_step(predict, lr.W1_LR)
  batches = floor_batches(tff_way)
  keys = jnp.zeros((len(batches["mask"]), 2), jnp.uint32)
  weights = list(tutorial.hand_written_model(spec).initial_weights.trainable)
  row["batches"], row["examples_per_round"] = len(keys), int(batches["mask"].sum())
  def one_round(name, state=None):
    process, data = processes[name]
    with runtimes[name]:
      return process.next(process.initialize() if state is None else state, data)

  states = {name: one_round(name)[0] for name in processes}
  contenders = {name: (lambda name=name, s=states[name]: one_round(name, s)) for name in processes}
  contenders["pipeline_only"] = lambda: fx.data.Dataset.to_padded_cohort(tff_way_writable,
                                                                         bucket)
  contenders["floor_scan"] = lambda f=lr.floor_scan(step): f(weights, batches, keys)
  contenders["floor_loop"] = lambda f=lr.floor_loop(step): f(weights, batches, keys)
  for name, t in measure.interleaved(contenders, repeats).items():
    row[f"{name}_first_s"], row[f"{name}_s"] = t["first_s"], t["s"]
  row["floor_best_s"] = min(row["floor_scan_s"], row["floor_loop_s"])
  for name in processes:
    row[f"{name}_ratio"] = row[f"{name}_s"] / row["floor_best_s"]
  return row


def render(report: dict) -> str:
  r = report["row"]
  lines = [
      f"# TFF's seed tutorial written TFF's way vs the hand-written floor ({report['date']})", "",
      f"Machine: {measure.describe(report['machine'])} (shared machine: compare ratios within "
      "this run).", f"Versions: {report['versions']}.", f"Command: `{report['command']}`.",
      f"Full run took {report['elapsed_s']:.0f} s.", "",
      f"FEMNIST digits, the {r['clients']} first writers, `repeat(5).shuffle(100, seed=1)"
      f".batch(20).map(format)` ({r['batches']} batches, {r['examples_per_round']} examples a "
      f"round), `input_spec` {r['input_spec']}; FedAvg, client SGD 0.02, server SGD 1.0. No "
      "call fell back to the sequential runtime (FallbackWarning is an error in this run).", "",
      "| | seconds per round | x floor | first call s |", "|---|---:|---:|---:|"]
  names = {
      "tff_way": "federax, TFF's way (`batch(20)`, no mask, no cache), hand-written model",
      "tff_way_writable": "the same over writable copies of the arrays (read every round)",
      "tff_way_read_ahead": "the same, `fx.runtime.vectorized(read_ahead=True)`",
      "tff_way_keras": "federax, TFF's way, Keras model (`from_keras_model`)",
      "tff_way_lists": "federax, TFF's way, batches passed as lists",
      "tff_way_cached": "federax, TFF's way plus `cache()` (the pipelines run once)",
      "masked_cached": "federax, `masked_batch(20)` + `cache()` (examples/image_classification.py)",
      "masked_cached_keras": "the same, Keras model"}
  for key, label in names.items():
    lines.append(f"| {label} | {r[f'{key}_s']:.4f} | {r[f'{key}_ratio']:.2f} | "
                 f"{r[f'{key}_first_s']:.2f} |")
  lines += [
      f"| floor: one jitted lax.scan over the padded batches | {r['floor_scan_s']:.4f} | "
      f"{r['floor_scan_s'] / r['floor_best_s']:.2f} | {r['floor_scan_first_s']:.2f} |",
      f"| floor: Python loop over a jitted step | {r['floor_loop_s']:.4f} | "
      f"{r['floor_loop_s'] / r['floor_best_s']:.2f} | {r['floor_loop_first_s']:.2f} |",
      "| (the TFF-way pipelines over writable arrays alone, read as the runtime reads them: "
      f"`Dataset.to_padded_cohort`) | "
      f"{r['pipeline_only_s']:.4f} | {r['pipeline_only_s'] / r['floor_best_s']:.2f} | |", "",
      f"- Ratio TFF's way / best floor: **{r['tff_way_ratio']:.2f}x** (target <= 1.25x); "
      f"plus `cache()`: {r['tff_way_cached_ratio']:.2f}x; `masked_batch` + `cache()`: "
      f"{r['masked_cached_ratio']:.2f}x. The loader's arrays are read-only, so the runtime "
      "keeps the cohort it read (from the second round) instead of reading it every round. "
      f"Over writable arrays: {r['tff_way_writable_ratio']:.2f}x, with read-ahead "
      f"{r['tff_way_read_ahead_ratio']:.2f}x: every round runs each client's pipeline again "
      "(shuffle, batch, the `map` function once per batch), as tf.data does (the "
      "pipelines-alone row); with read-ahead on a background thread during the round before's "
      "program, which waits for it before it returns: the timed round holds all the work of "
      "one round.",
      f"- Medians of {r['repeats']} interleaved repeats.",
      "- Largest relative difference of the first rounds' loss, accuracy and num_examples from "
      "`masked_batch`: " + ", ".join(f"{k} {v:.1e}" for k, v in r["max_rel_diff_vs_masked"].items())
      + ".",
      f"- One client, one round: max |federax - floor| = {r['max_abs_diff_one_client']:.1e}.", ""]
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true", help="2 writers, 2 repeats; no results")
  parser.add_argument("--repeats", type=int, default=30)
  parser.add_argument("--data-dir", type=pathlib.Path, default=lr.DATA,
                      help="the shared data folder holding femnist-leaf/")
  args = parser.parse_args()
  if not (args.data_dir / "femnist-leaf").is_dir():
    sys.exit(f"No FEMNIST LEAF data at {args.data_dir / 'femnist-leaf'}; pass --data-dir.")
  warnings.simplefilter("error", fx.runtime.FallbackWarning)

  start = time.perf_counter()
  repeats = 2 if args.smoke else args.repeats
  report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": measure.machine(),
            "versions": {"python": sys.version.split()[0], "jax": jax.__version__,
                         "numpy": np.__version__, "federax": fx.__version__},
            "command": "python -m benchmarks.tff_way_rounds" + (" --smoke" if args.smoke else
                                                                 f" --repeats {repeats}")}
  report["row"] = bench(args.data_dir, args.smoke, repeats)
  row = report["row"]
  print(json.dumps({k: v for k, v in row.items() if k != "first_rounds"}), flush=True)
  assert row["max_abs_diff_one_client"] < 1e-5, row
  assert all(v < 1e-6 for v in row["max_rel_diff_vs_masked"].values()), row
  print(f"TFF's way: {row['tff_way_s'] * 1e3:.1f} ms a round, {row['tff_way_ratio']:.2f}x the "
        f"floor ({row['floor_best_s'] * 1e3:.1f} ms)")
  if args.smoke:
    print("smoke ok")
    return
  report["elapsed_s"] = time.perf_counter() - start
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "tff_way_rounds.json").write_text(json.dumps(report, indent=2, default=float))
  text = render(report)
  (RESULTS / "tff_way_rounds.md").write_text(text)
  print(text)


if __name__ == "__main__":
  main()
