"""The pure-JAX baseline models against Keras 3 (JAX backend) with the same weights copied in."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from federax.learning.models import BatchOutput, ModelWeights
from federax.simulation.baselines import _layers as layers
from federax.simulation.baselines.emnist import emnist_models
from federax.simulation.baselines.shakespeare import char_prediction_models

keras = pytest.importorskip("keras")
L = keras.layers


def _keras_emnist(model_id, n):
  """TFF's `emnist_models`, rebuilt in Keras 3 from their published layer lists."""
  if model_id == "cnn_dropout":
    body = [L.Conv2D(32, (3, 3), activation="relu"), L.Conv2D(64, (3, 3), activation="relu"),
            L.MaxPooling2D((2, 2)), L.Dropout(0.25), L.Flatten(),
            L.Dense(128, activation="relu"), L.Dropout(0.5), L.Dense(n, activation="softmax")]
  elif model_id == "cnn":
    body = [L.Conv2D(32, 5, padding="same", activation="relu"),
            L.MaxPooling2D((2, 2), padding="same"),
            L.Conv2D(64, 5, padding="same", activation="relu"),
            L.MaxPooling2D((2, 2), padding="same"), L.Flatten(),
            L.Dense(512, activation="relu"), L.Dense(n, activation="softmax")]
  elif model_id == "2nn":
    body = [L.Reshape((784,)), L.Dense(200, activation="relu"),
            L.Dense(200, activation="relu"), L.Dense(n, activation="softmax")]
  else:  # The image classification tutorial's model.
    body = [L.Reshape((784,)), L.Dense(n, kernel_initializer="zeros"), L.Softmax()]
  return keras.Sequential([keras.Input((28, 28, 1))] + body)


def _evaluate(model, weights, batch):
  """One jitted forward pass (one compilation, instead of one per operation when eager)."""
  return jax.jit(model.forward_pass, static_argnames="training")(weights, batch, training=False)


def _copy_into(weights, keras_model):
  # NumPy copies: Keras's jitted predict_on_batch donates its variables' buffers, which would
  # delete the model's own arrays if they were assigned as they are.
  ModelWeights([np.array(w) for w in weights.trainable], []).assign_weights_to(keras_model)


BUILDERS = {
    "cnn_dropout": emnist_models.create_conv_dropout_model,
    "cnn": emnist_models.create_original_fedavg_cnn_model,
    "2nn": emnist_models.create_two_hidden_layer_model,
    "linear": emnist_models.create_linear_model,
}


@pytest.mark.parametrize("model_id, only_digits, params", [
    ("cnn_dropout", True, 1_199_882), ("cnn", False, 1_690_046), ("2nn", True, 199_210),
    ("linear", True, 7_850)])
def test_emnist_models_match_keras_with_the_same_weights(model_id, only_digits, params):
  n = 10 if only_digits else 62
  model = BUILDERS[model_id](only_digits, seed=3)
  reference = _keras_emnist(model_id, n)
  assert sum(w.size for w in model.initial_weights.trainable) == reference.count_params() == params
  weights = model.initial_weights
  if model_id == "linear":  # Zeros would compare nothing: random weights instead.
    rng = np.random.default_rng(0)
    weights = ModelWeights([rng.normal(0, 0.1, w.shape).astype(np.float32)
                            for w in weights.trainable], [])
  _copy_into(weights, reference)
  rng = np.random.default_rng(1)
  x = rng.uniform(0, 1, (5, 28, 28, 1)).astype(np.float32)
  y = rng.integers(0, n, 5).astype(np.int32)
  expected = np.asarray(reference.predict_on_batch(x))
  out = _evaluate(model, weights, {"x": x, "y": y})
  np.testing.assert_allclose(out.predictions, expected, rtol=1e-5, atol=1e-6)
  expected_loss = float(keras.losses.SparseCategoricalCrossentropy()(y, expected))
  np.testing.assert_allclose(float(out.loss), expected_loss, rtol=1e-5)


def test_dropout_needs_a_key_uses_it_and_is_off_in_evaluation():
  model = emnist_models.create_conv_dropout_model(seed=0)
  x = np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
  w = model.initial_weights
  with pytest.raises(ValueError) as e:
    model.predict_on_batch(w, x, training=True)
  assert re.fullmatch(re.escape(
      "create_conv_dropout_model: the model has dropout layers and training=True, but key is "
      "None.\n"
      "  hint: pass key=jax.random.PRNGKey(seed) to forward_pass (a different key per client and "
      "batch, e.g. jax.random.fold_in(client_key, step)), or training=False\n"
      f"  at {__file__}:") + r"\d+: " + re.escape(
          "model.predict_on_batch(w, x, training=True)"), str(e.value))
  predict = jax.jit(model.predict_on_batch, static_argnames="training")
  key = jax.random.PRNGKey(0)
  a = predict(w, x, training=True, key=key)
  b = predict(w, x, training=True, key=key)
  c = predict(w, x, training=True, key=jax.random.PRNGKey(1))
  d = predict(w, x, training=False, key=key)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c) and not np.allclose(a, d)
  np.testing.assert_allclose(d, predict(w, x, training=False), rtol=0)


def test_dropout_keeps_the_expected_fraction_scaled_as_keras():
  x = jnp.ones((200, 100))
  y = layers.dropout(x, 0.25, jax.random.PRNGKey(0))
  kept = np.asarray(y) != 0
  assert abs(kept.mean() - 0.75) < 0.01
  np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75, rtol=1e-6)


def _keras_recurrent(vocab, sequence_length):
  """TFF's `create_recurrent_model` in Keras 3."""
  return keras.Sequential([
      keras.Input((sequence_length,), dtype="int32"),
      L.Embedding(vocab, 8, mask_zero=True),
      L.LSTM(256, kernel_initializer="he_normal", return_sequences=True),
      L.LSTM(256, kernel_initializer="he_normal", return_sequences=True),
      L.Dense(vocab)])


def test_recurrent_model_matches_keras_including_masked_padding():
  sequence_length = 30
  model = char_prediction_models.create_recurrent_model(sequence_length=sequence_length, seed=1)
  reference = _keras_recurrent(90, sequence_length)
  assert [tuple(v.shape) for v in reference.trainable_variables] == [
      w.shape for w in model.initial_weights.trainable]
  _copy_into(model.initial_weights, reference)
  rng = np.random.default_rng(0)
  x = rng.integers(1, 90, (3, sequence_length)).astype(np.int32)
  x[0, 20:] = 0  # Padding at the end, as the preprocessing makes it: Keras masks these steps.
  x[1, 5:] = 0
  expected = np.asarray(reference.predict_on_batch(x))
  y = np.roll(x, -1, axis=1)
  out = _evaluate(model, model.initial_weights, {"x": x, "y": y})
  actual = np.asarray(out.predictions)
  np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-5)
  # Masked steps repeat the last real output: the padded tail's logits are all equal.
  np.testing.assert_allclose(actual[1, 5:], np.broadcast_to(actual[1, 4], (25, 90)), atol=1e-6)
  # The loss: cross-entropy from logits over the targets that are not padding (NumPy).
  log_probs = expected - np.log(np.exp(expected).sum(-1, keepdims=True))
  per_token = -np.take_along_axis(log_probs, y[..., None], axis=-1)[..., 0]
  weights = (y != 0).astype(np.float32)
  np.testing.assert_allclose(float(out.loss), (per_token * weights).sum() / weights.sum(),
                             rtol=1e-5)


def test_recurrent_model_metrics_mask_padding_like_tff():
  model = char_prediction_models.create_recurrent_model(sequence_length=4)
  x = np.array([[88, 5, 6, 7], [88, 9, 89, 0], [88, 1, 1, 1]], np.int32)
  y = np.array([[5, 6, 7, 87], [9, 89, 0, 0], [1, 1, 1, 1]], np.int32)
  batch = {"x": x, "y": y, "mask": np.array([True, True, False])}
  logits = np.zeros((3, 4, 90), np.float32)
  logits[0, :, 5] = 1.0   # Right on the first token only.
  logits[1, :, 89] = 1.0  # Right on the eos target.
  out = BatchOutput(jnp.float32(0), jnp.asarray(logits), jnp.int32(2))
  state = model.update_metrics_state(model.initialize_metrics_state(), batch, out)
  result = {k: float(v) for k, v in model.finalize_metrics(state).items()}
  assert result["num_tokens"] == 6  # 4 + 2 (padding and the masked row excluded).
  assert result["accuracy"] == pytest.approx(2 / 6)
  assert result["accuracy_no_oov_or_eos"] == pytest.approx(1 / 4)  # Drops 87 and 89.


def test_initializers_draw_kerass_distributions():
  init = keras.initializers
  shape = (256, 1024)
  for ours, theirs in ((layers.glorot_uniform, init.GlorotUniform(seed=0)),
                       (layers.he_normal, init.HeNormal(seed=0)),
                       (layers.embedding_uniform, init.RandomUniform(-0.05, 0.05, seed=0))):
    a = ours(np.random.default_rng(0), shape)
    b = np.asarray(theirs(shape))
    assert a.dtype == np.float32 and a.shape == shape
    np.testing.assert_allclose(a.std(), b.std(), rtol=0.02)
    np.testing.assert_allclose(np.abs(a).max(), np.abs(b).max(), rtol=0.02)
  q = layers.orthogonal(np.random.default_rng(0), shape)
  np.testing.assert_allclose(q @ q.T, np.eye(256), atol=1e-5)
  np.testing.assert_array_equal(layers.lstm_bias(2), [0, 0, 1, 1, 0, 0, 0, 0])
  a = emnist_models.create_conv_dropout_model(seed=4).initial_weights.trainable
  b = emnist_models.create_conv_dropout_model(seed=4).initial_weights.trainable
  c = emnist_models.create_conv_dropout_model(seed=5).initial_weights.trainable
  np.testing.assert_array_equal(a[0], b[0])
  assert not np.array_equal(a[0], c[0])
  assert all(not np.any(w) for w in a[1::2])  # Zero biases.


def test_models_run_under_vmap_over_clients_and_in_scan_over_batches():
  """The vectorized runtime's use: clients on a leading axis, batches folded by lax.scan."""
  rng = np.random.default_rng(0)
  cases = [
      (emnist_models.create_conv_dropout_model(seed=0),
       rng.uniform(0, 1, (2, 3, 4, 28, 28, 1)).astype(np.float32),
       rng.integers(0, 10, (2, 3, 4)).astype(np.int32)),
      (char_prediction_models.create_recurrent_model(sequence_length=6),
       rng.integers(0, 90, (2, 3, 4, 6)).astype(np.int32),
       rng.integers(0, 90, (2, 3, 4, 6)).astype(np.int32)),
  ]
  for model, x, y in cases:
    mask = np.ones((2, 3, 4), bool)
    mask[1, 2, 1:] = False
    weights = jax.tree.map(lambda w: np.stack([w, np.asarray(w) * 0.5]), model.initial_weights)

    def client_loss(w, xs, ys, ms, key):
      def step(total, batch):
        i, xb, yb, mb = batch
        out = model.forward_pass(w, {"x": xb, "y": yb, "mask": mb}, training=True,
                                 key=jax.random.fold_in(key, i))
        return total + out.loss, out.loss
      return jax.lax.scan(step, 0.0, (jnp.arange(3), xs, ys, ms))

    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    totals, losses = jax.jit(jax.vmap(client_loss))(weights, x, y, mask, keys)
    one_batch = jax.jit(lambda w, b, k: model.forward_pass(w, b, training=True, key=k).loss)
    for c in range(2):
      w = jax.tree.map(lambda a: a[c], weights)
      for i in range(3):
        loss = one_batch(w, {"x": x[c, i], "y": y[c, i], "mask": mask[c, i]},
                         jax.random.fold_in(keys[c], i))
        np.testing.assert_allclose(losses[c, i], loss, rtol=2e-5)
    np.testing.assert_allclose(totals, losses.sum(axis=1), rtol=1e-6)
