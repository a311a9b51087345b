"""FedAvg written from federated intrinsics on FedProx's Synthetic(1,1): a short, complete run.

    python examples/fedavg_synthetic.py [--rounds 30] [--out runs/demo]

Multinomial logistic regression (60 -> 10) trained with FedAvg (McMahan et al. 2017) over 30
heterogeneous clients, 10 sampled per round; prints each round's training loss and test
accuracy, and writes `metrics.csv` and `metrics.png` to the output directory.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import federax as fx
from federax.simulation import UniformSampler
from federax.simulation.datasets import synthetic

BATCH_SIZE = 10
BATCH = fx.to_type({"mask": (np.bool_, [BATCH_SIZE]), "x": (np.float32, [BATCH_SIZE, 60]),
                    "y": (np.int32, [BATCH_SIZE])})
MODEL = fx.to_type({"bias": (np.float32, [10]), "weights": (np.float32, [60, 10])})


def masked_mean_loss(model, batch):
  logits = batch["x"] @ model["weights"] + model["bias"]
  losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][:, None], axis=1)[:, 0]
  mask = batch["mask"].astype(jnp.float32)
  return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@fx.computation(MODEL, BATCH, np.float32)
def sgd_step(model, batch, learning_rate):
  grads = jax.grad(masked_mean_loss)(model, batch)
  return jax.tree_util.tree_map(lambda w, g: w - learning_rate * g, model, grads)


@fx.computation(MODEL, BATCH)
def batch_metrics(model, batch):
  logits = batch["x"] @ model["weights"] + model["bias"]
  mask = batch["mask"].astype(jnp.float32)
  losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][:, None], axis=1)[:, 0]
  correct = (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)
  return {"loss_sum": jnp.sum(losses * mask), "correct": jnp.sum(correct * mask),
          "count": jnp.sum(mask)}


@fx.federated_computation(MODEL, np.float32, fx.SequenceType(BATCH))
def client_update(model, learning_rate, batches):
  @fx.federated_computation(MODEL, BATCH)
  def step(model, batch):
    return sgd_step(model, batch, learning_rate)

  return fx.sequence_reduce(batches, model, step)


@fx.federated_computation(MODEL, fx.SequenceType(BATCH))
def client_metrics(model, batches):
  @fx.federated_computation(BATCH)
  def of_batch(batch):
    return batch_metrics(model, batch)

  return fx.sequence_sum(fx.sequence_map(of_batch, batches))


@fx.computation
def num_examples(metrics):
  return metrics["count"]


@fx.federated_computation(fx.FederatedType(MODEL, fx.SERVER), fx.FederatedType(np.float32, fx.SERVER),
                          fx.FederatedType(fx.SequenceType(BATCH), fx.CLIENTS))
def fedavg_round(model, learning_rate, data):
  """One round: broadcast, local SGD on every client, example-weighted mean of the models."""
  at_clients = fx.federated_broadcast(model)
  trained = fx.federated_map(client_update, (at_clients, fx.federated_broadcast(learning_rate),
                                             data))
  metrics = fx.federated_map(client_metrics, (at_clients, data))
  weights = fx.federated_map(num_examples, metrics)
  return fx.federated_mean(trained, weights), fx.federated_sum(metrics)


@fx.federated_computation(fx.FederatedType(MODEL, fx.SERVER),
                          fx.FederatedType(fx.SequenceType(BATCH), fx.CLIENTS))
def evaluate(model, data):
  return fx.federated_sum(fx.federated_map(client_metrics, (fx.federated_broadcast(model), data)))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=30)
  parser.add_argument("--clients-per-round", type=int, default=10)
  parser.add_argument("--learning-rate", type=float, default=0.05)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/demo"))
  args = parser.parse_args()

  train, test = synthetic.load_data(alpha=1.0, beta=1.0, num_clients=30, seed=args.seed)
  batched = lambda ds: ds.masked_batch(BATCH_SIZE)
  test_data = [batched(test.create_dataset(c)) for c in test.client_ids]
  sampler = UniformSampler(train.client_ids, args.clients_per_round, seed=args.seed)
  model = {"bias": np.zeros(10, np.float32), "weights": np.zeros((60, 10), np.float32)}
  print(f"FedAvg on Synthetic(1,1): {len(train.client_ids)} clients, "
        f"{args.clients_per_round} per round, {args.rounds} rounds\n"
        f"round signature: {fedavg_round.type_signature}")

  rows, start = [], time.perf_counter()
  for round_num in range(1, args.rounds + 1):
    cohort = sampler.sample(round_num)
    data = [batched(train.create_dataset(c).shuffle(100, seed=round_num)) for c in cohort]
    model, train_metrics = fedavg_round(model, args.learning_rate, data)
    test_metrics = evaluate(model, test_data)
    row = {"round": round_num,
           "train_loss": float(train_metrics["loss_sum"] / train_metrics["count"]),
           "test_accuracy": float(test_metrics["correct"] / test_metrics["count"]),
           "seconds": time.perf_counter() - start}
    rows.append(row)
    print(f"round {round_num:3d}  train loss {row['train_loss']:.4f}  "
          f"test accuracy {row['test_accuracy']:.4f}  ({row['seconds']:.1f} s)", flush=True)

  args.out.mkdir(parents=True, exist_ok=True)
  with open(args.out / "metrics.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  print(f"metrics: {args.out / 'metrics.csv'}")
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    print("plot skipped: install matplotlib (pip install 'federax[plot]')")
    return
  fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
  rounds = [r["round"] for r in rows]
  left.plot(rounds, [r["train_loss"] for r in rows])
  left.set(xlabel="round", ylabel="train loss (before the round's update)")
  right.plot(rounds, [r["test_accuracy"] for r in rows])
  right.set(xlabel="round", ylabel="test accuracy")
  fig.suptitle("FedAvg on Synthetic(1,1)")
  fig.tight_layout()
  fig.savefig(args.out / "metrics.png", dpi=100)
  print(f"plot: {args.out / 'metrics.png'}")


if __name__ == "__main__":
  main()
