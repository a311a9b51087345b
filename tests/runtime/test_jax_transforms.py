"""Federated computations on the vectorized runtime as JAX functions: jit, grad, vmap."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights

VECTOR = fx.TensorType(np.float32, [3])


@fx.computation(VECTOR, VECTOR)
def scale(w, x):
  return w * x


@fx.federated_computation(fx.FederatedType(VECTOR, fx.SERVER), fx.FederatedType(VECTOR, fx.CLIENTS))
def summed(w, x):
  return fx.federated_sum(fx.federated_map(scale, (fx.federated_broadcast(w), x)))


@fx.federated_computation(fx.FederatedType(VECTOR, fx.SERVER), fx.FederatedType(VECTOR, fx.CLIENTS),
                          fx.FederatedType(np.float32, fx.CLIENTS))
def weighted_mean(w, x, weight):
  return fx.federated_mean(fx.federated_map(scale, (fx.federated_broadcast(w), x)), weight)


RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, 3)).astype(np.float32)
WEIGHTS = np.array([1.0, 2.0, 0.5, 4.0], np.float32)
W = RNG.normal(size=3).astype(np.float32)


def test_a_call_inside_jit_gives_the_eager_values_as_jax_arrays():
  eager = summed(W, list(X))
  jitted = jax.jit(lambda w: summed(w, list(X)))(W)
  assert isinstance(eager, np.ndarray) and isinstance(jitted, jax.Array)
  np.testing.assert_allclose(jitted, eager, rtol=1e-6)
  np.testing.assert_allclose(eager, W * X.sum(0), rtol=1e-5)


def test_client_values_may_be_traced_too():
  out = jax.jit(lambda x: weighted_mean(W, list(x), list(WEIGHTS)))(X)
  expected = (WEIGHTS[:, None] * W * X).sum(0) / WEIGHTS.sum()
  np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_the_gradient_of_a_broadcast_is_a_sum_and_of_a_mean_a_mean():
  grad_sum = jax.grad(lambda w: jnp.sum(summed(w, list(X))))(W)
  np.testing.assert_allclose(grad_sum, X.sum(0), rtol=1e-5)
  grad_mean = jax.grad(lambda w: jnp.sum(weighted_mean(w, list(X), list(WEIGHTS))))(W)
  np.testing.assert_allclose(grad_mean, (WEIGHTS[:, None] * X).sum(0) / WEIGHTS.sum(), rtol=1e-5)
  grad_x = jax.grad(lambda x: jnp.sum(summed(W, list(x))))(X)  # Each client's own gradient.
  np.testing.assert_allclose(grad_x, np.broadcast_to(W, X.shape), rtol=1e-6)


def test_vmap_over_server_values():
  ws = RNG.normal(size=(5, 3)).astype(np.float32)
  out = jax.vmap(lambda w: summed(w, list(X)))(ws)
  np.testing.assert_allclose(out, ws * X.sum(0), rtol=1e-5)


def test_a_local_computation_inside_jit_and_grad():
  np.testing.assert_allclose(jax.jit(scale)(W, X[0]), W * X[0], rtol=1e-6)
  np.testing.assert_allclose(jax.grad(lambda w: jnp.sum(scale(w, X[0])))(W), X[0], rtol=1e-6)


# --- A FedAvg round ---------------------------------------------------------------------------

FEATURES, CLASSES, BATCH = 4, 3, 5
SPEC = collections.OrderedDict(x=(np.float32, [BATCH, FEATURES]), y=(np.int32, [BATCH]))


def _model():
  rng = np.random.default_rng(3)
  weights = ModelWeights([rng.normal(size=(FEATURES, CLASSES)).astype(np.float32) * 0.3,
                          np.zeros(CLASSES, np.float32)], [])

  def predict(weights, x, training):
    kernel, bias = weights.trainable
    return x @ kernel + bias

  def loss(logits, labels, sample_weight):
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
    return jnp.sum(losses * sample_weight) / jnp.maximum(jnp.sum(sample_weight), 1.0)

  return FunctionalModel(initial_weights=weights, predict_on_batch_fn=predict, loss_fn=loss,
                         input_spec=SPEC)


def _clients():
  rng = np.random.default_rng(4)
  return [[collections.OrderedDict(x=rng.normal(size=(BATCH, FEATURES)).astype(np.float32),
                                   y=rng.integers(0, CLASSES, BATCH).astype(np.int32))
           for _ in range(batches)] for batches in (2, 3, 1)]


@pytest.fixture(scope="module")
def fed_avg():
  model = _model()
  process = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.5),
                                              optimizers.build_sgdm(1.0))
  return process, process.initialize(), _clients(), model.initial_weights.trainable


def _after_a_round(fed_avg, kernel, bias):
  process, state, clients, _ = fed_avg
  state = process.set_model_weights(state, ModelWeights([kernel, bias], []))
  state, _ = process.next(state, clients)
  new_kernel, new_bias = process.get_model_weights(state).trainable
  return jnp.sum(new_kernel**2) + jnp.sum(jnp.sin(new_bias))


def test_the_gradient_through_a_fed_avg_round_matches_finite_differences(fed_avg):
  kernel, bias = (jnp.asarray(x) for x in fed_avg[3])
  grads = jax.grad(lambda k, b: _after_a_round(fed_avg, k, b), argnums=(0, 1))(kernel, bias)
  rng = np.random.default_rng(5)
  for _ in range(3):  # Directional derivatives along random directions, central differences.
    dk = rng.normal(size=kernel.shape).astype(np.float32)
    db = rng.normal(size=bias.shape).astype(np.float32)
    eps = 1e-2
    plus = float(_after_a_round(fed_avg, kernel + eps * dk, bias + eps * db))
    minus = float(_after_a_round(fed_avg, kernel - eps * dk, bias - eps * db))
    numeric = (plus - minus) / (2 * eps)
    analytic = float(jnp.vdot(grads[0], dk) + jnp.vdot(grads[1], db))
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=1e-3)


def test_rounds_inside_a_users_jitted_loop_give_the_eager_values(fed_avg):
  process, state, clients, _ = fed_avg

  @jax.jit
  def three_rounds(state):
    losses = []
    for _ in range(3):
      state, metrics = process.next(state, clients)
      losses.append(metrics["client_work"]["train"]["loss"])
    return state, jnp.stack(losses)

  jitted_state, jitted_losses = three_rounds(state)
  eager_state, eager_losses = state, []
  for _ in range(3):
    eager_state, metrics = process.next(eager_state, clients)
    eager_losses.append(metrics["client_work"]["train"]["loss"])
  np.testing.assert_allclose(jitted_losses, eager_losses, rtol=1e-5)
  for got, want in zip(process.get_model_weights(jitted_state).trainable,
                       process.get_model_weights(eager_state).trainable):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_explain_shows_the_differentiable_plan_under_a_transformation():
  texts = []
  jax.jit(lambda w: texts.append(fx.runtime.explain(summed, w, list(X))) or 0)(W)
  assert "differentiable: True" in texts[0] and "sequence_loop: scan" in texts[0]
  eager = fx.runtime.explain(summed, W, list(X))
  assert "differentiable: False" in eager
  assert "federated_map over 4 clients: vmap" in eager
