"""TFF's Shakespeare next-character model (stacked LSTMs) as a pure-JAX `FunctionalModel`."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core.types import TensorType
from federax.learning.models import FunctionalModel, ModelWeights, metrics
from federax.simulation.baselines import _layers as layers
from federax.simulation.baselines._classifier import sparse_categorical_crossentropy
from federax.simulation.baselines.shakespeare.char_prediction_preprocessing import (
    DEFAULT_SEQUENCE_LENGTH, VOCAB_SIZE, get_special_tokens)

__all__ = ["EMBEDDING_DIM", "LSTM_UNITS", "create_recurrent_model", "default_input_spec",
           "token_weights"]

EMBEDDING_DIM = 8
LSTM_UNITS = 256


def default_input_spec(sequence_length: int = DEFAULT_SEQUENCE_LENGTH) -> dict[str, TensorType]:
  """The Shakespeare batches: `{'x': int32[B, L], 'y': int32[B, L], 'mask': bool[B]}`."""
  return {"x": TensorType(np.int32, (None, sequence_length)),
          "y": TensorType(np.int32, (None, sequence_length)),
          "mask": TensorType(np.bool_, (None,))}


def token_weights(labels: jax.Array, sample_weight: jax.Array,
                  masked_tokens: tuple[int, ...]) -> jax.Array:
  """float32 [B, L]: the row's weight (its mask), zero where the target is a masked token."""
  weights = jnp.broadcast_to(jnp.asarray(sample_weight, jnp.float32)[:, None], labels.shape)
  for token in masked_tokens:
    weights = jnp.where(labels == token, 0.0, weights)
  return weights


def _masked_accuracy(name: str, masked_tokens: tuple[int, ...]) -> metrics.Metric:
  """TFF's `MaskedCategoricalAccuracy`: accuracy over the target tokens not masked."""
  def update(state, labels, out, sample_weight):
    weights = token_weights(labels, sample_weight, masked_tokens)
    correct = (jnp.argmax(out.predictions, axis=-1) == labels).astype(jnp.float32)
    total, count = state
    return [total + jnp.sum(correct * weights), count + jnp.sum(weights)]

  def finalize(state):
    total, count = state
    return total / jnp.where(count > 0, count, 1.0)

  return metrics.Metric(name, lambda: [jnp.zeros([], jnp.float32), jnp.zeros([], jnp.float32)],
                        update, finalize)


def _num_tokens(masked_tokens: tuple[int, ...]) -> metrics.Metric:
  """TFF's `NumTokensCounter`: the target tokens seen, padding excluded (an int32 sum)."""
  def update(state, labels, out, sample_weight):
    del out
    weights = token_weights(labels, sample_weight, masked_tokens)
    return state + jnp.sum(weights > 0, dtype=jnp.int32)

  return metrics.Metric("num_tokens", lambda: jnp.zeros([], jnp.int32), update, lambda s: s)


def create_recurrent_model(vocab_size: int = VOCAB_SIZE,
                           sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
                           mask_zero: bool = True, *, seed: int = 0,
                           input_spec: Optional[Any] = None) -> FunctionalModel:
  """TFF's Shakespeare model: Embedding(vocab, 8) -> LSTM(256) -> LSTM(256) -> Dense(vocab).

  The model of McMahan et al. (AISTATS 2017) as TFF's baselines build it in Keras: the
  outputs are logits [B, L, vocab]; the embedding masks token 0 (padding) so the LSTMs carry
  their state over padded steps (`mask_zero`); LSTM kernels are he-normal, recurrent kernels
  orthogonal, biases zero with a forget-gate bias of one. The loss is the cross-entropy from
  logits averaged over the target tokens that are not padding; the metrics are TFF's
  'num_tokens' and 'accuracy' (padding masked), and 'accuracy_no_oov_or_eos' (also masking
  the out-of-vocabulary and end tokens, as in the Adaptive Federated Optimization code).

  Args:
    vocab_size: the number of token ids (90 for TFF's vocabulary).
    sequence_length: the length of the input sequences (used for the default input_spec).
    mask_zero: whether token 0 is padding that the LSTMs skip.
    seed: seeds the initial weights.
    input_spec: the batch spec; default `default_input_spec(sequence_length)`.

  Raises:
    ValueError: if `vocab_size` or `sequence_length` is < 1.

  Example:
    >>> model = create_recurrent_model()
    >>> [w.shape for w in model.initial_weights.trainable][:4]
    [(90, 8), (8, 1024), (256, 1024), (1024,)]
  """
  for name, value in (("vocab_size", vocab_size), ("sequence_length", sequence_length)):
    if int(value) < 1:
      raise ValueError(f"create_recurrent_model({name}=...) expects a positive int, got "
                       f"{value}.")
  vocab_size, units = int(vocab_size), LSTM_UNITS
  pad, oov, bos, eos = get_special_tokens()
  k = layers.layer_rngs(seed, 6)
  weights = [
      layers.embedding_uniform(k[0], (vocab_size, EMBEDDING_DIM)),
      layers.he_normal(k[1], (EMBEDDING_DIM, 4 * units)),
      layers.orthogonal(k[2], (units, 4 * units)), layers.lstm_bias(units),
      layers.he_normal(k[3], (units, 4 * units)),
      layers.orthogonal(k[4], (units, 4 * units)), layers.lstm_bias(units),
      layers.glorot_uniform(k[5], (units, vocab_size)), layers.zeros([vocab_size]),
  ]

  def predict_on_batch(model_weights: ModelWeights, x: jax.Array, training: bool,
                       key: Any) -> jax.Array:
    del training, key
    w = list(model_weights.trainable)
    ids = jnp.asarray(x).astype(jnp.int32)
    mask = ids != pad if mask_zero else None
    h = layers.embedding(ids, w[0])
    h = layers.lstm(h, mask, w[1], w[2], w[3])
    h = layers.lstm(h, mask, w[4], w[5], w[6])
    return layers.dense(h, w[7], w[8])

  def loss_fn(predictions: jax.Array, labels: jax.Array, sample_weight: jax.Array) -> jax.Array:
    losses = sparse_categorical_crossentropy(predictions, labels, from_logits=True)
    return metrics.weighted_mean(losses, token_weights(labels, sample_weight, (pad,)))

  return FunctionalModel(
      initial_weights=ModelWeights(weights, []), predict_on_batch_fn=predict_on_batch,
      loss_fn=loss_fn,
      metrics_fns=metrics.to_metrics_fns([
          _num_tokens((pad,)), _masked_accuracy("accuracy", (pad,)),
          _masked_accuracy("accuracy_no_oov_or_eos", (pad, oov, bos, eos))]),
      input_spec=default_input_spec(int(sequence_length)) if input_spec is None else input_spec)
