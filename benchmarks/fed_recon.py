"""Benchmark: Federated Reconstruction rounds on MovieLens 100K, 50 clients a round, federax vs TFF.

    python -m benchmarks.fed_recon                 # 10 alternating rounds each
    python -m benchmarks.fed_recon --smoke         # 5 clients, 2 rounds, no TFF; writes nothing

The TFF tutorial's workload ("Federated Reconstruction for Matrix Factorization") on the real
MovieLens 100K (`../shared/data/movielens-100k`): each user's ratings capped at 300, shuffled
(seed 42) and batched by 5; users split 80/10/10 (754 train users); the tutorial's model (a
global 1,682 x 50 item embedding, a local user embedding of 50, their dot product), MSE loss,
`RatingAccuracy`, server SGD 1.0, client SGD 0.5, reconstruction SGD 0.1, TFF's default split
(even batches reconstruct, odd ones train). Both systems train the same cohorts (50 users drawn
without replacement each round, seeded) on the same batches, from the same initial item
embedding: federax with its Keras 3 (JAX) port of the model, TFF 0.87 (in
`benchmarks/peers/tff/.venv`) with the tutorial's own code in a child process
(`peers/tff/run_tff_fed_recon.py`). Rounds alternate (one there, one here, ...) so a burst of
load on a shared machine hits both alike; the first (compiling) round of each is reported
apart. Writes benchmarks/results/fed_recon.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import statistics
import time
import warnings

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

import federax as fx  # noqa: E402
from benchmarks import measure  # noqa: E402
from benchmarks.tff_peer import TffPeer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache" / "fed_recon"
BATCH, MAX_EXAMPLES, LATENT = 5, 300, 50


def train_users(data_dir: pathlib.Path) -> list[list[dict]]:
  """Each training user's batches, the tutorial's preprocessing."""
  movielens = fx.simulation.datasets.movielens
  users = movielens.preprocess_for_tutorial(movielens.load_data(data_dir / "movielens-100k"),
                                            BATCH, MAX_EXAMPLES)
  train, _, _ = movielens.split_users(users)
  return [[{"x": np.asarray(b["x"]), "y": np.asarray(b["y"])}
           for b in train.create_dataset(c)] for c in train.client_ids]


def mf_model(num_items: int):
  """The tutorial's model, Keras 3 on JAX (see the tutorial notebook)."""
  import keras  # pylint: disable=g-import-not-at-top

  class UserEmbedding(keras.layers.Layer):

    def build(self, input_shape):
      self.embedding = self.add_weight(shape=(1, LATENT), initializer="uniform",
                                       name="UserEmbeddingKernel")

    def call(self, inputs):
      return keras.ops.broadcast_to(self.embedding, (keras.ops.shape(inputs)[0], LATENT))

  item_input = keras.layers.Input(shape=[1], name="Item", dtype="int32")
  items = keras.layers.Embedding(num_items, LATENT, name="ItemEmbedding")
  user = UserEmbedding(name="UserEmbedding")
  pred = keras.layers.Dot(1)([user(item_input), keras.layers.Flatten()(items(item_input))])
  return fx.learning.models.ReconstructionModel.from_keras_model_and_layers(
      keras.Model(item_input, pred), global_layers=[items], local_layers=[user],
      input_spec=collections.OrderedDict(x=(np.int64, [None, 1]), y=(np.float32, [None, 1])))


def rating_accuracy():
  return fx.learning.models.metrics.mean_metric(
      "rating_accuracy", lambda p, y: (abs(p - y) <= 0.5)[:, 0])



def export(users: list[list[dict]], cohorts: np.ndarray, items: np.ndarray) -> pathlib.Path:
  CACHE.mkdir(parents=True, exist_ok=True)
  xs = [np.concatenate([b["x"] for b in u]) for u in users]
  ys = [np.concatenate([b["y"] for b in u]) for u in users]
  path = CACHE / "data.npz"
  np.savez(path, x=np.concatenate(xs), y=np.concatenate(ys),
           offsets=np.cumsum([0] + [len(x) for x in xs]), cohorts=cohorts, items=items,
           batch=BATCH)
  return path


def run(users: list[list[dict]], clients: int, rounds: int, tff_too: bool) -> dict:
  rng = np.random.default_rng(0)
  cohorts = np.stack([rng.choice(len(users), clients, replace=False) for _ in range(rounds + 1)])
  model = mf_model(1682)
  process = fx.learning.algorithms.build_fed_recon(
      model, loss_fn=lambda y, p: ((y - p) ** 2).mean(axis=-1),
      metrics_fn=lambda: [rating_accuracy()],
      server_optimizer_fn=fx.learning.optimizers.build_sgdm(1.0),
      client_optimizer_fn=fx.learning.optimizers.build_sgdm(0.5),
      reconstruction_optimizer_fn=fx.learning.optimizers.build_sgdm(0.1))
  items = np.asarray(model.global_weights.trainable[0])
  tff = (TffPeer("run_tff_fed_recon.py", "--data", str(export(users, cohorts, items)))
         if tff_too else None)
  state = process.initialize()
  row = {"clients_per_round": clients, "users": len(users), "rounds": rounds}
  try:
    seconds, tff_seconds, losses, tff_losses = [], [], [], []
    for r in range(rounds + 1):
      cohort = [users[i] for i in cohorts[r]]
      start = time.perf_counter()
      with warnings.catch_warnings():
        warnings.simplefilter("error", fx.runtime.FallbackWarning)
        state, metrics = process.next(state, cohort)
      float(metrics["client_work"]["train"]["loss"])  # Waits for the result.
      seconds.append(time.perf_counter() - start)
      losses.append(float(metrics["client_work"]["train"]["loss"]))
      if tff is not None:
        answer = tff("round")
        tff_seconds.append(answer["s"])
        tff_losses.append(answer["loss"])
    row.update(federax_first_s=seconds[0], federax_round_s=statistics.median(seconds[1:]),
               federax_losses=losses)
    if tff is not None:
      row.update(tff_first_s=tff_seconds[0], tff_round_s=statistics.median(tff_seconds[1:]),
                 tff_losses=tff_losses, tff_versions={k: tff.ready[k]
                                                      for k in ("tensorflow", "tff")})
      row["speedup"] = row["tff_round_s"] / row["federax_round_s"]
  finally:
    if tff is not None:
      tff.close()
  return row


def render(row: dict) -> str:
  def s(key):
    return f"{row[key]:.4f}" if key in row else "-"

  lines = ["| clients/round | federax s/round | TFF s/round | speed-up | "
           "first round federax / TFF s | train loss first -> last (federax / TFF) |",
           "| --- | --- | --- | --- | --- | --- |"]
  loss = f"{row['federax_losses'][0]:.2f} -> {row['federax_losses'][-1]:.2f}"
  if "tff_losses" in row:
    loss += f" / {row['tff_losses'][0]:.2f} -> {row['tff_losses'][-1]:.2f}"
  lines.append(f"| {row['clients_per_round']} | {s('federax_round_s')} | {s('tff_round_s')} | "
               + (f"{row['speedup']:.1f}x" if "speedup" in row else "-") + " | "
               f"{row['federax_first_s']:.2f} / "
               + (f"{row['tff_first_s']:.2f}" if "tff_first_s" in row else "-")
               + f" | {loss} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--rounds", type=int, default=10)
  parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
  args = parser.parse_args()
  users = train_users(pathlib.Path(args.data_dir))
  if args.smoke:
    row = run(users, 5, 2, tff_too=False)
    print(render(row))
    print("smoke ok")
    return
  info = {"machine": measure.machine()}
  row = run(users, 50, args.rounds, tff_too=True)
  print(render(row), flush=True)
  command = "python -m benchmarks.fed_recon" + (f" --rounds {args.rounds}"
                                                 if args.rounds != 10 else "")
  info.update({"command": command, "row": row})
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "fed_recon.json").write_text(json.dumps(info, indent=1) + "\n")
  (RESULTS / "fed_recon.md").write_text(
      f"`{command}` ({measure.describe(info['machine'])}; TFF "
      f"{row.get('tff_versions', {}).get('tff', '?')}; medians of {args.rounds} alternating "
      f"rounds after the first)\n\n{render(row)}\n")


if __name__ == "__main__":
  main()
