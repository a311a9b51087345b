"""The EMNIST models of TFF's baselines (and its seed tutorial), as pure-JAX `FunctionalModel`s.

Architectures, activations and initializers follow TFF's `emnist_models` (Keras): glorot
uniform kernels, zero biases, a softmax output trained with Keras's sparse categorical
cross-entropy on probabilities, and sparse categorical accuracy. Trainable weights are a list
in Keras's order and shapes, so `ModelWeights.assign_weights_to` copies them into the Keras
model. Inputs are EMNIST images `float32[B, 28, 28, 1]` (any shape with 784 values per row).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core.types import TensorType
from federax.learning.models import FunctionalModel
from federax.simulation.baselines import _layers as layers
from federax.simulation.baselines._classifier import classification_model, require_key

__all__ = [
    "DEFAULT_INPUT_SPEC", "create_conv_dropout_model", "create_linear_model",
    "create_original_fedavg_cnn_model", "create_two_hidden_layer_model",
]

DEFAULT_INPUT_SPEC = {
    "x": TensorType(np.float32, (None, 28, 28, 1)),
    "y": TensorType(np.int32, (None,)),
    "mask": TensorType(np.bool_, (None,)),
}
"""The batches of the EMNIST baseline tasks: images, labels and the `masked_batch` row mask."""


def _num_classes(only_digits: bool) -> int:
  return 10 if only_digits else 62


def _images(x: jax.Array) -> jax.Array:
  return jnp.reshape(x, (x.shape[0], 28, 28, 1))


def _flat(x: jax.Array) -> jax.Array:
  return jnp.reshape(x, (x.shape[0], 28 * 28))


def _spec(input_spec: Optional[Any]) -> Any:
  return DEFAULT_INPUT_SPEC if input_spec is None else input_spec


def create_conv_dropout_model(only_digits: bool = True, *, seed: int = 0,
                              input_spec: Optional[Any] = None) -> FunctionalModel:
  """TFF's 'cnn_dropout': two 3x3 convolutions, max pooling and dropout, two dense layers.

  Conv2D(32, 3, relu, valid) -> Conv2D(64, 3, relu, valid) -> MaxPool(2) -> Dropout(0.25) ->
  Flatten -> Dense(128, relu) -> Dropout(0.5) -> Dense(10 or 62, softmax); 1,199,882
  parameters with `only_digits`. Training needs a `key` (dropout).

  Args:
    only_digits: 10 output classes, else 62.
    seed: seeds the initial weights.
    input_spec: the batch spec; default `DEFAULT_INPUT_SPEC`.

  Example:
    >>> model = create_conv_dropout_model(only_digits=False, seed=0)
    >>> [w.shape for w in model.initial_weights.trainable][-2:]
    [(128, 62), (62,)]
  """
  n = _num_classes(only_digits)
  k = layers.layer_rngs(seed, 4)
  weights = [layers.glorot_uniform(k[0], (3, 3, 1, 32)), layers.zeros([32]),
             layers.glorot_uniform(k[1], (3, 3, 32, 64)), layers.zeros([64]),
             layers.glorot_uniform(k[2], (12 * 12 * 64, 128)), layers.zeros([128]),
             layers.glorot_uniform(k[3], (128, n)), layers.zeros([n])]

  def predict(w, x, training, key):
    keys = (None, None)
    if training:
      require_key(key, "create_conv_dropout_model")
      keys = tuple(jax.random.split(key))
    h = jax.nn.relu(layers.conv2d(_images(x), w[0], w[1], "valid"))
    h = jax.nn.relu(layers.conv2d(h, w[2], w[3], "valid"))
    h = layers.dropout(layers.max_pool_2x2(h, "valid"), 0.25, keys[0])
    h = jax.nn.relu(layers.dense(jnp.reshape(h, (h.shape[0], -1)), w[4], w[5]))
    h = layers.dropout(h, 0.5, keys[1])
    return jax.nn.softmax(layers.dense(h, w[6], w[7]))

  return classification_model(weights, predict, from_logits=False, input_spec=_spec(input_spec))


def create_original_fedavg_cnn_model(only_digits: bool = True, *, seed: int = 0,
                                     input_spec: Optional[Any] = None) -> FunctionalModel:
  """TFF's 'cnn', the CNN of the FedAvg paper (McMahan et al., 2017), without dropout.

  Conv2D(32, 5, same, relu) -> MaxPool(2, same) -> Conv2D(64, 5, same, relu) ->
  MaxPool(2, same) -> Flatten -> Dense(512, relu) -> Dense(10 or 62, softmax); 1,663,370
  parameters with `only_digits`, as the paper reports.

  Example:
    >>> model = create_original_fedavg_cnn_model(only_digits=True)
    >>> sum(w.size for w in model.initial_weights.trainable)
    1663370
  """
  n = _num_classes(only_digits)
  k = layers.layer_rngs(seed, 4)
  weights = [layers.glorot_uniform(k[0], (5, 5, 1, 32)), layers.zeros([32]),
             layers.glorot_uniform(k[1], (5, 5, 32, 64)), layers.zeros([64]),
             layers.glorot_uniform(k[2], (7 * 7 * 64, 512)), layers.zeros([512]),
             layers.glorot_uniform(k[3], (512, n)), layers.zeros([n])]

  def predict(w, x, training, key):
    del training, key
    h = layers.max_pool_2x2(jax.nn.relu(layers.conv2d(_images(x), w[0], w[1], "same")), "same")
    h = layers.max_pool_2x2(jax.nn.relu(layers.conv2d(h, w[2], w[3], "same")), "same")
    h = jax.nn.relu(layers.dense(jnp.reshape(h, (h.shape[0], -1)), w[4], w[5]))
    return jax.nn.softmax(layers.dense(h, w[6], w[7]))

  return classification_model(weights, predict, from_logits=False, input_spec=_spec(input_spec))


def create_two_hidden_layer_model(only_digits: bool = True, hidden_units: int = 200, *,
                                  seed: int = 0,
                                  input_spec: Optional[Any] = None) -> FunctionalModel:
  """TFF's '2nn': 784 -> Dense(200, relu) -> Dense(200, relu) -> Dense(10 or 62, softmax).

  Raises:
    ValueError: if `hidden_units < 1`.

  Example:
    >>> sum(w.size for w in create_two_hidden_layer_model().initial_weights.trainable)
    199210
  """
  if int(hidden_units) < 1:
    raise ValueError(f"create_two_hidden_layer_model(hidden_units=...) expects a positive "
                     f"int, got {hidden_units}.")
  n, u = _num_classes(only_digits), int(hidden_units)
  k = layers.layer_rngs(seed, 3)
  weights = [layers.glorot_uniform(k[0], (784, u)), layers.zeros([u]),
             layers.glorot_uniform(k[1], (u, u)), layers.zeros([u]),
             layers.glorot_uniform(k[2], (u, n)), layers.zeros([n])]

  def predict(w, x, training, key):
    del training, key
    h = jax.nn.relu(layers.dense(_flat(x), w[0], w[1]))
    h = jax.nn.relu(layers.dense(h, w[2], w[3]))
    return jax.nn.softmax(layers.dense(h, w[4], w[5]))

  return classification_model(weights, predict, from_logits=False, input_spec=_spec(input_spec))


def create_linear_model(only_digits: bool = True, *, seed: int = 0,
                        input_spec: Optional[Any] = None) -> FunctionalModel:
  """The model of TFF's "Federated Learning for Image Classification" tutorial.

  784 -> Dense(10 or 62, kernel zeros) -> softmax, so the initial loss is ln(num classes)
  exactly. `seed` is accepted for uniformity and unused (the weights start at zero).

  Example:
    >>> [w.shape for w in create_linear_model().initial_weights.trainable]
    [(784, 10), (10,)]
  """
  del seed
  n = _num_classes(only_digits)
  weights = [layers.zeros((784, n)), layers.zeros([n])]

  def predict(w, x, training, key):
    del training, key
    return jax.nn.softmax(layers.dense(_flat(x), w[0], w[1]))

  return classification_model(weights, predict, from_logits=False, input_spec=_spec(input_spec))
