"""The benchmarked FedAvg round, written twice: with federax intrinsics, and by hand in JAX.

Both do the same arithmetic: every client runs SGD over its padded, masked batches (a padded
batch leaves the model unchanged; padded rows of a batch carry no loss), then the server
takes the example-weighted mean of the client models.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import federax as fx

LEARNING_RATE = 0.02


def linear_model(rng: np.random.Generator) -> dict:
  return {"bias": np.zeros(10, np.float32), "weights": np.zeros((784, 10), np.float32)}


def conv_model(rng: np.random.Generator) -> dict:
  scale = lambda *shape: (rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))).astype(np.float32)
  return {"conv1": scale(3, 3, 1, 8), "conv2": scale(3, 3, 8, 16),
          "dense": scale(14 * 14 * 16, 10), "bias": np.zeros(10, np.float32)}


def linear_logits(model, x):
  return x.reshape(x.shape[0], -1) @ model["weights"] + model["bias"]


def conv_logits(model, x):
  images = x.reshape(x.shape[0], 28, 28, 1)
  dims = ("NHWC", "HWIO", "NHWC")
  h = jax.nn.relu(jax.lax.conv_general_dilated(images, model["conv1"], (1, 1), "SAME",
                                               dimension_numbers=dims))
  h = jax.nn.relu(jax.lax.conv_general_dilated(h, model["conv2"], (2, 2), "SAME",
                                               dimension_numbers=dims))
  return h.reshape(h.shape[0], -1) @ model["dense"] + model["bias"]


def masked_loss(logits_fn, model, x, y, mask):
  logits = logits_fn(model, x)
  losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)[:, 0]
  mask = mask.astype(jnp.float32)
  return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def sgd_step(logits_fn, model, x, y, mask):
  grads = jax.grad(lambda m: masked_loss(logits_fn, m, x, y, mask))(model)
  return jax.tree_util.tree_map(lambda w, g: w - LEARNING_RATE * g, model, grads)


def federax_round(logits_fn, model_example: dict, batch_size: int):
  """`(model@SERVER, {batches*}@CLIENTS) -> model@SERVER`, from intrinsics."""
  model_type = fx.type_of(model_example)
  batch_type = fx.to_type({"mask": (np.bool_, [batch_size]), "x": (np.float32, [batch_size, 784]),
                           "y": (np.int32, [batch_size])})

  @fx.computation(model_type, batch_type)
  def train_on_batch(model, batch):
    return sgd_step(logits_fn, model, batch["x"], batch["y"], batch["mask"])

  @fx.computation(batch_type)
  def batch_size_of(batch):
    return jnp.sum(batch["mask"].astype(jnp.float32))

  @fx.federated_computation(model_type, fx.SequenceType(batch_type))
  def client_update(model, batches):
    return fx.sequence_reduce(batches, model, train_on_batch), fx.sequence_sum(
        fx.sequence_map(batch_size_of, batches))

  @fx.computation
  def first(pair):
    return pair[0]

  @fx.computation
  def second(pair):
    return pair[1]

  @fx.federated_computation(fx.FederatedType(model_type, fx.SERVER),
                            fx.FederatedType(fx.SequenceType(batch_type), fx.CLIENTS))
  def fedavg_round(model, data):
    results = fx.federated_map(client_update, (fx.federated_broadcast(model), data))
    return fx.federated_mean(fx.federated_map(first, results), fx.federated_map(second, results))

  return fedavg_round


def floor_round(logits_fn, unroll=1):
  """The same round by hand: `jax.jit` of `vmap` over clients of a masked `lax.scan`."""
  def client(model, x, y, mask, real):
    def step(m, batch):
      xb, yb, mb, r = batch
      new = sgd_step(logits_fn, m, xb, yb, mb)
      return jax.tree_util.tree_map(lambda a, b: jnp.where(r, a, b), new, m), None

    trained, _ = jax.lax.scan(step, model, (x, y, mask, real), unroll=unroll)
    return trained, jnp.sum(mask.astype(jnp.float32) * real[:, None])

  @jax.jit
  def round_fn(model, x, y, mask, real):
    trained, weights = jax.vmap(client, in_axes=(None, 0, 0, 0, 0))(model, x, y, mask, real)
    total = jnp.sum(weights)
    return jax.tree_util.tree_map(lambda t: jnp.tensordot(weights, t, axes=1) / total, trained)

  return round_fn


def floor_round_client_loop(logits_fn):
  """By hand, the other CPU option for convolutions: a Python loop of jitted client updates."""
  @jax.jit
  def client(model, x, y, mask, real):
    for i in range(x.shape[0]):  # Unrolled at trace time: no rolled loop around the convs.
      new = sgd_step(logits_fn, model, x[i], y[i], mask[i])
      model = jax.tree_util.tree_map(lambda a, b: jnp.where(real[i], a, b), new, model)
    return model, jnp.sum(mask.astype(jnp.float32) * real[:, None])

  def round_fn(model, x, y, mask, real):
    results = [client(model, x[c], y[c], mask[c], real[c]) for c in range(x.shape[0])]
    weights = jnp.stack([w for _, w in results])
    total = jnp.sum(weights)
    return jax.tree_util.tree_map(
        lambda *ts: jnp.tensordot(weights, jnp.stack(ts), axes=1) / total,
        *[m for m, _ in results])

  return round_fn
