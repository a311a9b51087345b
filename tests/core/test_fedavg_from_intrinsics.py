"""FedAvg written from intrinsics alone, as TFF's "custom federated algorithms, part 2".

A linear 784->10 softmax model on real FEMNIST digits (LEAF, by writer). Batches are padded to
one size with a mask, so the compiled path runs; the loss is the masked mean.
"""

import gzip
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx

BATCH = fx.to_type({"x": (np.float32, [None, 784]), "y": (np.int32, [None]),
                    "mask": (np.bool_, [None])})
MODEL = fx.to_type({"weights": (np.float32, [784, 10]), "bias": (np.float32, [10])})
BATCH_SIZE = 20


def load_digit_writers(shared_data, num_clients=5, max_batches=3):
  path = shared_data / "femnist-leaf/flic/train/all_data_0_niid_05_keep_0_train_9.json.gz"
  with gzip.open(path, "rt") as f:
    shard = json.load(f)
  clients = []
  for user in shard["users"]:
    x = 1.0 - np.asarray(shard["user_data"][user]["x"], np.float32)  # Ink 1, background 0.
    y = np.asarray(shard["user_data"][user]["y"], np.int32)
    digits = y < 10
    keep = BATCH_SIZE * max_batches - 7  # A ragged final batch, padded and masked.
    if digits.sum() < keep:
      continue
    x, y = x[digits][:keep], y[digits][:keep]
    batches = []
    for start in range(0, len(y), BATCH_SIZE):
      real = len(y[start:start + BATCH_SIZE])
      pad = BATCH_SIZE - real
      batches.append({"x": np.pad(x[start:start + BATCH_SIZE], ((0, pad), (0, 0))),
                      "y": np.pad(y[start:start + BATCH_SIZE], (0, pad)),
                      "mask": np.arange(BATCH_SIZE) < real})
    clients.append(batches)
    if len(clients) == num_clients:
      return clients
  raise AssertionError("not enough writers")


@fx.computation(MODEL, BATCH)
def batch_loss(model, batch):
  logits = batch["x"] @ model["weights"] + model["bias"]
  losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][:, None], axis=1)[:, 0]
  mask = batch["mask"].astype(jnp.float32)
  return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@fx.computation(MODEL, BATCH, np.float32)
def batch_train(initial_model, batch, learning_rate):
  grads = jax.grad(lambda m: batch_loss.__wrapped__(m, batch))(initial_model)
  return jax.tree_util.tree_map(lambda w, g: w - learning_rate * g, initial_model, grads)


@fx.federated_computation(MODEL, np.float32, fx.SequenceType(BATCH))
def local_train(initial_model, learning_rate, all_batches):
  @fx.federated_computation(MODEL, BATCH)
  def batch_fn(model, batch):
    return batch_train(model, batch, learning_rate)  # Captures the outer learning_rate.

  return fx.sequence_reduce(all_batches, initial_model, batch_fn)


@fx.federated_computation(MODEL, fx.SequenceType(BATCH))
def local_eval(model, all_batches):
  @fx.federated_computation(BATCH)
  def loss_of(batch):
    return batch_loss(model, batch)

  return fx.sequence_sum(fx.sequence_map(loss_of, all_batches))


SERVER_MODEL = fx.FederatedType(MODEL, fx.SERVER)
CLIENT_DATA = fx.FederatedType(fx.SequenceType(BATCH), fx.CLIENTS)


@fx.federated_computation(SERVER_MODEL, CLIENT_DATA)
def federated_eval(model, data):
  return fx.federated_mean(fx.federated_map(local_eval, [fx.federated_broadcast(model), data]))


@fx.federated_computation(SERVER_MODEL, fx.FederatedType(np.float32, fx.SERVER), CLIENT_DATA)
def federated_train(model, learning_rate, data):
  return fx.federated_mean(fx.federated_map(local_train, [
      fx.federated_broadcast(model), fx.federated_broadcast(learning_rate), data]))


def zero_model():
  return {"weights": np.zeros([784, 10], np.float32), "bias": np.zeros([10], np.float32)}


def test_type_signatures():
  assert str(batch_loss.type_signature) == (
      "(<model=<bias=float32[10],weights=float32[784,10]>,"
      "batch=<mask=bool[?],x=float32[?,784],y=int32[?]>> -> float32)")
  assert str(local_train.type_signature) == (
      "(<initial_model=<bias=float32[10],weights=float32[784,10]>,learning_rate=float32,"
      "all_batches=<mask=bool[?],x=float32[?,784],y=int32[?]>*> -> "
      "<bias=float32[10],weights=float32[784,10]>)")
  assert str(federated_train.type_signature).endswith(
      "-> <bias=float32[10],weights=float32[784,10]>@SERVER)")


def test_zero_model_loss_is_ln_10(shared_data):
  batch = load_digit_writers(shared_data, num_clients=1)[0][0]
  assert batch_loss(zero_model(), batch) == pytest.approx(math.log(10), abs=1e-6)
  assert math.log(10) == pytest.approx(2.3025851)


def test_local_training_lowers_a_clients_loss(shared_data):
  client = load_digit_writers(shared_data, num_clients=1)[0]
  before = local_eval(zero_model(), client)
  trained = local_train(zero_model(), 0.02, client)
  after = local_eval(trained, client)
  assert after < before


def test_five_rounds_lower_the_federated_loss_every_round(shared_data):
  data = load_digit_writers(shared_data)
  model = zero_model()
  losses = [federated_eval(model, data)]
  for _ in range(5):
    model = federated_train(model, 0.02, data)
    losses.append(federated_eval(model, data))
  assert losses[0] == pytest.approx(3 * math.log(10), rel=1e-5)  # Three batches of ln(10).
  assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses


def test_vectorized_round_matches_sequential_reference(shared_data):
  data = load_digit_writers(shared_data)
  with fx.runtime.vectorized():
    fast = federated_train(zero_model(), 0.02, data)
  with fx.runtime.sequential():
    reference = federated_train(zero_model(), 0.02, data)
  for key in ("weights", "bias"):
    np.testing.assert_allclose(fast[key], reference[key], rtol=1e-4, atol=1e-6)
