"""Benchmark: FedAvg rounds on real FEMNIST (W1, W2) against centralized JAX floors.

    python -m benchmarks.learning_rounds            # the full run (a few minutes on 2 cores)
    python -m benchmarks.learning_rounds --smoke    # 2 clients, 1 round each, W2 without its
                                                    # floors' timings (the test suite)

Data: FEMNIST (LEAF) from `--data-dir` (default `../shared/data`, relative to the repo root).

- W1, TFF's seed tutorial: the 10 first digit writers (sorted ids), `repeat(5).shuffle(100, seed=1)
  .masked_batch(20)`, the tutorial's linear 784 -> 10 softmax model from zeros
  (`examples/image_classification.py`'s `hand_written_model`), client SGD 0.02, server SGD 1.0,
  10 rounds.
- W2, TFF's EMNIST `cnn_dropout` (62 classes) as a `FunctionalModel`, Glorot-uniform from a fixed
  seed; 10 writers a round drawn by `UniformSampler` from all train writers, 1 epoch of batch 20,
  client SGD 10**-1.5, server SGD 1.0, 20 rounds.

Floors train one model centrally over the same batches in the same order with the same SGD: a
Python loop over a jitted per-batch step, and one jitted `lax.scan`. Seconds per round are
medians after the first (compiling) round, reported separately; compile seconds come from JAX's
compile events. Writes benchmarks/results/learning_rounds_floors.{json,md}: the investigation of
W2's convolutions that this script also ran until it was retired is recorded in
benchmarks/results/learning_rounds.{json,md} (benchmarks/results/README.md).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import federax as fx
from benchmarks import measure
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights
from federax.learning.models import metrics as model_metrics
from federax.runtime import xla_options
from federax.runtime.padding import bucket
from federax.simulation.datasets import femnist
from federax.simulation.sampling import UniformSampler

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT.parent / "shared" / "data"
BATCH = 20
W1_LR, W2_LR = 0.02, 10**-1.5
SCAN_PREFIX = 8  # Batches the W2 scan floors run (the rolled one is slow).
measure.compiles()  # Before the first round: its compile seconds are reported.


# --- Models ---------------------------------------------------------------------------------------

def _dropout(x, rate: float, key):
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def cnn_dropout_weights(seed: int = 0) -> list:
  """Glorot-uniform kernels (Keras's default) and zero biases, from a fixed seed."""
  shapes = [((3, 3, 1, 32), 9, 288), ((3, 3, 32, 64), 288, 576), ((9216, 128), 9216, 128),
            ((128, 62), 128, 62)]
  weights = []
  for key, (shape, fan_in, fan_out) in zip(jax.random.split(jax.random.PRNGKey(seed), 4), shapes):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    weights += [np.asarray(jax.random.uniform(key, shape, jnp.float32, -limit, limit)),
                np.zeros(shape[-1], np.float32)]
  return weights


def cnn_dropout_predict(dropout: bool = True):
  """TFF's EMNIST `cnn_dropout`: conv 32 -> conv 64 -> max pool -> dropout 0.25 -> dense 128 ->
  dropout 0.5 -> dense 62 softmax, as `predict_on_batch_fn(weights, x, training, key)`."""
  nhwc = ("NHWC", "HWIO", "NHWC")
  conv = lambda h, k: lax.conv_general_dilated(h, k, (1, 1), "VALID", dimension_numbers=nhwc)
  pool = lambda h: lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

  def predict(weights, x, training, key):
    w1, b1, w2, b2, w3, b3, w4, b4 = getattr(weights, "trainable", weights)
    h = pool(jax.nn.relu(conv(jax.nn.relu(conv(x, w1) + b1), w2) + b2))
    use_dropout = training and dropout
    if use_dropout:
      key_pool, key_dense = jax.random.split(key)
      h = _dropout(h, 0.25, key_pool)
    h = jax.nn.relu(h.reshape(h.shape[0], -1) @ w3 + b3)  # Flattened in NHWC order, as Keras.
    if use_dropout:
      h = _dropout(h, 0.5, key_dense)
    return jax.nn.softmax(h @ w4 + b4)

  return predict


def sparse_categorical_crossentropy(predictions, labels, sample_weight):
  """Keras's loss on probabilities (clipped to [1e-7, 1 - 1e-7]), the masked mean."""
  p = jnp.take_along_axis(predictions, labels.reshape(-1, 1), axis=1)[:, 0]
  return model_metrics.weighted_mean(-jnp.log(jnp.clip(p, 1e-7, 1 - 1e-7)), sample_weight)


def cnn_model(input_spec, dropout: bool = True) -> FunctionalModel:
  return FunctionalModel(
      initial_weights=ModelWeights(cnn_dropout_weights(), []),
      predict_on_batch_fn=cnn_dropout_predict(dropout), loss_fn=sparse_categorical_crossentropy,
      metrics_fns=model_metrics.to_metrics_fns([model_metrics.sparse_categorical_accuracy()]),
      input_spec=input_spec)


def w2_format(element):
  return collections.OrderedDict(x=element["pixels"][..., None], y=element["label"],
                                 mask=element["mask"])


def load_tutorial():
  """`examples/image_classification.py`: W1's preprocessing and hand-written model."""
  spec = importlib.util.spec_from_file_location("image_classification",
                                                ROOT / "examples" / "image_classification.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# --- Centralized floors ---------------------------------------------------------------------------

def sgd_step(predict, lr: float):
  def step(weights, batch, key):
    def loss(w):
      return sparse_categorical_crossentropy(predict(w, batch["x"], True, key), batch["y"],
                                             batch["mask"].astype(jnp.float32))
    return jax.tree_util.tree_map(lambda w, g: w - lr * g, weights, jax.grad(loss)(weights))
  return step


def floor_loop(step):
  """A Python loop over a jitted per-batch step; `batches` are NumPy arrays [N, B, ...]. The
  floors compile with federax's XLA options (`xla_options`), as federax's programs do."""
  jitted = xla_options.jit(step)

  def run(weights, batches, keys):
    for i in range(len(keys)):
      weights = jitted(weights, {k: v[i] for k, v in batches.items()}, keys[i])
    return weights

  return run


def floor_scan(step, unroll: int | bool = 1):
  """One jitted `lax.scan` over all batches."""

  @xla_options.jit
  def run(weights, batches, keys):
    return lax.scan(lambda w, bk: (step(w, *bk), None), weights, (batches, keys), unroll=unroll)[0]

  return run


def stacked_batches(datasets) -> dict:
  """Every client's batches, concatenated in client order: the floors' input."""
  stacks = [d.to_stacked() for d in datasets]
  return {k: np.concatenate([s[k] for s in stacks]) for k in ("x", "y", "mask")}


def padded_clients(datasets) -> tuple[dict, np.ndarray]:
  """Clients' batches padded to the runtime's bucketed length: [C, L, ...] and real [C, L]."""
  stacks = [d.to_stacked() for d in datasets]
  length = bucket(max(len(s["mask"]) for s in stacks))
  pad = lambda a: np.concatenate([a, np.zeros((length - len(a),) + a.shape[1:], a.dtype)])
  batches = {k: np.stack([pad(s[k]) for s in stacks]) for k in ("x", "y", "mask")}
  real = np.stack([pad(np.ones(len(s["mask"]), bool)) for s in stacks])
  return batches, real


# --- Federax rounds -------------------------------------------------------------------------------

def fed_avg(model, lr: float):
  return algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(lr),
                                           optimizers.build_sgdm(1.0))


def run_rounds(process, cohorts) -> dict:
  """Runs one round per cohort; per-round seconds, compile seconds and examples."""
  state = process.initialize()
  rounds = []
  for data in cohorts:
    before = measure.compiles().compile_s
    start = time.perf_counter()
    state, metrics = process.next(state, data)
    measure.block(state)
    seconds = time.perf_counter() - start
    train = metrics["client_work"]["train"]
    rounds.append({"s": seconds, "compile_s": measure.compiles().compile_s - before,
                   "examples": int(train["num_examples"]), "loss": float(train["loss"])})
  return {"rounds": rounds, "state": state}


def one_client_check(process, data, step, weights) -> float:
  """Max |federax - floor| after one round of one client (server SGD 1.0: the client's weights)."""
  state, _ = process.next(process.initialize(), data)
  ours = process.get_model_weights(state).trainable
  batches = stacked_batches(data)
  keys = jnp.zeros((len(batches["mask"]), 2), jnp.uint32)
  floors = [floor_loop(step)(weights, batches, keys), floor_scan(step)(weights, batches, keys)]
  return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for floor in floors for a, b in zip(ours, floor))


def summarize(rounds: list) -> dict:
  later = rounds[1:]
  steady = [r for r in later if r["compile_s"] < 0.05 * r["s"]] or later
  examples = sum(r["examples"] for r in steady)
  return {"first_round_s": rounds[0]["s"], "first_round_compile_s": rounds[0]["compile_s"],
          "round_s": statistics.median(r["s"] for r in steady) if steady else float("nan"),
          "steady_rounds": len(steady),
          "recompiling_rounds": len(later) - len(steady) if later else 0,
          "recompile_s": sum(r["compile_s"] for r in later),
          "examples_per_s": examples / sum(r["s"] for r in steady) if steady else float("nan"),
          "examples_per_s_all_later_rounds": (sum(r["examples"] for r in later)
                                              / sum(r["s"] for r in later)) if later else None}


# --- W1 -------------------------------------------------------------------------------------------

def w1_data(data_dir: pathlib.Path, clients: int, smoke: bool):
  tutorial = load_tutorial()
  if smoke:  # Lazy: parses only the shards these writers are in, not every shard for digits.
    train, _ = femnist.load_data(data_dir / "femnist-leaf")
    ids = sorted(train.client_ids)[:clients]
    data = [tutorial.preprocess(train.create_dataset(c).filter(lambda e: e["label"] < 10))
            for c in ids]
  else:
    train, _ = femnist.load_data(data_dir / "femnist-leaf", only_digits=True)
    data = tutorial.make_federated_data(train, sorted(train.client_ids)[:clients])
  return tutorial, data


def bench_w1(data_dir: pathlib.Path, smoke: bool) -> dict:
  clients, rounds, repeats = (2, 1, 2) if smoke else (10, 10, 30)
  tutorial, data = w1_data(data_dir, clients, smoke)
  model = tutorial.hand_written_model(data[0].element_spec)
  process = fed_avg(model, W1_LR)
  predict = lambda w, x, training, key: model.predict_on_batch(ModelWeights(w, []), x, training)
  step = sgd_step(predict, W1_LR)
  weights = list(model.initial_weights.trainable)
  row = {"clients": clients, "rounds": rounds,
         "max_abs_diff_one_client": one_client_check(process, data[:1], step, weights)}
  result = run_rounds(process, [data] * rounds)
  row.update(summarize(result["rounds"]), per_round_s=[r["s"] for r in result["rounds"]],
             examples_per_round=result["rounds"][0]["examples"],
             final_loss=result["rounds"][-1]["loss"])
  row["tutorial_rounds_median_s"] = row.pop("round_s")
  batches = stacked_batches(data)
  keys = jnp.zeros((len(batches["mask"]), 2), jnp.uint32)
  row["batches"] = len(keys)
  state = result["state"]
  # Rounds of milliseconds on a shared machine: every contender runs in turn, `repeats` times,
  # so that a burst of load hits them all alike.
  contenders = {"federax": lambda: process.next(state, data),
                "floor_loop": lambda f=floor_loop(step): f(weights, batches, keys),
                "floor_scan": lambda f=floor_scan(step): f(weights, batches, keys)}
  for name, t in measure.interleaved(contenders, repeats).items():
    row[f"{name}_first_s"], row[f"{name}_s"] = t["first_s"], t["s"]
  row["round_s"], row["repeats"] = row.pop("federax_s"), repeats
  row["examples_per_s"] = row["examples_per_round"] / row["round_s"]
  row["floor_best_s"] = min(row["floor_loop_s"], row["floor_scan_s"])
  row["ratio_to_floor"] = row["round_s"] / row["floor_best_s"]
  return row


# --- W2 -------------------------------------------------------------------------------------------

def w2_cohorts(data_dir: pathlib.Path, clients: int, rounds: int, seed: int = 0):
  train, _ = femnist.load_data(data_dir / "femnist-leaf")
  sampler = UniformSampler(train.client_ids, clients, seed=seed)
  return [[train.create_dataset(c).shuffle(100, seed=1).masked_batch(BATCH).map(w2_format)
           for c in sampler.sample(r)] for r in range(rounds)]


def bench_w2(cohorts, smoke: bool) -> dict:
  spec = cohorts[0][0].element_spec
  row = {"clients": len(cohorts[0]), "rounds": len(cohorts)}
  plain = cnn_model(spec, dropout=False)
  row["max_abs_diff_one_client_no_dropout"] = one_client_check(
      fed_avg(plain, W2_LR), cohorts[0][:1], sgd_step(cnn_dropout_predict(dropout=False), W2_LR),
      cnn_dropout_weights())
  result = run_rounds(fed_avg(cnn_model(spec), W2_LR), cohorts)
  for r, cohort in zip(result["rounds"], cohorts):
    r["real_batches"] = len(stacked_batches(cohort)["mask"])
    r["padded_batches"] = int(padded_clients(cohort)[1].size)
  row.update(summarize(result["rounds"]), per_round=result["rounds"])
  row["padding"] = (sum(r["padded_batches"] for r in result["rounds"])
                    / sum(r["real_batches"] for r in result["rounds"]))
  if smoke:  # The floors' timings (three more CNN programs to compile) are the full run's.
    return row

  step = sgd_step(cnn_dropout_predict(), W2_LR)
  weights = cnn_dropout_weights()
  everything = [stacked_batches(c) for c in cohorts]
  batches = {k: np.concatenate([b[k] for b in everything]) for k in everything[0]}
  keys = jax.random.split(jax.random.PRNGKey(1), len(batches["mask"]))
  loop = floor_loop(step)
  warm = measure.timed(lambda: loop(weights, {k: v[:1] for k, v in batches.items()}, keys[:1]), 0)
  start = time.perf_counter()
  measure.block(loop(weights, batches, keys))
  examples = int(batches["mask"].sum())
  row["floor_loop_examples_per_s"] = examples / (time.perf_counter() - start)
  row["floor_loop_first_s"] = warm["first_s"]
  # A rolled scan with XLA's conv is ~15x slower than the loop: timed on a short prefix.
  prefix = 4 if smoke else SCAN_PREFIX
  head = {k: v[:prefix] for k, v in batches.items()}
  for name, unroll in [("scan", 1), ("unrolled_scan", True)]:
    t = measure.timed(lambda f=floor_scan(step, unroll): f(weights, head, keys[:prefix]), 1)
    row[f"floor_{name}_examples_per_s"] = int(head["mask"].sum()) / t["s"]
    row[f"floor_{name}_first_s"] = t["first_s"]
  floors = [row[k] for k in row if k.startswith("floor_") and k.endswith("examples_per_s")]
  row["floor_best_examples_per_s"] = max(floors)
  row["ratio_examples_per_s"] = row["examples_per_s"] / row["floor_best_examples_per_s"]
  return row


# --- Report ---------------------------------------------------------------------------------------

def render(report: dict) -> str:
  w1, w2 = report["w1"], report["w2"]
  return "\n".join([
      f"# FedAvg learning rounds vs centralized JAX floors ({report['date']})", "",
      f"Machine: {measure.describe(report['machine'])} (shared machine: compare ratios within "
      "this run).", f"Versions: {report['versions']}.", f"Command: `{report['command']}`.",
      f"Full run took {report['elapsed_s']:.0f} s.", "",
      "## W1: TFF's seed tutorial (10 digit writers, 5 epochs, linear model, 10 rounds)", "",
      "| | seconds per round | first round s | examples/s |", "|---|---:|---:|---:|",
      f"| federax (`process.next`, datasets in) | {w1['round_s']:.4f} | "
      f"{w1['first_round_s']:.2f} | {w1['examples_per_s']:,.0f} |",
      f"| floor: Python loop over a jitted step ({w1['batches']} batches) | "
      f"{w1['floor_loop_s']:.4f} | {w1['floor_loop_first_s']:.2f} | "
      f"{w1['examples_per_round'] / w1['floor_loop_s']:,.0f} |",
      f"| floor: one jitted lax.scan | {w1['floor_scan_s']:.4f} | {w1['floor_scan_first_s']:.2f} "
      f"| {w1['examples_per_round'] / w1['floor_scan_s']:,.0f} |", "",
      f"- Ratio federax / best floor: **{w1['ratio_to_floor']:.2f}x** (target <= 1.25x).",
      f"- Medians of {w1['repeats']} interleaved repeats (federax and the floors in turn).",
      f"- One client, one round: max |federax - floor| = {w1['max_abs_diff_one_client']:.1e}.",
      "", "## W2: EMNIST `cnn_dropout`, 62 classes, 10 sampled writers a round, 1 epoch, 20 rounds",
      "", "| | examples/s | notes |", "|---|---:|---|",
      f"| federax, default runtime | {w2['examples_per_s']:,.0f} | steady rounds: median "
      f"{w2['round_s']:.2f} s; first round {w2['first_round_s']:.1f} s "
      f"({w2['first_round_compile_s']:.1f} s compiling); {w2['recompiling_rounds']} later "
      f"rounds recompiled ({w2['recompile_s']:.1f} s) |",
      f"| floor: Python loop over a jitted step, all rounds' batches | "
      f"{w2['floor_loop_examples_per_s']:,.0f} | |",
      f"| floor: one rolled lax.scan (first {SCAN_PREFIX} batches) | "
      f"{w2['floor_scan_examples_per_s']:,.0f} | first call {w2['floor_scan_first_s']:.1f} s |",
      f"| floor: fully unrolled lax.scan (first {SCAN_PREFIX} batches) | "
      f"{w2['floor_unrolled_scan_examples_per_s']:,.0f} | first call "
      f"{w2['floor_unrolled_scan_first_s']:.1f} s |", "",
      f"- Ratio of examples/s, federax / best floor: **{w2['ratio_examples_per_s']:.2f}** "
      "(target >= 0.8).",
      f"- Padding: each client padded to the cohort's longest (bucketed) is {w2['padding']:.2f}x "
      "the real batches.",
      f"- One client, one round, dropout off: max |federax - floor| = "
      f"{w2['max_abs_diff_one_client_no_dropout']:.1e}.", ""])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true", help="2 clients, 1 round each; no results")
  parser.add_argument("--data-dir", type=pathlib.Path, default=DATA,
                      help="the shared data folder holding femnist-leaf/")
  args = parser.parse_args()
  if not (args.data_dir / "femnist-leaf").is_dir():
    sys.exit(f"No FEMNIST LEAF data at {args.data_dir / 'femnist-leaf'}; pass --data-dir.")

  start = time.perf_counter()
  report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": measure.machine(),
            "versions": {"python": sys.version.split()[0], "jax": jax.__version__,
                         "numpy": np.__version__, "federax": fx.__version__},
            "command": "python -m benchmarks.learning_rounds" + (" --smoke" if args.smoke else "")}
  report["w1"] = bench_w1(args.data_dir, args.smoke)
  print(json.dumps({k: v for k, v in report["w1"].items() if k != "per_round_s"}), flush=True)
  clients, rounds = (2, 1) if args.smoke else (10, 20)
  report["w2"] = bench_w2(w2_cohorts(args.data_dir, clients, rounds), args.smoke)
  print(json.dumps({k: v for k, v in report["w2"].items() if k != "per_round"}), flush=True)
  assert report["w1"]["max_abs_diff_one_client"] < 1e-5, report["w1"]
  assert report["w2"]["max_abs_diff_one_client_no_dropout"] < 1e-4, report["w2"]
  if args.smoke:
    print("smoke ok")
    return
  report["elapsed_s"] = time.perf_counter() - start
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "learning_rounds_floors.json").write_text(json.dumps(report, indent=2, default=float))
  text = render(report)
  (RESULTS / "learning_rounds_floors.md").write_text(text)
  print(text)


if __name__ == "__main__":
  main()
