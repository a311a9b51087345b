"""Checks every optimizer passes: jit-able without recompiles, stable state, dtypes, hparams."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from federax.learning import optimizers

OPTIMIZERS = {
    "sgd": lambda: optimizers.build_sgdm(learning_rate=0.1),
    "sgdm": lambda: optimizers.build_sgdm(learning_rate=0.1, momentum=0.9),
    "adam": lambda: optimizers.build_adam(learning_rate=0.1),
    "adamw": lambda: optimizers.build_adamw(learning_rate=0.1),
    "adagrad": lambda: optimizers.build_adagrad(learning_rate=0.5),
    "rmsprop": lambda: optimizers.build_rmsprop(learning_rate=0.05),
    "yogi": lambda: optimizers.build_yogi(learning_rate=0.1),
    "sgd_schedule": lambda: optimizers.build_sgdm(optax.exponential_decay(0.2, 50, 0.5)),
    "adam_schedule": lambda: optimizers.build_adam(optax.cosine_decay_schedule(0.1, 200)),
    "optax_adam": lambda: optimizers.as_optimizer(optax.adam(0.1)),
    "optax_injected": lambda: optimizers.as_optimizer(
        optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)),
}


def _weights():
  # Mixed shapes and dtypes: narrow floats must come back narrow.
  return {"kernel": jnp.full((3, 2), 2.0, jnp.float32), "scale": jnp.asarray(1.5, jnp.bfloat16),
          "table": jnp.full((2, 2), -0.5, jnp.float16)}


def _loss(weights):
  return sum(jnp.sum(jnp.square(w.astype(jnp.float32) - 0.25)) for w in jax.tree.leaves(weights))


_gradients = jax.jit(jax.grad(_loss))
_loss = jax.jit(_loss)
STEPS = 40


def _avals(tree):
  return jax.tree.map(lambda x: (x.shape, x.dtype, getattr(x, "weak_type", False)), tree)


class Run(NamedTuple):
  optimizer: optimizers.Optimizer
  step: Any  # the jitted next
  traces: list
  states: list  # the initial state, then one per step
  weights: list  # likewise


@pytest.fixture(scope="module", params=OPTIMIZERS, ids=list(OPTIMIZERS))
def run(request):
  """One jitted run per optimizer, shared by the checks below (compiling is the slow part)."""
  optimizer = OPTIMIZERS[request.param]()
  traces = []

  def next_fn(state, weights, gradients):
    traces.append(1)  # a Python side effect: runs only while tracing
    return optimizer.next(state, weights, gradients)

  step = jax.jit(next_fn)
  weights = [_weights()]
  states = [optimizer.initialize(weights[0])]
  for _ in range(STEPS):
    state, new_weights = step(states[-1], weights[-1], _gradients(weights[-1]))
    states.append(state)
    weights.append(new_weights)
  return Run(optimizer, step, traces, states, weights)


@pytest.fixture
def optimizer(run):
  return run.optimizer


def test_is_an_optimizer(optimizer):
  assert isinstance(optimizer, optimizers.Optimizer)
  assert optimizers.as_optimizer(optimizer) is optimizer


def test_jitted_next_traces_once_across_steps_and_new_values(run):
  assert len(run.traces) == 1
  assert run.step._cache_size() == 1


def test_state_structure_and_dtypes_are_stable(run):
  structure, avals = jax.tree.structure(run.states[0]), _avals(run.states[0])
  for state in run.states[1:]:
    assert jax.tree.structure(state) == structure
    assert _avals(state) == avals


def test_weights_keep_their_dtypes(run):
  dtypes = jax.tree.map(lambda w: w.dtype, run.weights[0])
  assert all(jax.tree.map(lambda w: w.dtype, w) == dtypes for w in run.weights)
  assert not np.allclose(run.weights[1]["kernel"], run.weights[0]["kernel"])  # it took a step


def test_reduces_a_quadratic_loss(run):
  assert _loss(run.weights[-1]) < 0.5 * _loss(run.weights[0])


def test_initialize_accepts_shape_dtype_specs(run):
  specs = jax.tree.map(lambda w: jax.ShapeDtypeStruct(w.shape, w.dtype), run.weights[0])
  from_specs = run.optimizer.initialize(specs)
  assert _avals(from_specs) == _avals(run.states[0])
  for a, b in zip(jax.tree.leaves(from_specs), jax.tree.leaves(run.states[0])):
    np.testing.assert_array_equal(a, b)


def test_initialize_traces(run):
  specs = jax.tree.map(lambda w: jax.ShapeDtypeStruct(w.shape, w.dtype), run.weights[0])
  assert _avals(jax.eval_shape(run.optimizer.initialize, specs)) == _avals(run.states[0])


def test_float32_gradients_leave_the_weights_dtypes_alone(run):
  # e.g. gradients of a float32 loss, taken in a mixed-precision model
  wide = jax.tree.map(lambda w: jax.ShapeDtypeStruct(w.shape, jnp.float32), run.weights[0])
  state, weights = jax.eval_shape(run.optimizer.next, run.states[0], run.weights[0], wide)
  assert _avals(weights) == _avals(run.weights[1])
  assert _avals(state) == _avals(run.states[1])


def test_hparams_round_trip(run):
  optimizer, state = run.optimizer, run.states[1]
  again = optimizer.set_hparams(state, optimizer.get_hparams(state))
  assert _avals(again) == _avals(state)
  for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)
  assert _avals(optimizer.set_hparams(state, {})) == _avals(state)


def test_set_hparams_takes_effect_without_recompiling(run):
  optimizer, state, weights = run.optimizer, run.states[-1], run.weights[-1]
  if "learning_rate" not in optimizer.get_hparams(state):
    assert optimizer.get_hparams(state) == {}  # a plain Optax transform keeps none in its state
    return
  state = optimizer.set_hparams(state, {"learning_rate": 0.0})  # a Python float
  assert optimizer.get_hparams(state)["learning_rate"] == 0.0
  _, new_weights = run.step(state, weights, _gradients(weights))
  assert run.step._cache_size() == 1
  if "momentum" not in optimizer.get_hparams(state):  # momentum would still move the weights
    for a, b in zip(jax.tree.leaves(new_weights), jax.tree.leaves(weights)):
      np.testing.assert_array_equal(a, b)


def test_state_leaves_are_arrays(run):
  assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(run.states[0]))


def test_runs_per_client_under_vmap(run):
  # Client optimizers run under vmap, one state per client along a leading axis.
  clients = jax.tree.map(lambda w: jnp.stack([w, w + 1]), run.weights[0])
  states, weights = jax.eval_shape(
      lambda ws: jax.vmap(run.optimizer.next)(jax.vmap(run.optimizer.initialize)(ws), ws,
                                              jax.vmap(_gradients)(ws)), clients)
  assert _avals(weights) == _avals(clients)
  assert _avals(states) == _avals(jax.tree.map(lambda x: jnp.stack([x, x]), run.states[1]))


def test_vmapped_clients_match_separate_runs():
  optimizer = OPTIMIZERS["adam_schedule"]()  # the most state: a step count and a schedule
  clients = jax.tree.map(lambda w: jnp.stack([w, 2 * w]), _weights())

  @jax.jit
  @jax.vmap
  def two_steps(weights):
    state = optimizer.initialize(weights)
    state, weights = optimizer.next(state, weights, _gradients(weights))
    return optimizer.next(state, weights, _gradients(weights))[1]

  together = two_steps(clients)
  for client in range(2):
    weights = jax.tree.map(lambda w: w[client], clients)
    state = optimizer.initialize(weights)
    for _ in range(2):
      state, weights = jax.jit(optimizer.next)(state, weights, _gradients(weights))
    for a, b in zip(jax.tree.leaves(weights), jax.tree.leaves(together)):
      np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b[client], np.float32),
                                 rtol=1e-2)
