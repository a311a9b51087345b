"""A Keras stateful RNN under `from_keras_model`: its state carried over a client's batches.

TFF builds a client's Keras model anew in each round's client computation, so a stateful
GRU starts every client's pass from zeros and carries its state from batch to batch of that
pass (measured with TFF 0.87: tests/tutorials/tff_reference/text_generation.py). The
references here are a GRU written out in NumPy (forward) and in plain `jax.numpy`
(training, gradients by `jax.grad`), neither going through Keras or federax.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

keras = pytest.importorskip("keras")

import federax as fx  # noqa: E402
from federax.learning import algorithms, models, optimizers  # noqa: E402

ModelWeights = models.ModelWeights
VOCAB, EMBED, UNITS, ROWS, STEPS = 7, 3, 4, 2, 5
SPEC = {"x": (np.int32, [ROWS, STEPS]), "y": (np.int32, [ROWS, STEPS])}


def stateful_gru(stateful=True):
  return keras.Sequential([
      keras.Input(batch_shape=(ROWS, None), dtype="int32"),
      keras.layers.Embedding(VOCAB, EMBED),
      keras.layers.GRU(UNITS, return_sequences=True, stateful=stateful),
      keras.layers.Dense(VOCAB)])


def wrap(layers=None):
  return models.from_keras_model(
      layers or stateful_gru(), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      SPEC, metrics=[keras.metrics.SparseCategoricalAccuracy()])


def random_weights(seed=0):
  rng = np.random.default_rng(seed)
  shapes = [(VOCAB, EMBED), (EMBED, 3 * UNITS), (UNITS, 3 * UNITS), (2, 3 * UNITS),
            (UNITS, VOCAB), (VOCAB,)]  # Keras's order; the GRU's bias is [input, recurrent].
  return [(0.8 * rng.standard_normal(s)).astype(np.float32) for s in shapes]


def client_batches(seed, n):
  rng = np.random.default_rng(seed)
  return [{"x": rng.integers(0, VOCAB, (ROWS, STEPS)).astype(np.int32),
           "y": rng.integers(0, VOCAB, (ROWS, STEPS)).astype(np.int32)} for _ in range(n)]


def gru_logits(xp, weights, x, h):
  """Keras's GRU (reset_after=True, gates z, r, h) over `x`'s steps from state `h`, then the
  dense layer: `(logits [B, T, V], last state)`, in NumPy or jax.numpy (`xp`)."""
  embedding, kernel, recurrent, bias, dense, dense_bias = weights
  sigmoid = lambda v: 1 / (1 + xp.exp(-v))
  outputs = []
  for t in range(x.shape[1]):
    xz, xr, xh = xp.split(embedding[x[:, t]] @ kernel + bias[0], 3, axis=-1)
    hz, hr, hh = xp.split(h @ recurrent + bias[1], 3, axis=-1)
    z, r = sigmoid(xz + hz), sigmoid(xr + hr)
    h = z * h + (1 - z) * xp.tanh(xh + r * hh)
    outputs.append(h)
  return xp.stack(outputs, axis=1) @ dense + dense_bias, h


def cross_entropy(xp, logits, y):
  shifted = logits - logits.max(-1, keepdims=True)
  log_p = shifted - xp.log(xp.exp(shifted).sum(-1, keepdims=True))
  return -xp.mean(xp.take_along_axis(log_p, y[..., None], axis=-1))


def numpy_evaluation(weights, clients, carried=True):
  """Loss and accuracy over every client's batches (float64), the state reset per client and
  carried over its batches (or reset at every batch)."""
  weights = [np.asarray(w, np.float64) for w in weights]
  losses, correct = [], []
  for batches in clients:
    h = np.zeros((ROWS, UNITS))
    for batch in batches:
      logits, last = gru_logits(np, weights, batch["x"], h if carried else 0 * h)
      h = last
      losses.append(cross_entropy(np, logits, batch["y"]))
      correct.append(np.argmax(logits, -1) == batch["y"])
  return np.mean(losses), np.mean(correct)


def loss_and_state(weights, batch, h):
  """A batch's mean loss from state `h` (a value: no gradient flows back into the batch
  before), and the state after it; `jax.value_and_grad(..., has_aux=True)` differentiates."""
  logits, last = gru_logits(jnp, weights, batch["x"], h)
  return cross_entropy(jnp, logits, batch["y"]), last


def jax_training(weights, batches, rounds, learning_rate):
  """One client's FedAvg rounds (client SGD, server SGD 1.0): the state reset at the start of
  each round's pass and carried over its batches. Returns each round's mean training loss,
  and the final weights."""
  weights = [jnp.asarray(w) for w in weights]
  round_losses = []
  for _ in range(rounds):
    h, losses = jnp.zeros((ROWS, UNITS)), []
    for batch in batches:
      (value, h), grads = jax.value_and_grad(loss_and_state, has_aux=True)(weights, batch, h)
      weights = [w - learning_rate * g for w, g in zip(weights, grads)]
      losses.append(float(value))
    round_losses.append(np.mean(losses))
  return round_losses, weights


def test_the_rnn_state_is_carried_not_a_weight():
  model = wrap()
  assert model.initial_weights.non_trainable == []  # As TFF: non_trainable=<>.
  assert [c.shape for c in model.initial_carry] == [(ROWS, UNITS)]
  np.testing.assert_array_equal(model.initial_carry[0], 0.0)
  assert wrap(stateful_gru(stateful=False)).initial_carry is None


def test_forward_pass_threads_the_carry_and_a_padding_batch_keeps_it():
  model = wrap()
  weights = ModelWeights(random_weights(1), [])
  first, second = client_batches(2, 2)
  forward = jax.jit(model.forward_pass, static_argnames="training")
  out = forward(weights, first, training=False)
  logits, h = gru_logits(np, [np.asarray(w, np.float64) for w in weights.trainable],
                         first["x"], np.zeros((ROWS, UNITS)))
  np.testing.assert_allclose(out.carry[0], h, rtol=1e-5, atol=1e-6)
  following = forward(weights, second, training=False, carry=out.carry)
  want, _ = gru_logits(np, [np.asarray(w, np.float64) for w in weights.trainable],
                       second["x"], h)
  np.testing.assert_allclose(following.predictions, want, rtol=1e-5, atol=1e-5)
  padding = {**second, "mask": np.zeros(ROWS, bool)}
  kept = forward(weights, padding, training=True, key=jax.random.PRNGKey(0), carry=out.carry).carry
  np.testing.assert_array_equal(kept[0], out.carry[0])


@pytest.mark.parametrize("runtime", ["vectorized", "sequential"])
def test_evaluation_carries_the_state_over_each_clients_batches(runtime):
  weights = random_weights(3)
  clients = [client_batches(4, 3), client_batches(5, 2)]
  loss, accuracy = numpy_evaluation(weights, clients)
  reset_loss, _ = numpy_evaluation(weights, clients, carried=False)
  assert abs(loss - reset_loss) > 1e-3 * loss  # The inputs tell carrying from resetting.
  with getattr(fx.runtime, runtime)():
    evaluation = algorithms.build_fed_eval(wrap())
    state = evaluation.set_model_weights(evaluation.initialize(), ModelWeights(weights, []))
    _, metrics = evaluation.next(state, clients)
  got = metrics["client_work"]["eval"]["current_round_metrics"]
  np.testing.assert_allclose(got["loss"], loss, rtol=2e-6)
  np.testing.assert_allclose(got["sparse_categorical_accuracy"], accuracy, rtol=1e-6)
  assert int(got["num_batches"]) == 5


@pytest.mark.parametrize("runtime", ["vectorized", "sequential"])
def test_training_carries_the_state_over_a_pass_and_resets_it_each_round(runtime):
  weights = random_weights(6)
  batches = client_batches(7, 3)
  losses, trained = jax_training(weights, batches, rounds=2, learning_rate=0.5)
  with getattr(fx.runtime, runtime)():
    process = algorithms.build_weighted_fed_avg(wrap(), optimizers.build_sgdm(0.5))
    state = process.set_model_weights(process.initialize(), ModelWeights(weights, []))
    got = []
    for _ in range(2):
      state, metrics = process.next(state, [batches])
      got.append(float(metrics["client_work"]["train"]["loss"]))
  np.testing.assert_allclose(got, losses, rtol=2e-5)
  for w, want in zip(process.get_model_weights(state).trainable, trained):
    np.testing.assert_allclose(w, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("runtime", ["vectorized", "sequential"])
def test_fed_sgd_gradients_carry_the_state_over_each_clients_batches(runtime):
  # The gradient client work (FedSGD's, Mime Lite's full gradient) threads the carry too.
  weights = [jnp.asarray(w) for w in random_weights(8)]
  clients = [client_batches(9, 3), client_batches(10, 2)]
  total = [jnp.zeros_like(w) for w in weights]
  for batches in clients:  # Every batch has ROWS examples: the mean over all batches.
    h = jnp.zeros((ROWS, UNITS))
    for batch in batches:
      (_, h), grads = jax.value_and_grad(loss_and_state, has_aux=True)(weights, batch, h)
      total = [t + g for t, g in zip(total, grads)]
  want = [w - 0.5 * t / 5 for w, t in zip(weights, total)]
  with getattr(fx.runtime, runtime)():
    process = algorithms.build_fed_sgd(wrap(), optimizers.build_sgdm(0.5))
    state = process.set_model_weights(process.initialize(), ModelWeights(weights, []))
    state, _ = process.next(state, clients)
  for got, w in zip(process.get_model_weights(state).trainable, want):
    np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-6)


def test_a_predict_function_that_returns_no_carry_is_refused():
  model = models.FunctionalModel(
      initial_weights=ModelWeights([np.ones(3, np.float32)], []),
      predict_on_batch_fn=lambda w, x, training, key, carry: x * w.trainable[0],
      loss_fn=lambda p, y, sw: models.metrics.weighted_mean(jnp.sum(p, -1), sw),
      input_spec={"x": (np.float32, [None, 3]), "y": (np.float32, [None])},
      initial_carry=[np.zeros(3, np.float32)])
  with pytest.raises(TypeError) as info:
    model.forward_pass(model.initial_weights, {"x": np.ones((2, 3), np.float32),
                                               "y": np.zeros(2, np.float32)})
  assert ("forward_pass: the model has an initial_carry, but predict_on_batch_fn returned "
          "no carry for the next batch.") in str(info.value)
  assert "PredictOutput(predictions, carry=...)" in str(info.value)
