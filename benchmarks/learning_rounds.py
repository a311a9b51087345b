"""Benchmark: FedAvg rounds on real FEMNIST against centralized JAX floors, and where time goes.

    python -m benchmarks.learning_rounds            # the full run (about 9 minutes on 2 cores)
    python -m benchmarks.learning_rounds --smoke    # 2 clients, 1 round each (the test suite)

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
compile events. Then the W2 investigation: convolution lowerings, layouts, loop strategies and
XLA:CPU flags, each measured in this run. Writes benchmarks/results/learning_rounds.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import importlib.util
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import federax as fx
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights
from federax.learning.models import metrics as model_metrics
from federax.runtime.padding import bucket
from federax.simulation.datasets import femnist
from federax.simulation.sampling import UniformSampler

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT.parent / "shared" / "data"
BATCH = 20
W1_LR, W2_LR = 0.02, 10**-1.5
TFF_W1_ROUND_S = 0.23  # TFF 0.87, this tutorial round, on this machine class (the brief's figure).
W2_REFERENCE_RATES = {"TFF 0.87": 1000, "centralized PyTorch loop": 1700}  # Examples/s, same CPU.
SCAN_PREFIX = 8  # Batches the W2 scan floors run (the rolled one is slow).
XLA_FLAG_SETS = ["", "--xla_cpu_use_onednn=true",
                 "--xla_cpu_experimental_ynn_fusion_type=individual_dot,individual_convolution",
                 "--xla_cpu_experimental_ynn_fusion_type=", "--xla_cpu_multi_thread_eigen=false",
                 "--xla_cpu_use_thunk_runtime=false", ""]  # The baseline again: the drift.


# --- Timing ---------------------------------------------------------------------------------------

# XLA's compile time only: traces nest (federax traces inside its own trace) and would count twice.
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compile_seconds = [0.0]


def _on_event(event: str, duration: float, **_) -> None:
  if event == _COMPILE_EVENT:
    _compile_seconds[0] += duration


jax.monitoring.register_event_duration_secs_listener(_on_event)


def _block(out):
  return jax.tree_util.tree_map(
      lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, out)


def timed(fn, repeats: int) -> dict:
  """First call (compiling) and the median of `repeats` more, with compile seconds of the first."""
  before = _compile_seconds[0]
  start = time.perf_counter()
  _block(fn())
  first = time.perf_counter() - start
  compile_s = _compile_seconds[0] - before
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    _block(fn())
    times.append(time.perf_counter() - start)
  return {"first_s": first, "compile_s": compile_s,
          "s": statistics.median(times) if times else float("nan")}


def interleaved(contenders: dict, repeats: int) -> dict:
  """`timed` for several functions at once: after each one's first call, all run in turn
  `repeats` times, so that a burst of load on a shared machine hits them all alike."""
  results = {name: timed(fn, 0) for name, fn in contenders.items()}
  times = {name: [] for name in contenders}
  for _ in range(repeats):
    for name, fn in contenders.items():
      start = time.perf_counter()
      _block(fn())
      times[name].append(time.perf_counter() - start)
  for name, ts in times.items():
    results[name]["s"] = statistics.median(ts)
  return results


def vm_hwm_mib() -> float:
  """Peak resident set of this process (VmHWM), which starts afresh in each new program."""
  with open("/proc/self/status", encoding="ascii") as f:
    return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


# --- Models ---------------------------------------------------------------------------------------

_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv_lax(x, kernel):
  return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_NHWC)


@jax.custom_vjp
def _conv_canonical(x, kernel):
  """A VALID stride-1 NHWC convolution whose gradients are themselves canonical NHWC convs.

  JAX's transpose rule gives the kernel gradient as a conv with dim_labels f01b_i01o->01bf;
  XLA:CPU rewrites it to the canonical form (and Eigen) in straight-line code, but not inside a
  while loop, where it is emitted as a naive loop nest about 25x slower (see the report).
  """
  return _conv_lax(x, kernel)


def _conv_canonical_fwd(x, kernel):
  return _conv_lax(x, kernel), (x, kernel)


def _conv_canonical_bwd(residuals, g):
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  dx = lax.conv_general_dilated(g, flipped, (1, 1), [(kh - 1, kh - 1), (kw - 1, kw - 1)],
                                dimension_numbers=_NHWC)
  # Input channels as the batch and examples as the features: the contraction over examples
  # becomes the canonical conv's feature contraction.
  dk = lax.conv_general_dilated(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), (1, 1), "VALID",
                                dimension_numbers=_NHWC)
  return dx, dk.transpose(1, 2, 0, 3)


_conv_canonical.defvjp(_conv_canonical_fwd, _conv_canonical_bwd)


def _conv_im2col(x, kernel):
  """im2col by shifted slices (their gradient is pad-and-add), then one matmul."""
  kh, kw, cin, cout = kernel.shape
  h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  cols = jnp.concatenate([x[:, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)], -1)
  return cols @ kernel.reshape(kh * kw * cin, cout)


def _conv_patches(x, kernel):
  """im2col by `conv_general_dilated_patches` (channel-major patches), then one matmul."""
  kh, kw, cin, cout = kernel.shape
  cols = lax.conv_general_dilated_patches(x, (kh, kw), (1, 1), "VALID", dimension_numbers=_NHWC)
  return cols @ kernel.transpose(2, 0, 1, 3).reshape(cin * kh * kw, cout)


CONVS = {"lax": _conv_lax, "canonical": _conv_canonical, "im2col": _conv_im2col,
         "patches": _conv_patches}


def _pool(x, impl: str, channels_last: bool = True):
  if impl == "reshape":  # Its gradient is a compare and select, not XLA's select-and-scatter.
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
  window = (1, 2, 2, 1) if channels_last else (1, 1, 2, 2)
  return lax.reduce_window(x, -jnp.inf, lax.max, window, window, "VALID")


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


def cnn_dropout_predict(conv: str = "lax", pool: str = "reduce_window", layout: str = "NHWC",
                        dropout: bool = True):
  """TFF's EMNIST `cnn_dropout`: conv 32 -> conv 64 -> max pool -> dropout 0.25 -> dense 128 ->
  dropout 0.5 -> dense 62 softmax, as `predict_on_batch_fn(weights, x, training, key)`."""

  def predict(weights, x, training, key):
    w1, b1, w2, b2, w3, b3, w4, b4 = getattr(weights, "trainable", weights)
    if layout == "NCHW":
      oihw = lambda k: k.transpose(3, 2, 0, 1)
      conv_nchw = lambda h, k: lax.conv_general_dilated(
          h, oihw(k), (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW"))
      h = x.transpose(0, 3, 1, 2)
      h = jax.nn.relu(conv_nchw(h, w1) + b1[:, None, None])
      h = jax.nn.relu(conv_nchw(h, w2) + b2[:, None, None])
      h = _pool(h, "reduce_window", channels_last=False).transpose(0, 2, 3, 1)
    else:
      h = jax.nn.relu(CONVS[conv](x, w1) + b1)
      h = jax.nn.relu(CONVS[conv](h, w2) + b2)
      h = _pool(h, pool)
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


def cnn_model(input_spec, **variant) -> FunctionalModel:
  return FunctionalModel(
      initial_weights=ModelWeights(cnn_dropout_weights(), []),
      predict_on_batch_fn=cnn_dropout_predict(**variant), loss_fn=sparse_categorical_crossentropy,
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
  """A Python loop over a jitted per-batch step; `batches` are NumPy arrays [N, B, ...]."""
  jitted = jax.jit(step)

  def run(weights, batches, keys):
    for i in range(len(keys)):
      weights = jitted(weights, {k: v[i] for k, v in batches.items()}, keys[i])
    return weights

  return run


def floor_scan(step, unroll: int | bool = 1):
  """One jitted `lax.scan` over all batches."""

  @jax.jit
  def run(weights, batches, keys):
    return lax.scan(lambda w, bk: (step(w, *bk), None), weights, (batches, keys), unroll=unroll)[0]

  return run


def fedavg_by_hand(step, clients: str, padded: bool):
  """A FedAvg round written by hand over padded client batches [C, L, ...] (server SGD 1.0).

  Args:
    step: the per-batch SGD step.
    clients: "vmap" (a batch of clients, as the vectorized runtime runs them), "scan" (one
      client after another), or "unroll" (a Python loop: straight-line code, batches unrolled).
    padded: every client steps through all L batches, masking the padding (as the runtime
      does), or only through its own real batches (a `fori_loop` with the client's trip count).
  """

  def client(weights, batches, real, keys):
    if not padded:
      body = lambda i, w: step(w, jax.tree_util.tree_map(lambda a: a[i], batches), keys[i])
      return lax.fori_loop(0, jnp.sum(real), body, weights)

    def masked(w, item):
      batch, is_real, key = item
      new = step(w, batch, key)
      return jax.tree_util.tree_map(lambda a, b: jnp.where(is_real, a, b), new, w), None

    unroll = clients == "unroll" and real.shape[0]
    return lax.scan(masked, weights, (batches, real, keys), unroll=unroll or 1)[0]

  @jax.jit
  def run(weights, batches, real, keys):
    if clients == "scan":
      _, trained = lax.scan(lambda c, args: (c, client(weights, *args)), 0, (batches, real, keys))
    elif clients == "unroll":
      parts = [client(weights, *jax.tree_util.tree_map(lambda a, i=i: a[i], (batches, real, keys)))
               for i in range(len(real))]
      trained = jax.tree_util.tree_map(lambda *t: jnp.stack(t), *parts)
    else:
      trained = jax.vmap(client, in_axes=(None, 0, 0, 0))(weights, batches, real, keys)
    counts = jnp.sum(batches["mask"], axis=(1, 2)).astype(jnp.float32)
    return jax.tree_util.tree_map(
        lambda t: jnp.tensordot(counts, t, axes=1) / jnp.sum(counts), trained)

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


def examples_in(datasets) -> int:
  return int(sum(d.to_stacked()["mask"].sum() for d in datasets))


# --- Federax rounds -------------------------------------------------------------------------------

def fed_avg(model, lr: float):
  return algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(lr),
                                           optimizers.build_sgdm(1.0))


def run_rounds(process, cohorts) -> dict:
  """Runs one round per cohort; per-round seconds, compile seconds and examples."""
  state = process.initialize()
  rounds = []
  for data in cohorts:
    before = _compile_seconds[0]
    start = time.perf_counter()
    state, metrics = process.next(state, data)
    _block(state)
    seconds = time.perf_counter() - start
    train = metrics["client_work"]["train"]
    rounds.append({"s": seconds, "compile_s": _compile_seconds[0] - before,
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
  padded, real = padded_clients(data)
  client_keys = jnp.zeros(real.shape + (2,), jnp.uint32)
  row["batches"], row["padded_batches"] = len(keys), int(real.size)
  state = result["state"]
  # Rounds of milliseconds on a shared machine: every contender runs in turn, `repeats` times,
  # so that a burst of load hits them all alike. The by-hand rounds attribute the time: the
  # runtime's strategy (a batch of clients, padded) and per-client alternatives, each one jitted
  # program fed NumPy arrays, without federax's host side.
  contenders = {"federax": lambda: process.next(state, data),
                "floor_loop": lambda f=floor_loop(step): f(weights, batches, keys),
                "floor_scan": lambda f=floor_scan(step): f(weights, batches, keys),
                "stack_datasets": lambda: [d.to_stacked() for d in data]}
  for clients_how, pad in [("vmap", True), ("scan", True), ("scan", False)]:
    run = fedavg_by_hand(step, clients_how, pad)
    contenders[f"by_hand_{clients_how}_{'padded' if pad else 'real'}"] = (
        lambda run=run: run(weights, padded, real, client_keys))
  for name, t in interleaved(contenders, repeats).items():
    row[f"{name}_first_s"], row[f"{name}_s"] = t["first_s"], t["s"]
  row["round_s"], row["repeats"] = row.pop("federax_s"), repeats
  row["examples_per_s"] = row["examples_per_round"] / row["round_s"]
  row["floor_best_s"] = min(row["floor_loop_s"], row["floor_scan_s"])
  row["ratio_to_floor"] = row["round_s"] / row["floor_best_s"]
  row["speedup_vs_tff"] = TFF_W1_ROUND_S / row["round_s"]
  return row


def w1_memory_probe(data_dir: pathlib.Path) -> dict:
  """Run in a fresh process: W1's 10 rounds, and the process's peak resident memory."""
  _, data = w1_data(data_dir, 10, smoke=False)
  after_load = vm_hwm_mib()
  tutorial = load_tutorial()
  process = fed_avg(tutorial.hand_written_model(data[0].element_spec), W1_LR)
  run_rounds(process, [data] * 10)
  return {"vm_hwm_after_data_mib": after_load, "vm_hwm_mib": vm_hwm_mib()}


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

  step = sgd_step(cnn_dropout_predict(), W2_LR)
  weights = cnn_dropout_weights()
  everything = [stacked_batches(c) for c in cohorts]
  batches = {k: np.concatenate([b[k] for b in everything]) for k in everything[0]}
  keys = jax.random.split(jax.random.PRNGKey(1), len(batches["mask"]))
  loop = floor_loop(step)
  warm = timed(lambda: loop(weights, {k: v[:1] for k, v in batches.items()}, keys[:1]), 0)
  start = time.perf_counter()
  _block(loop(weights, batches, keys))
  examples = int(batches["mask"].sum())
  row["floor_loop_examples_per_s"] = examples / (time.perf_counter() - start)
  row["floor_loop_first_s"] = warm["first_s"]
  # A rolled scan with XLA's conv is ~15x slower than the loop: timed on a short prefix.
  prefix = 4 if smoke else SCAN_PREFIX
  head = {k: v[:prefix] for k, v in batches.items()}
  for name, unroll in [("scan", 1), ("unrolled_scan", True)]:
    t = timed(lambda f=floor_scan(step, unroll): f(weights, head, keys[:prefix]), 1)
    row[f"floor_{name}_examples_per_s"] = int(head["mask"].sum()) / t["s"]
    row[f"floor_{name}_first_s"] = t["first_s"]
  floors = [row[k] for k in row if k.startswith("floor_") and k.endswith("examples_per_s")]
  row["floor_best_examples_per_s"] = max(floors)
  row["ratio_examples_per_s"] = row["examples_per_s"] / row["floor_best_examples_per_s"]
  return row


# --- Where W2's time goes -------------------------------------------------------------------------

def profile_batch() -> list:
  """Seconds for one batch of 20 (median of 10) of the model's parts, and of loops around them."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((BATCH, 28, 28, 1), np.float32))
  batch = {"x": x, "y": jnp.asarray(rng.integers(0, 62, BATCH), jnp.int32),
           "mask": jnp.ones(BATCH, bool)}
  h1 = jnp.asarray(rng.random((BATCH, 26, 26, 32), np.float32))
  h2 = jnp.asarray(rng.random((BATCH, 24, 24, 64), np.float32))
  weights = [jnp.asarray(w) for w in cnn_dropout_weights()]
  key = jax.random.PRNGKey(0)
  sq = lambda f: lambda *a: jnp.sum(f(*a) ** 2)
  rows = []

  def add(name, fn, *args, per=1, repeats=10):
    t = timed(lambda: fn(*args), repeats)
    rows.append({"part": name, "ms": 1e3 * t["s"] / per, "compile_s": t["compile_s"]})

  add("train step (fwd+bwd+SGD), stock model", jax.jit(sgd_step(cnn_dropout_predict(), W2_LR)),
      weights, batch, key)
  add("train step, pool as reshape+max",
      jax.jit(sgd_step(cnn_dropout_predict(pool="reshape"), W2_LR)), weights, batch, key)
  add("forward only (training)", jax.jit(cnn_dropout_predict(), static_argnums=2), weights, x, True,
      key)
  for name, conv in [("lax", _conv_lax), ("im2col", _conv_im2col), ("patches", _conv_patches)]:
    add(f"conv2 forward ({name})", jax.jit(conv), h1, weights[2])
    add(f"conv2 forward+backward ({name})", jax.jit(jax.grad(sq(conv), (0, 1))), h1, weights[2])
  add("conv1 forward+backward", jax.jit(jax.grad(sq(_conv_lax), 1)), x, weights[0])
  add("max pool forward+backward (reduce_window)",
      jax.jit(jax.grad(sq(lambda h: _pool(h, "reduce_window")))), h2)
  add("max pool forward+backward (reshape+max)",
      jax.jit(jax.grad(sq(lambda h: _pool(h, "reshape")))), h2)
  flat = jnp.asarray(rng.random((BATCH, 9216), np.float32))
  add("dense 9216x128 forward+backward", jax.jit(jax.grad(sq(jnp.matmul), (0, 1))), flat,
      weights[4])
  # The kernel gradient inside a loop: 4 batches, rolled vs unrolled.
  h1s = jnp.stack([h1] * 4)
  for name, conv in [("lax", _conv_lax), ("canonical VJP", _conv_canonical)]:
    body = lambda k, h, conv=conv: (k - 1e-6 * jax.grad(sq(conv), 1)(h, k), None)
    for loop, unroll in [("rolled", 1), ("unrolled", 4)]:
      add(f"conv2 kernel gradient in a {loop} scan ({name}), per batch",
          jax.jit(lambda k, hs, body=body, unroll=unroll: lax.scan(body, k, hs, unroll=unroll)[0]),
          weights[2], h1s, per=4, repeats=3)
  # Ten clients' conv2 at once: vmap (a grouped conv) vs one conv per client.
  h1c = jnp.stack([h1] * 10)
  kc = jnp.stack([weights[2]] * 10)
  grad = jax.grad(sq(_conv_lax), (0, 1))
  add("conv2 fwd+bwd, 10 clients: vmap (feature_group_count=10), per client",
      jax.jit(jax.vmap(grad)), h1c, kc, per=10)
  add("conv2 fwd+bwd, 10 clients: one conv each (unrolled), per client",
      jax.jit(lambda hs, ks: [grad(hs[i], ks[i]) for i in range(10)]), h1c, kc, per=10)
  return rows


def investigate(cohort, small: int) -> list:
  """Federax and hand-written variants on one cohort (W2's round 0); seconds and examples/s.

  The five variants the findings compare run interleaved (each in turn, 3 times); the others
  one after another, on `small` clients where they are slow.
  """
  spec = cohort[0].element_spec
  rows = []

  def add(name, data, t):
    rows.append({"variant": name, "clients": len(data), "examples": examples_in(data),
                 "first_s": t["first_s"], "compile_s": t["compile_s"], "s": t["s"],
                 "examples_per_s": examples_in(data) / t["s"]})
    print(json.dumps(rows[-1]), flush=True)

  def federax(data, runtime=None, **variant):
    process = fed_avg(cnn_model(spec, **variant), W2_LR)
    state = process.initialize()
    vectorized = fx.runtime.vectorized(**(runtime or {}))  # One runtime: it caches the program.

    def call():
      with vectorized:
        return process.next(state, data)

    return call

  def floor(data, **variant):
    step = sgd_step(cnn_dropout_predict(**variant), W2_LR)
    batches = stacked_batches(data)
    keys = jax.random.split(jax.random.PRNGKey(1), len(batches["mask"]))
    return lambda: floor_loop(step)(cnn_dropout_weights(), batches, keys)

  def by_hand(data, clients, padded, **variant):
    batches, real = padded_clients(data)
    keys = jax.random.split(jax.random.PRNGKey(1), real.size).reshape(real.shape + (2,))
    run = fedavg_by_hand(sgd_step(cnn_dropout_predict(**variant), W2_LR), clients, padded)
    return lambda: run(cnn_dropout_weights(), batches, real, keys)

  few = cohort[:small]
  per_client = {"sequence_loop": "scan", "chunk_size": 1}
  compared = {
      "floor: per-batch jitted step (stock: lax conv NHWC, reduce_window pool)": floor(cohort),
      "hand-written FedAvg round: scan over clients, fori_loop over real batches, canonical-VJP "
      "conv": by_hand(cohort, "scan", False, conv="canonical"),
      "federax: default runtime (vmap clients, unrolled batch loop), stock model":
          federax(cohort),
      "federax: chunk_size=1 + sequence_loop='scan', canonical-VJP conv":
          federax(cohort, per_client, conv="canonical"),
      "federax: chunk_size=1 + sequence_loop='scan', canonical-VJP conv + reshape pool":
          federax(cohort, per_client, conv="canonical", pool="reshape"),
  }
  for name, t in interleaved(compared, 3).items():
    add(f"{name} [interleaved]", cohort, t)
  # XLA's own conv is left out of rolled loops below: there it runs ~25x slower (the profile).
  others = [
      ("floor: per-batch step, NCHW layout", cohort, floor(cohort, layout="NCHW"), 2),
      ("floor: per-batch step, im2col (slices + matmul)", cohort, floor(cohort, conv="im2col"), 2),
      ("floor: per-batch step, im2col (conv_general_dilated_patches + matmul)", few,
       floor(few, conv="patches"), 2),
      ("floor: per-batch step, pool as reshape+max", cohort, floor(cohort, pool="reshape"), 2),
      ("floor: per-batch step, canonical-VJP conv + reshape pool", cohort,
       floor(cohort, conv="canonical", pool="reshape"), 2),
      ("hand-written FedAvg round: vmap over clients, masked scan over padded batches, "
       "canonical-VJP conv", cohort, by_hand(cohort, "vmap", True, conv="canonical"), 1),
      ("hand-written FedAvg round: scan over clients, masked scan over padded batches, "
       "canonical-VJP conv", cohort, by_hand(cohort, "scan", True, conv="canonical"), 2),
      ("hand-written FedAvg round: clients and batches unrolled (straight-line), stock conv",
       cohort[:5], by_hand(cohort[:5], "unroll", True), 1),
      ("federax: default runtime, im2col model (no conv: batched matmuls, rolled scan)", cohort,
       federax(cohort, conv="im2col"), 2),
      ("federax: sequence_loop='scan', stock model", few,
       federax(few, {"sequence_loop": "scan"}), 1),
      ("federax: chunk_size=1 (lax.map over clients), stock model", few,
       federax(few, {"chunk_size": 1}), 1),
      ("federax: chunk_size=1 + sequence_loop='scan', im2col", cohort,
       federax(cohort, per_client, conv="im2col"), 2),
  ]
  for name, data, fn, repeats in others:
    add(name, data, timed(fn, repeats))
  return rows


def flag_probe(data_dir: pathlib.Path) -> dict:
  """Run in a fresh process under XLA_FLAGS: the per-batch floor, a rolled-scan floor, and
  federax's best configuration, on the first 4 writers of W2's round-0 cohort."""
  cohort = w2_cohorts(data_dir, 10, 1)[0][:4]
  out = {"flags": os.environ.get("XLA_FLAGS", "")}
  step = sgd_step(cnn_dropout_predict(), W2_LR)
  batches = stacked_batches(cohort)
  keys = jax.random.split(jax.random.PRNGKey(1), len(batches["mask"]))
  weights = cnn_dropout_weights()
  loop = floor_loop(step)
  t = timed(lambda: loop(weights, batches, keys), 5)
  out["floor_loop_examples_per_s"] = int(batches["mask"].sum()) / t["s"]
  head = {k: v[:2] for k, v in batches.items()}
  t = timed(lambda: floor_scan(step)(weights, head, keys[:2]), 1)
  out["floor_rolled_scan_examples_per_s"] = int(head["mask"].sum()) / t["s"]
  process = fed_avg(cnn_model(cohort[0].element_spec, conv="canonical"), W2_LR)
  state = process.initialize()
  with fx.runtime.vectorized(sequence_loop="scan", chunk_size=1):
    t = timed(lambda: process.next(state, cohort), 3)
  out["federax_per_client_canonical_examples_per_s"] = examples_in(cohort) / t["s"]
  out["federax_per_client_canonical_first_s"] = t["first_s"]
  return out


def run_flag_probes(data_dir: pathlib.Path) -> list:
  rows = []
  for flags in XLA_FLAG_SETS:
    env = dict(os.environ, XLA_FLAGS=flags)
    child = subprocess.run([sys.executable, "-m", "benchmarks.learning_rounds", "--flag-probe",
                            "--data-dir", str(data_dir)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
    if child.returncode:
      rows.append({"flags": flags, "error": child.stderr.strip().splitlines()[-1][:200]})
    else:
      row = json.loads(child.stdout.strip().splitlines()[-1])
      notes = [line for line in child.stderr.splitlines() if "no longer supported" in line]
      if notes:
        row["note"] = notes[0].split("] ")[-1][:160]
      rows.append(row)
    print(json.dumps(rows[-1]), flush=True)
  return rows


# --- Report ---------------------------------------------------------------------------------------

def utc_date() -> str:
  try:
    return subprocess.run(["date", "-u"], capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return datetime.datetime.now(datetime.timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y")


def machine() -> dict:
  info = {"cpus": os.cpu_count()}
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    for key in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket",
                "Hypervisor vendor", "L2 cache", "L3 cache"):
      if key in fields:
        info[key] = fields[key].strip()
    info["avx512f"] = "avx512f" in fields.get("Flags", "")
  except (OSError, subprocess.CalledProcessError):
    info["Model name"] = platform.processor() or platform.machine()
  info["load average at start"] = os.getloadavg()
  return info


def render(report: dict) -> str:
  w1, w2 = report["w1"], report["w2"]
  m = report["machine"]
  lines = [f"# FedAvg learning rounds vs centralized JAX floors ({report['date']})", "",
           f"Machine: {m.get('Model name')}, {m.get('CPU(s)')} CPUs "
           f"({m.get('Core(s) per socket')} cores/socket, {m.get('Thread(s) per core')} "
           f"thread/core, {m.get('Hypervisor vendor', '')} VM), AVX-512: {m.get('avx512f')}; "
           f"L2 {m.get('L2 cache')}, L3 {m.get('L3 cache')}; "
           f"load average at start {tuple(round(x, 2) for x in m['load average at start'])} "
           "(shared machine: compare ratios within this run).",
           f"Versions: {report['versions']}.", f"Command: `{report['command']}`.",
           f"Full run took {report['elapsed_s']:.0f} s.", "",
           "## W1: TFF's seed tutorial (10 digit writers, 5 epochs, linear model, 10 rounds)", "",
           "| | seconds per round | first round s | examples/s |", "|---|---:|---:|---:|",
           f"| federax (`process.next`, datasets in) | {w1['round_s']:.4f} | "
           f"{w1['first_round_s']:.2f} | {w1['examples_per_s']:,.0f} |",
           f"| floor: Python loop over a jitted step ({w1['batches']} batches) | "
           f"{w1['floor_loop_s']:.4f} | {w1['floor_loop_first_s']:.2f} | "
           f"{w1['examples_per_round'] / w1['floor_loop_s']:,.0f} |",
           f"| floor: one jitted lax.scan | {w1['floor_scan_s']:.4f} | "
           f"{w1['floor_scan_first_s']:.2f} | "
           f"{w1['examples_per_round'] / w1['floor_scan_s']:,.0f} |",
           *[f"| FedAvg round by hand: {name} | {w1[key]:.4f} | | "
             f"{w1['examples_per_round'] / w1[key]:,.0f} |" for name, key in [
                 ("vmap over clients, padded (the runtime's strategy)", "by_hand_vmap_padded_s"),
                 ("scan over clients, padded", "by_hand_scan_padded_s"),
                 ("scan over clients, real batches only", "by_hand_scan_real_s")]],
           "",
           f"- Ratio federax / best floor: **{w1['ratio_to_floor']:.2f}x** (target <= 1.25x). "
           f"Speed-up over TFF 0.87's {TFF_W1_ROUND_S} s/round: **{w1['speedup_vs_tff']:.1f}x** "
           "(target >= 20x).",
           f"- {w1['examples_per_round']:,} examples a round in {w1['batches']} batches; the "
           f"vectorized runtime runs {w1['padded_batches']} (10 clients x the longest client's "
           f"batches, bucketed), {w1['padded_batches'] / w1['batches']:.2f}x the work.",
           f"- Medians of {w1['repeats']} interleaved repeats (federax, floors and by-hand rounds "
           f"in turn); the tutorial's 10 rounds themselves: median "
           f"{w1['tutorial_rounds_median_s']:.4f} s after the first. `to_stacked()` of the 10 "
           f"datasets (cached by the datasets): {w1['stack_datasets_s'] * 1e3:.2f} ms.",
           f"- Peak memory (VmHWM, fresh process, 10 rounds): "
           f"{report['w1_memory']['vm_hwm_mib']:.0f} MiB "
           f"({report['w1_memory']['vm_hwm_after_data_mib']:.0f} MiB after loading the data).",
           f"- One client, one round: max |federax - floor| = {w1['max_abs_diff_one_client']:.1e}.",
           f"- Per-round seconds: {', '.join(f'{s:.4f}' for s in w1['per_round_s'])}.", "",
           "## W2: EMNIST `cnn_dropout`, 62 classes, 10 sampled writers a round, 1 epoch, "
           "20 rounds",
           "",
           "| | examples/s | notes |", "|---|---:|---|",
           f"| federax, default runtime | {w2['examples_per_s']:,.0f} | steady rounds: median "
           f"{w2['round_s']:.2f} s; first round {w2['first_round_s']:.1f} s "
           f"({w2['first_round_compile_s']:.1f} s compiling); {w2['recompiling_rounds']} later "
           f"rounds recompiled ({w2['recompile_s']:.1f} s); all rounds after the first: "
           f"{w2['examples_per_s_all_later_rounds']:,.0f} examples/s |",
           f"| floor: Python loop over a jitted step, all rounds' batches | "
           f"{w2['floor_loop_examples_per_s']:,.0f} | |",
           f"| floor: one rolled lax.scan (first {SCAN_PREFIX} batches) | "
           f"{w2['floor_scan_examples_per_s']:,.0f} | first call "
           f"{w2['floor_scan_first_s']:.1f} s |",
           f"| floor: fully unrolled lax.scan (first {SCAN_PREFIX} batches) | "
           f"{w2['floor_unrolled_scan_examples_per_s']:,.0f} | first call "
           f"{w2['floor_unrolled_scan_first_s']:.1f} s |", "",
           f"- Ratio of examples/s, federax / best floor: **{w2['ratio_examples_per_s']:.2f}** "
           "(target >= 0.8). For scale: " + ", ".join(
               f"{k} ~{v:,} examples/s" for k, v in W2_REFERENCE_RATES.items()) + ".",
           f"- Padding: the vectorized runtime trains {w2['padding']:.2f}x the real batches "
           "(each client padded to the cohort's longest, bucketed).",
           f"- One client, one round, dropout off: max |federax - floor| = "
           f"{w2['max_abs_diff_one_client_no_dropout']:.1e}.",
           "- Per round (s / compile s / examples): " + ", ".join(
               f"{r['s']:.1f}/{r['compile_s']:.1f}/{r['examples']}" for r in w2["per_round"]) + ".",
           "", "## Where the time goes", ""]
  lines += report["findings"] + ["", "### W2: one batch of 20, by part", "",
                                 "| part | ms | XLA compile s |", "|---|---:|---:|"]
  lines += [f"| {r['part']} | {r['ms']:.2f} | {r['compile_s']:.2f} |" for r in report["profile"]]
  lines += ["", "### W2: strategies on the round-0 cohort (same run)", "",
            "| variant | clients | examples | first call s | XLA compile s | s | examples/s |",
            "|---|---:|---:|---:|---:|---:|---:|"]
  lines += [f"| {r['variant']} | {r['clients']} | {r['examples']} | {r['first_s']:.2f} | "
            f"{r['compile_s']:.2f} | {r['s']:.2f} | {r['examples_per_s']:,.0f} |"
            for r in report["investigation"]]
  lines += ["", "### W2: XLA:CPU flags (a fresh process each; round-0 cohort's first 4 writers)",
            "",
            "| XLA_FLAGS | floor: per-batch step ex/s | floor: rolled scan ex/s | "
            "federax per-client canonical ex/s | note |", "|---|---:|---:|---:|---|"]
  for r in report["flags"]:
    if "error" in r:
      lines.append(f"| `{r['flags']}` | - | - | - | error: {r['error']} |")
      continue
    lines.append(f"| `{r['flags'] or '(none)'}` | {r['floor_loop_examples_per_s']:,.0f} | "
                 f"{r['floor_rolled_scan_examples_per_s']:,.0f} | "
                 f"{r['federax_per_client_canonical_examples_per_s']:,.0f} | {r.get('note', '')} |")
  return "\n".join(lines) + "\n"


def findings(report: dict) -> list:
  """The 'where the time goes' bullets, from this run's figures."""
  w1 = report["w1"]
  by = {r["variant"]: r for r in report["investigation"]}
  part = {r["part"]: r["ms"] for r in report["profile"]}
  find = lambda prefix, table=by: next(v for k, v in table.items() if k.startswith(prefix))
  rate = lambda prefix: find(prefix)["examples_per_s"]
  floor = rate("floor: per-batch jitted step")
  default = find("federax: default runtime (vmap")
  best = find("federax: chunk_size=1 + sequence_loop='scan', canonical-VJP conv + reshape")
  vmap_conv = find("conv2 fwd+bwd, 10 clients: vmap", part)
  own_conv = find("conv2 fwd+bwd, 10 clients: one conv", part)
  padded = rate("hand-written FedAvg round: scan over clients, masked")
  unrolled = find("hand-written FedAvg round: clients and batches unrolled")
  worst = max(report["w2"]["per_round"], key=lambda r: r["padded_batches"] / r["real_batches"])
  flags = [r for r in report["flags"] if "error" not in r]
  base = [r for r in flags if not r["flags"]]
  best_flag = max(flags, key=lambda r: r["federax_per_client_canonical_examples_per_s"])
  return [
      f"- W1: federax {w1['round_s'] * 1e3:.1f} ms a round against the scan floor's "
      f"{w1['floor_scan_s'] * 1e3:.1f} ms. Padding: the runtime steps through "
      f"{w1['padded_batches']} client-batches for {w1['batches']} real ones; the same vmapped, "
      f"padded round written by hand takes {w1['by_hand_vmap_padded_s'] * 1e3:.1f} ms, so "
      f"{(w1['round_s'] - w1['by_hand_vmap_padded_s']) * 1e3:.1f} ms is federax's host side "
      "(stacking and padding the clients' arrays, type checks, converting the results). By hand, "
      f"clients one after another take {w1['by_hand_scan_padded_s'] * 1e3:.1f} ms padded and "
      f"{w1['by_hand_scan_real_s'] * 1e3:.1f} ms on real batches only.",
      "- W2, padding: the runtime trains every client for the cohort's longest (bucketed) "
      f"sequence, {report['w2']['padding']:.2f}x the real batches over the 20 rounds; the worst "
      f"round ran {worst['padded_batches']} client-batches for {worst['real_batches']} real ones "
      f"({worst['s']:.1f} s against a {report['w2']['round_s']:.1f} s median).",
      f"- W2, one batch: conv2 (32 -> 64 channels, 3x3) forward+backward is "
      f"{find('conv2 forward+backward (lax)', part):.1f} ms of a "
      f"{find('train step (fwd+bwd+SGD), stock', part):.1f} ms step; XLA's reduce_window "
      f"max-pool gradient (select-and-scatter) costs "
      f"{find('max pool forward+backward (reduce_window)', part):.1f} ms, a reshape+max pool "
      f"{find('max pool forward+backward (reshape', part):.2f} ms.",
      f"- Batch of clients: `vmap` makes each client's conv one grouped conv "
      f"(feature_group_count=10): {vmap_conv:.1f} ms per client against {own_conv:.1f} ms for a "
      f"conv per client ({vmap_conv / own_conv:.1f}x). This is the default runtime's main loss: "
      f"{default['examples_per_s']:,.0f} examples/s against the floor's {floor:,.0f}. The im2col "
      f"model has no conv to group (batched matmuls) and reaches "
      f"{rate('federax: default runtime, im2col'):,.0f} examples/s on the default runtime.",
      f"- Rolled loops: inside `lax.scan`, `lax.map` or `fori_loop`, XLA:CPU leaves the "
      f"kernel-gradient conv that JAX emits (dim_labels f01b_i01o->01bf) uncanonicalized and "
      f"emits it as a naive loop nest: "
      f"{find('conv2 kernel gradient in a rolled scan (lax)', part):.0f} ms per batch rolled vs "
      f"{find('conv2 kernel gradient in a unrolled scan (lax)', part):.1f} ms unrolled. A conv "
      f"whose VJP is written as canonical NHWC convs (same numbers) takes "
      f"{find('conv2 kernel gradient in a rolled scan (canonical', part):.1f} ms rolled. This is "
      "why the runtime unrolls conv steps on CPU (and compiles for long), and why "
      f"`sequence_loop='scan'` ({rate('federax: sequence_loop'):,.0f} examples/s) and "
      f"`chunk_size=1` ({rate('federax: chunk_size=1 (lax.map'):,.0f}) are slow with XLA's conv.",
      f"- Per client, canonical conv: `chunk_size=1, sequence_loop='scan'` with that conv and the "
      f"reshape pool gives federax {best['examples_per_s']:,.0f} examples/s "
      f"({best['examples_per_s'] / floor:.2f}x the stock floor), first call "
      f"{best['first_s']:.1f} s vs the default's {default['first_s']:.1f} s. Written by hand, "
      "the same per-client round "
      f"runs {padded:,.0f} examples/s padded and "
      f"{rate('hand-written FedAvg round: scan over clients, fori_loop'):,.0f} over real batches "
      "only: the rest is padding (every client runs the cohort's longest sequence).",
      f"- Straight-line code (clients and batches unrolled) keeps XLA's conv fast, "
      f"{unrolled['examples_per_s']:,.0f} examples/s, but compiles for "
      f"{unrolled['compile_s']:.0f} s for {unrolled['clients']} clients (compile time grows with "
      "clients x batches, for each cohort shape).",
      f"- XLA:CPU flags fix neither loss: the rolled-scan floor stays at "
      f"{min(r['floor_rolled_scan_examples_per_s'] for r in flags):.0f}-"
      f"{max(r['floor_rolled_scan_examples_per_s'] for r in flags):.0f} examples/s under every "
      f"flag. The best, `{best_flag['flags']}`, gives the per-batch floor "
      f"{best_flag['floor_loop_examples_per_s']:,.0f} and federax per client "
      f"{best_flag['federax_per_client_canonical_examples_per_s']:,.0f} examples/s, against "
      + " and ".join(f"{r['floor_loop_examples_per_s']:,.0f} / "
                     f"{r['federax_per_client_canonical_examples_per_s']:,.0f}" for r in base)
      + " without flags (run first and last).",
  ]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true", help="2 clients, 1 round each; no results")
  parser.add_argument("--data-dir", type=pathlib.Path, default=DATA,
                      help="the shared data folder holding femnist-leaf/")
  parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--flag-probe", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if not (args.data_dir / "femnist-leaf").is_dir():
    sys.exit(f"No FEMNIST LEAF data at {args.data_dir / 'femnist-leaf'}; pass --data-dir.")
  if args.memory_probe:
    print(json.dumps(w1_memory_probe(args.data_dir)))
    return
  if args.flag_probe:
    print(json.dumps(flag_probe(args.data_dir)))
    return

  start = time.perf_counter()
  report = {"date": utc_date(),
            "machine": machine(),
            "versions": {"python": platform.python_version(), "jax": jax.__version__,
                         "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
                         "numpy": np.__version__, "federax": fx.__version__},
            "command": "python -m benchmarks.learning_rounds" + (" --smoke" if args.smoke else "")}
  report["w1"] = bench_w1(args.data_dir, args.smoke)
  print(json.dumps({k: v for k, v in report["w1"].items() if k != "per_round_s"}), flush=True)
  clients, rounds = (2, 1) if args.smoke else (10, 20)
  cohorts = w2_cohorts(args.data_dir, clients, rounds)
  report["w2"] = bench_w2(cohorts, args.smoke)
  print(json.dumps({k: v for k, v in report["w2"].items() if k != "per_round"}), flush=True)
  assert report["w1"]["max_abs_diff_one_client"] < 1e-5, report["w1"]
  assert report["w2"]["max_abs_diff_one_client_no_dropout"] < 1e-4, report["w2"]
  if args.smoke:
    x = jnp.asarray(np.random.default_rng(0).random((2, 9, 9, 3), np.float32))
    kernel = jnp.asarray(np.random.default_rng(1).random((3, 3, 3, 4), np.float32))
    for name, conv in CONVS.items():  # Every lowering the investigation times computes the same.
      assert np.allclose(conv(x, kernel), _conv_lax(x, kernel), atol=1e-4), name
      grads = [jax.grad(lambda a, b, c=c: jnp.sum(jnp.sin(c(a, b))), (0, 1))(x, kernel)
               for c in (conv, _conv_lax)]
      assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(*grads)), name
    print("smoke ok")
    return
  report["w1_memory"] = json.loads(subprocess.run(
      [sys.executable, "-m", "benchmarks.learning_rounds", "--memory-probe", "--data-dir",
       str(args.data_dir)], cwd=ROOT, capture_output=True, text=True, check=True
  ).stdout.strip().splitlines()[-1])
  report["profile"] = profile_batch()
  report["investigation"] = investigate(cohorts[0], small=2)
  report["flags"] = run_flag_probes(args.data_dir)
  report["findings"] = findings(report)
  report["elapsed_s"] = time.perf_counter() - start
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "learning_rounds.json").write_text(json.dumps(report, indent=2, default=float))
  text = render(report)
  (RESULTS / "learning_rounds.md").write_text(text)
  print(text)


if __name__ == "__main__":
  main()
