"""federax's runner of the benchmark workloads, and the centralized JAX floor (peers/FORMAT.md).

    python -m benchmarks.run_federax --workload benchmarks/.cache/workloads/w1.json --out r.json
    python -m benchmarks.run_federax --workload .../w2.json --system floor --out floor.json
    python -m benchmarks.run_federax --workload w3 --out w3.json      # generated, federax only

`--system federax` trains with `fx.learning.algorithms.build_weighted_fed_avg` on `fx.Dataset`s
built the way TFF's tutorial builds its tf.data pipelines: each client's examples,
`repeat(epochs).shuffle(100, seed=1).masked_batch(20)`, made once and passed every round it is
sampled. `--system floor` trains the same model, centrally, on exactly the batches each round
trains (every cohort client's, one after another) with one jitted loop: a `lax.scan` over the
round's batches (`--floor-loop scan`) or a Python loop over a jitted step (`python`).
"""

from __future__ import annotations

import time

STARTED = time.time()  # Before the imports: startup_s counts them, as for the peers.

import argparse  # pylint: disable=g-import-not-at-top,wrong-import-position
import collections
import json
import os
import pathlib
import platform
import sys

from benchmarks import measure  # pylint: disable=wrong-import-position

W3 = dict(name="w3", model="logistic_regression", num_classes=10, clients=1000,
          clients_per_round=1000, examples_per_client=100, rounds=1000, epochs=1,
          shuffle_buffer=0, batch_size=10, client_lr=0.01, server_lr=1.0, memory_every=50)
# pfl-research's CIFAR-10 benchmark setup (benchmarks/image_classification, publications/pfl):
# 1,000 clients of 50 images, 50 a round, 1 epoch of batch 10, its `simple_cnn`. Synthetic
# images of the right shape: the figures are timings.
CIFAR10 = dict(name="cifar10", model="simple_cnn", num_classes=10, clients=1000,
               clients_per_round=50, examples_per_client=50, rounds=20, epochs=1,
               shuffle_buffer=0, batch_size=10, client_lr=0.1, server_lr=1.0, memory_every=10)
GENERATED = {"w3": W3, "cifar10": CIFAR10}


def process_start_time() -> float:
  """This process's start (wall clock) from /proc, so that interpreter start-up counts too."""
  try:
    with open("/proc/self/stat", encoding="ascii") as f:
      ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat", encoding="ascii") as f:
      boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, StopIteration):
    return STARTED


def versions() -> dict:
  import jax
  import jaxlib
  import numpy as np
  import federax
  return {"python": platform.python_version(), "federax": federax.__version__,
          "jax": jax.__version__, "jaxlib": jaxlib.__version__, "numpy": np.__version__,
          "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()]}


# --- Models and data ------------------------------------------------------------------------------

def build_model(spec: dict):
  from federax.simulation.baselines import synthetic
  from federax.simulation.baselines.emnist import emnist_models
  digits = spec["num_classes"] == 10
  if spec["model"] == "linear":
    return emnist_models.create_linear_model(only_digits=digits)
  if spec["model"] == "cnn_dropout":
    return emnist_models.create_conv_dropout_model(only_digits=digits, seed=0)
  if spec["model"] == "logistic_regression":
    return synthetic.create_logistic_regression_model()
  if spec["model"] == "simple_cnn":
    return simple_cnn(spec["num_classes"])
  raise ValueError(f"unknown model {spec['model']!r}")


def simple_cnn(num_classes: int):
  """pfl-research's `simple_cnn` for 32x32x3 images: conv 32 -> conv 64 -> max pool 2 ->
  dropout 0.25 -> dense 128 -> dropout 0.5 -> dense, logits; Glorot-uniform kernels."""
  import jax
  import numpy as np
  from federax.core.types import TensorType
  from federax.simulation.baselines import _layers as layers
  from federax.simulation.baselines._classifier import classification_model
  k = layers.layer_rngs(0, 4)
  weights = [layers.glorot_uniform(k[0], (3, 3, 3, 32)), layers.zeros([32]),
             layers.glorot_uniform(k[1], (3, 3, 32, 64)), layers.zeros([64]),
             layers.glorot_uniform(k[2], (14 * 14 * 64, 128)), layers.zeros([128]),
             layers.glorot_uniform(k[3], (128, num_classes)), layers.zeros([num_classes])]

  def predict(w, x, training, key):
    keys = tuple(jax.random.split(key)) if training else (None, None)
    h = jax.nn.relu(layers.conv2d(x, w[0], w[1], "valid"))
    h = jax.nn.relu(layers.conv2d(h, w[2], w[3], "valid"))
    h = layers.dropout(layers.max_pool_2x2(h, "valid"), 0.25, keys[0])
    h = jax.nn.relu(layers.dense(h.reshape(h.shape[0], -1), w[4], w[5]))
    return layers.dense(layers.dropout(h, 0.5, keys[1]), w[6], w[7])

  spec = {"x": TensorType(np.float32, (None, 32, 32, 3)), "y": TensorType(np.int32, (None,)),
          "mask": TensorType(np.bool_, (None,))}
  return classification_model(weights, predict, from_logits=True, input_spec=spec)


def _as_batch(element):
  return collections.OrderedDict(x=element["pixels"][..., None], y=element["label"],
                                 mask=element["mask"])


def client_datasets(workload) -> list:
  """One lazy `fx.Dataset` per client of the workload, as TFF's tutorial builds its pipelines.

  As federax's tutorial does, the pipelines of clients that train in more than one round are
  `cache()`d (their shuffle is seeded, so every pass is the same).
  """
  from federax.simulation.dataset import Dataset
  spec = workload.spec
  rounds_of = collections.Counter(i for cohort in spec["cohorts"] for i in set(cohort))
  out = []
  for i in range(len(workload.client_ids)):
    x, y = workload.client(i)
    d = Dataset.from_tensor_slices(collections.OrderedDict(pixels=x, label=y)).repeat(
        spec["epochs"])
    if spec["shuffle_buffer"]:
      d = d.shuffle(spec["shuffle_buffer"], seed=1)
    d = d.masked_batch(spec["batch_size"]).map(_as_batch)
    out.append(d.cache() if rounds_of[i] > 1 else d)
  return out


class _Generated:
  """Clients' datasets made when first asked for (`[i]`), then kept."""

  def __init__(self, make):
    self.make, self.made = make, {}

  def __getitem__(self, i: int):
    if i not in self.made:
      self.made[i] = self.make(i)
    return self.made[i]


def generated_datasets(spec: dict):
  """W3's FedProx Synthetic(1,1) clients (every client every round: cached), or CIFAR-10-shaped
  random images; `examples_per_client` each, batched by `batch_size`."""
  import numpy as np
  from federax.simulation.datasets import synthetic
  from federax.simulation.dataset import Dataset
  n = spec["examples_per_client"]
  if spec["name"] == "w3":
    params = synthetic.generate_params(1.0, 1.0, num_clients=spec["clients"], seed=0)
    params = params._replace(num_samples=np.full(spec["clients"], n))
    return _Generated(lambda k: Dataset.from_tensor_slices(
        synthetic.generate_client(params, k)).masked_batch(spec["batch_size"]).cache())

  def images(k):
    rng = np.random.default_rng([0, k])
    return Dataset.from_tensor_slices(collections.OrderedDict(
        x=rng.random((n, 32, 32, 3), np.float32),
        y=rng.integers(0, spec["num_classes"], n).astype(np.int32))).masked_batch(
            spec["batch_size"])
  return _Generated(images)


def generated_spec(name: str, rounds, clients) -> dict:
  from federax.simulation.sampling import UniformSampler
  spec = dict(GENERATED[name])
  if rounds:
    spec["rounds"] = rounds
  if clients:
    spec["clients"] = clients
    spec["clients_per_round"] = min(spec["clients_per_round"], clients)
  sampler = UniformSampler(list(range(spec["clients"])), spec["clients_per_round"], seed=0)
  spec["cohorts"] = [sorted(sampler.sample(r)) for r in range(spec["rounds"])]
  spec["examples_per_round"] = [spec["epochs"] * spec["examples_per_client"] * len(c)
                                for c in spec["cohorts"]]
  return spec


# --- The runs -------------------------------------------------------------------------------------

def run_federax(spec: dict, datasets: list, on_round) -> None:
  from federax.learning import algorithms, optimizers
  model = build_model(spec)
  process = algorithms.build_weighted_fed_avg(
      model, optimizers.build_sgdm(spec["client_lr"]), optimizers.build_sgdm(spec["server_lr"]))
  state = measure.block(process.initialize())
  on_round(None)  # Ready: startup ends here.
  for r, cohort in enumerate(spec["cohorts"]):
    data = [datasets[i] for i in cohort]
    start = time.perf_counter()
    state, metrics = process.next(state, data)
    measure.block(state)
    seconds = time.perf_counter() - start
    train = metrics["client_work"]["train"]
    on_round({"s": seconds, "examples": int(train["num_examples"]), "loss": float(train["loss"])},
             r)


def run_floor(spec: dict, datasets: list, on_round, loop: str) -> None:
  import jax
  import numpy as np
  from jax import lax
  from federax.learning.models import ModelWeights
  from federax.runtime import xla_options
  model = build_model(spec)
  lr = spec["client_lr"]

  def step(trainable, batch, key):
    def loss(w):
      return model.forward_pass(ModelWeights(w, []), batch, True, key).loss
    return jax.tree_util.tree_map(lambda w, g: w - lr * g, trainable, jax.grad(loss)(trainable))

  # Compiled with the options federax compiles its programs with (`xla_options`): the floor is
  # the same training without federation, not another choice of convolution kernels.
  if loop == "scan":
    @xla_options.jit
    def train(trainable, batches, keys):
      return lax.scan(lambda w, bk: (step(w, *bk), None), trainable, (batches, keys))[0]
  else:
    jitted = xla_options.jit(step)

    def train(trainable, batches, keys):
      for i in range(len(keys)):
        trainable = jitted(trainable, jax.tree_util.tree_map(lambda a, i=i: a[i], batches),
                           keys[i])
      return trainable

  weights = list(model.initial_weights.trainable)
  on_round(None)
  for r, cohort in enumerate(spec["cohorts"]):
    stacks = [datasets[i].to_stacked() for i in cohort]  # The batches of this round, on the host.
    batches = {k: np.concatenate([s[k] for s in stacks]) for k in ("x", "y", "mask")}
    keys = jax.random.split(jax.random.PRNGKey(r), len(batches["mask"]))
    start = time.perf_counter()
    weights = measure.block(train(weights, batches, keys))
    seconds = time.perf_counter() - start
    on_round({"s": seconds, "examples": int(batches["mask"].sum())}, r)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.run_federax", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workload", required=True,
                      help="an exported workload's JSON, or 'w3' or 'cifar10' (generated)")
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--system", choices=["federax", "floor"], default="federax")
  parser.add_argument("--floor-loop", choices=["scan", "python"], default="scan")
  parser.add_argument("--rounds", type=int, default=None)
  parser.add_argument("--clients", type=int, default=None,
                      help="generated workloads: the population (a smaller run)")
  parser.add_argument("--compilation-cache", type=pathlib.Path, default=None, metavar="DIR",
                      help="JAX's persistent compilation cache, as `federax train` sets it "
                           "(default: off)")
  args = parser.parse_args(argv)
  measure.compiles()  # Counts from the first compile on.
  from federax.cli import compilation_cache
  with compilation_cache.enabled(args.compilation_cache):
    return _run(args)


def _run(args) -> int:
  """Loads the workload, trains it and writes the result: `main` after parsing."""
  from benchmarks import workloads
  if args.workload in GENERATED:
    spec = generated_spec(args.workload, args.rounds, args.clients)
    datasets = generated_datasets(spec)
  else:
    workload = workloads.load(args.workload).with_rounds(args.rounds)
    spec, datasets = workload.spec, client_datasets(workload)

  result = {"system": "federax" if args.system == "federax" else "JAX (centralized)",
            "workload": spec["name"], "setting": "" if args.system == "federax" else
            f"{args.floor_loop} loop", "versions": versions(), "rounds": [], "memory": [],
            "notes": []}
  import federax
  result["version"] = federax.__version__
  begun = process_start_time()

  def on_round(row, r=None):
    if row is None:
      result["startup_s"] = time.time() - begun
      return
    result["rounds"].append(row)
    if (r + 1) % spec.get("memory_every", 10**9) == 0 or r + 1 == spec["rounds"]:
      result["memory"].append({"round": r + 1, "rss_mib": measure.rss_mib()})
    loss = f" loss {row['loss']:.4f}" if "loss" in row else ""
    if r < 3 or (r + 1) % max(1, spec["rounds"] // 10) == 0:
      print(f"{result['system']} {spec['name']} round {r + 1}/{spec['rounds']}: "
            f"{row['s']:.4f} s, {row['examples']} examples{loss}", flush=True)

  if args.system == "federax":
    run_federax(spec, datasets, on_round)
  else:
    run_floor(spec, datasets, on_round, args.floor_loop)
  result["compiles"] = measure.compiles().snapshot()
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=1) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
