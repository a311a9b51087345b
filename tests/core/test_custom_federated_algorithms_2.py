"""TFF's Custom Federated Algorithms, Part 2 (Federated Averaging), ported by renaming.

`tff.tensorflow.computation` -> `fx.computation`, `tff.federated_computation` ->
`fx.federated_computation`, TensorFlow ops -> `jnp`. TFF's MNIST is replaced by a small
deterministic stand-in of the same shape (10 users, one digit each, 10 batches per user), so
the numbers that do not depend on the data (a zero model's loss) are TFF's printed ones, and
the others are checked against a NumPy re-computation. Type signatures are TFF's, verbatim.
"""

import collections
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx

NUM_BATCHES_PER_USER = 10  # TFF: 1000 examples per user in batches of 100.
BATCH_SIZE = 6


def get_data_for_digit(rng, digit):
  """One user's batches, MNIST-like: sparse strokes (a digit's own pixels, each kept with
  probability 0.6, plus a few stray ones), all labelled `digit`."""
  strokes = np.random.default_rng(digit).random(784) < 0.12
  output_sequence = []
  for _ in range(NUM_BATCHES_PER_USER):
    kept = strokes & (rng.random((BATCH_SIZE, 784)) < 0.6)
    stray = rng.random((BATCH_SIZE, 784)) < 0.03
    x = (kept | stray) * rng.uniform(0.5, 1.0, (BATCH_SIZE, 784))
    output_sequence.append({"x": x.astype(np.float32), "y": np.full([BATCH_SIZE], digit, np.int32)})
  return output_sequence


_rng = np.random.default_rng(2019)
federated_train_data = [get_data_for_digit(_rng, d) for d in range(10)]

BATCH_SPEC = collections.OrderedDict(x=(np.float32, [None, 784]), y=(np.int32, [None]))
BATCH_TYPE = fx.to_type(BATCH_SPEC)
MODEL_SPEC = collections.OrderedDict(weights=(np.float32, [784, 10]), bias=(np.float32, [10]))
MODEL_TYPE = fx.to_type(MODEL_SPEC)


def forward_pass(model, batch):
  predicted_y = jax.nn.softmax(jnp.matmul(batch["x"], model["weights"]) + model["bias"])
  return -jnp.mean(jnp.sum(jax.nn.one_hot(batch["y"], 10) * jnp.log(predicted_y), axis=[1]))


@fx.computation(MODEL_TYPE, BATCH_TYPE)
def batch_loss(model, batch):
  return forward_pass(model, batch)


@fx.computation(MODEL_TYPE, BATCH_TYPE, np.float32)
def batch_train(initial_model, batch, learning_rate):
  # TFF's version keeps variables and an SGD optimizer; here one gradient step on batch_loss,
  # the computation above called inside this one (TFF's "use batch_loss as a subcomponent").
  grads = jax.grad(lambda model: batch_loss(model, batch))(initial_model)
  return collections.OrderedDict(
      (name, value - learning_rate * grads[name]) for name, value in initial_model.items())


LOCAL_DATA_TYPE = fx.SequenceType(BATCH_TYPE)


@fx.federated_computation(MODEL_TYPE, np.float32, LOCAL_DATA_TYPE)
def local_train(initial_model, learning_rate, all_batches):

  # Reduction function to apply to each batch.
  @fx.federated_computation((MODEL_TYPE, np.float32), BATCH_TYPE)
  def batch_fn(model_with_lr, batch):
    model, lr = model_with_lr
    return batch_train(model, batch, lr), lr

  trained_model, _ = fx.sequence_reduce(all_batches, (initial_model, learning_rate), batch_fn)
  return trained_model


@fx.federated_computation(MODEL_TYPE, LOCAL_DATA_TYPE)
def local_eval(model, all_batches):

  @fx.computation((MODEL_TYPE, np.float32), BATCH_TYPE)
  def accumulate_evaluation(model_and_accumulator, batch):
    model, accumulator = model_and_accumulator
    return model, accumulator + batch_loss(model, batch)

  _, total_loss = fx.sequence_reduce(all_batches, (model, 0.0), accumulate_evaluation)
  return total_loss


SERVER_MODEL_TYPE = fx.FederatedType(MODEL_TYPE, fx.SERVER)
CLIENT_DATA_TYPE = fx.FederatedType(LOCAL_DATA_TYPE, fx.CLIENTS)


@fx.federated_computation(SERVER_MODEL_TYPE, CLIENT_DATA_TYPE)
def federated_eval(model, data):
  return fx.federated_mean(fx.federated_map(local_eval, [fx.federated_broadcast(model), data]))


SERVER_FLOAT_TYPE = fx.FederatedType(np.float32, fx.SERVER)


@fx.federated_computation(SERVER_MODEL_TYPE, SERVER_FLOAT_TYPE, CLIENT_DATA_TYPE)
def federated_train(model, learning_rate, data):
  return fx.federated_mean(
      fx.federated_map(local_train, [
          fx.federated_broadcast(model),
          fx.federated_broadcast(learning_rate), data
      ]))


initial_model = collections.OrderedDict(
    weights=np.zeros([784, 10], dtype=np.float32), bias=np.zeros([10], dtype=np.float32))
sample_batch = federated_train_data[5][-1]


# --- The NumPy re-computation ----------------------------------------------------------------


def np_loss_and_grads(model, batch):
  logits = batch["x"].astype(np.float64) @ model["weights"] + model["bias"]
  logits -= logits.max(axis=1, keepdims=True)
  p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  onehot = np.eye(10)[batch["y"]]
  loss = -np.mean(np.sum(onehot * np.log(p), axis=1))
  d_logits = (p - onehot) / len(batch["y"])
  return loss, {"weights": batch["x"].T @ d_logits, "bias": d_logits.sum(axis=0)}


def np_batch_train(model, batch, lr):
  _, grads = np_loss_and_grads(model, batch)
  return {k: model[k] - lr * grads[k] for k in model}


def np_local_train(model, lr, batches):
  for batch in batches:
    model = np_batch_train(model, batch, lr)
  return model


def np_local_eval(model, batches):
  return sum(np_loss_and_grads(model, b)[0] for b in batches)


def np_federated_eval(model, data):
  return np.mean([np_local_eval(model, c) for c in data])


def np_federated_train(model, lr, data):
  trained = [np_local_train(model, lr, c) for c in data]
  return {k: np.mean([m[k] for m in trained], axis=0) for k in model}


def as_float64(model):
  return {k: np.asarray(v, np.float64) for k, v in model.items()}


# --- The notebook's steps --------------------------------------------------------------------


@pytest.fixture
def runtime(runtime):
  """Each runtime; on the vectorized one every call must stay compiled (no FallbackWarning)."""
  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    yield runtime


def test_types_print_as_tffs():
  assert str(BATCH_TYPE) == "<x=float32[?,784],y=int32[?]>"
  assert str(MODEL_TYPE) == "<weights=float32[784,10],bias=float32[10]>"
  assert str(batch_loss.type_signature) == (
      "(<model=<weights=float32[784,10],bias=float32[10]>,batch=<x=float32[?,784],y=int32[?]>>"
      " -> float32)")
  assert str(batch_train.type_signature) == (
      "(<initial_model=<weights=float32[784,10],bias=float32[10]>,batch=<x=float32[?,784],"
      "y=int32[?]>,learning_rate=float32> -> <weights=float32[784,10],bias=float32[10]>)")
  assert str(local_train.type_signature) == (
      "(<initial_model=<weights=float32[784,10],bias=float32[10]>,learning_rate=float32,"
      "all_batches=<x=float32[?,784],y=int32[?]>*> -> <weights=float32[784,10],bias=float32[10]>)")
  assert str(local_eval.type_signature) == (
      "(<model=<weights=float32[784,10],bias=float32[10]>,all_batches=<x=float32[?,784],"
      "y=int32[?]>*> -> float32)")
  assert str(federated_eval.type_signature) == (
      "(<model=<weights=float32[784,10],bias=float32[10]>@SERVER,data={<x=float32[?,784],"
      "y=int32[?]>*}@CLIENTS> -> float32@SERVER)")
  assert str(federated_train.type_signature) == (
      "(<model=<weights=float32[784,10],bias=float32[10]>@SERVER,learning_rate=float32@SERVER,"
      "data={<x=float32[?,784],y=int32[?]>*}@CLIENTS> -> <weights=float32[784,10],"
      "bias=float32[10]>@SERVER)")


def test_batch_loss_and_batch_train(runtime):
  assert batch_loss(initial_model, sample_batch) == pytest.approx(2.3025851)  # TFF's output.
  model, losses = initial_model, []
  for _ in range(5):
    model = batch_train(model, sample_batch, 0.1)
    losses.append(batch_loss(model, sample_batch))
  assert isinstance(model, collections.OrderedDict)
  expected, reference = [], as_float64(initial_model)
  for _ in range(5):
    reference = np_batch_train(reference, sample_batch, 0.1)
    expected.append(np_loss_and_grads(reference, sample_batch)[0])
  np.testing.assert_allclose(losses, expected, rtol=2e-5)
  assert losses == sorted(losses, reverse=True)


def test_local_train_and_local_eval(runtime):
  locally_trained_model = local_train(initial_model, 0.1, federated_train_data[5])
  reference = np_local_train(as_float64(initial_model), 0.1, federated_train_data[5])
  for name in ("weights", "bias"):
    np.testing.assert_allclose(locally_trained_model[name], reference[name], atol=1e-5)
  assert local_eval(initial_model, federated_train_data[5]) == pytest.approx(23.025854)  # TFF's.
  for user in (5, 0):
    assert local_eval(locally_trained_model, federated_train_data[user]) == pytest.approx(
        np_local_eval(reference, federated_train_data[user]), rel=1e-4)
  # Trained on 5s, the model gets better on user 5's data and worse on user 0's.
  assert local_eval(locally_trained_model, federated_train_data[5]) < 23.025854
  assert local_eval(locally_trained_model, federated_train_data[0]) > 23.025854


def test_federated_eval_and_federated_train(runtime):
  assert federated_eval(initial_model, federated_train_data) == pytest.approx(23.025852)  # TFF's.
  model, learning_rate = initial_model, 0.1
  reference, losses, expected = as_float64(initial_model), [], []
  for _ in range(5):
    model = federated_train(model, learning_rate, federated_train_data)
    reference = np_federated_train(reference, learning_rate, federated_train_data)
    learning_rate = learning_rate * 0.9
    losses.append(federated_eval(model, federated_train_data))
    expected.append(np_federated_eval(reference, federated_train_data))
  np.testing.assert_allclose(losses, expected, rtol=1e-4)
  assert losses == sorted(losses, reverse=True)  # TFF's printed losses fall every round too.
