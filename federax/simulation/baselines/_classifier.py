"""Classification losses as Keras computes them, and the `FunctionalModel` they build."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax
import jax.numpy as jnp

from federax.core.errors import format_message, user_location
from federax.learning.models import FunctionalModel, ModelWeights, metrics

__all__ = ["classification_model", "require_key", "sparse_categorical_crossentropy"]

KERAS_EPSILON = 1e-7  # keras.config.epsilon(): the clip of probabilities before the log.


def sparse_categorical_crossentropy(predictions: jax.Array, labels: jax.Array,
                                    from_logits: bool) -> jax.Array:
  """Per-example cross-entropy `[..., C], [...] -> [...]`, computed as Keras 3 does.

  From probabilities (the TFF EMNIST models end in a softmax), Keras renormalizes, clips to
  `[1e-7, 1 - 1e-7]` and takes the log; from logits, it uses `log_softmax`. A label outside
  `[0, C)` gives NaN (Keras's one-hot would give 0, and an index -1 would read class C - 1), so
  training drops its client and counts it (`num_non_finite_clients`).
  """
  if from_logits:
    log_probs = jax.nn.log_softmax(predictions, axis=-1)
  else:
    probs = predictions / jnp.sum(predictions, axis=-1, keepdims=True)
    log_probs = jnp.log(jnp.clip(probs, KERAS_EPSILON, 1.0 - KERAS_EPSILON))
  labels = jnp.reshape(labels, predictions.shape[:-1]).astype(jnp.int32)
  losses = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  return jnp.where((labels >= 0) & (labels < predictions.shape[-1]), losses, jnp.nan)


def require_key(key: Optional[jax.Array], model_name: str) -> None:
  """Raises if a model with dropout is trained without a random key."""
  if key is None:
    raise ValueError(format_message(
        model_name, "the model has dropout layers and training=True, but key is None.",
        hint="pass key=jax.random.PRNGKey(seed) to forward_pass (a different key per client "
        "and batch, e.g. jax.random.fold_in(client_key, step)), or training=False",
        location=user_location()))


def classification_model(initial_weights: Sequence[jax.Array], predict_fn: Callable,
                         *, from_logits: bool, input_spec: Any) -> FunctionalModel:
  """A `FunctionalModel` with sparse categorical cross-entropy and accuracy (TFF's pairing).

  Args:
    initial_weights: the trainable weights, in Keras's order.
    predict_fn: `(trainable_weights, x, training, key) -> probabilities or logits [B, C]`.
    from_logits: whether `predict_fn` returns logits (else probabilities).
    input_spec: the batch spec, with 'x', 'y' and 'mask'.
  """
  def predict_on_batch(weights: ModelWeights, x: Any, training: bool, key: Any) -> jax.Array:
    return predict_fn(list(weights.trainable), x, training, key)

  def loss_fn(predictions: jax.Array, labels: jax.Array, sample_weight: jax.Array) -> jax.Array:
    return metrics.weighted_mean(
        sparse_categorical_crossentropy(predictions, labels, from_logits), sample_weight)

  return FunctionalModel(
      initial_weights=ModelWeights(list(initial_weights), []),
      predict_on_batch_fn=predict_on_batch, loss_fn=loss_fn,
      metrics_fns=metrics.to_metrics_fns([metrics.sparse_categorical_accuracy()]),
      input_spec=input_spec)
