"""Each builder against an independent float64 NumPy transcription of TFF's update rule."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from federax.learning import optimizers

STEPS = 5
SHAPES = {"dense": {"kernel": (3, 4), "bias": (4,)}, "scale": ()}


def _weights_and_gradients(seed=0):
  rng = np.random.default_rng(seed)
  is_shape = lambda x: isinstance(x, tuple)
  weights = jax.tree.map(lambda s: rng.normal(size=s).astype(np.float32), SHAPES, is_leaf=is_shape)
  steps = []
  for step in range(STEPS):
    # Gradients of varied scale and sign, with exact zeros (Yogi's sign(g**2 - s), Adagrad's s).
    g = jax.tree.map(lambda s: (rng.normal(size=s) * 10.0 ** rng.uniform(-2, 1)).astype(np.float32),
                     SHAPES, is_leaf=is_shape)
    g["dense"]["bias"][step % 4] = 0.0
    steps.append(g)
  return weights, steps


def _run(optimizer, weights, steps):
  state = optimizer.initialize(weights)
  params = jax.tree.map(jnp.asarray, weights)
  step = jax.jit(optimizer.next)
  trajectory = []
  for g in steps:
    state, params = step(state, params, jax.tree.map(jnp.asarray, g))
    trajectory.append([np.asarray(x) for x in jax.tree.leaves(params)])
  return trajectory


def _leaves64(tree):
  return [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]


# Each reference takes float64 leaf lists and a learning rate per step (t = 0, 1, ...), and
# returns the weights after every step; written from TFF's source, not from federax.


def sgdm_reference(weights, steps, lr, momentum=None):
  w = _leaves64(weights)
  v = [np.zeros_like(x) for x in w]
  out = []
  for t, grads in enumerate(steps):
    for i, g in enumerate(_leaves64(grads)):
      if momentum:
        v[i] = momentum * v[i] + g
        w[i] = w[i] - lr(t) * v[i]
      else:
        w[i] = w[i] - lr(t) * g
    out.append([x.copy() for x in w])
  return out


def adam_reference(weights, steps, lr, beta_1, beta_2, epsilon, weight_decay=None, yogi=False,
                   initial_preconditioner=0.0):
  w = _leaves64(weights)
  acc = [np.zeros_like(x) for x in w]
  s = [np.full_like(x, initial_preconditioner) for x in w]
  out = []
  for t, grads in enumerate(steps):
    step = t + 1
    normalization = np.sqrt(1 - beta_2**step) / (1 - beta_1**step)
    for i, g in enumerate(_leaves64(grads)):
      acc[i] = beta_1 * acc[i] + (1 - beta_1) * g
      if yogi:
        s[i] = s[i] + (1 - beta_2) * np.sign(g**2 - s[i]) * g**2
      else:
        s[i] = beta_2 * s[i] + (1 - beta_2) * g**2
      direction = normalization * acc[i] / (np.sqrt(s[i]) + epsilon)
      if weight_decay is None:
        w[i] = w[i] - lr(t) * direction
      else:
        w[i] = w[i] - lr(t) * (direction + weight_decay * w[i])
    out.append([x.copy() for x in w])
  return out


def adagrad_reference(weights, steps, lr, initial_preconditioner_value, epsilon):
  w = _leaves64(weights)
  s = [np.full_like(x, initial_preconditioner_value) for x in w]
  out = []
  for t, grads in enumerate(steps):
    for i, g in enumerate(_leaves64(grads)):
      s[i] = s[i] + g**2
      w[i] = w[i] - lr(t) * g / np.sqrt(s[i] + epsilon)
    out.append([x.copy() for x in w])
  return out


def rmsprop_reference(weights, steps, lr, decay, epsilon):
  w = _leaves64(weights)
  s = [np.zeros_like(x) for x in w]
  out = []
  for t, grads in enumerate(steps):
    for i, g in enumerate(_leaves64(grads)):
      s[i] = decay * s[i] + (1 - decay) * g**2
      w[i] = w[i] - lr(t) * g / (np.sqrt(s[i]) + epsilon)
    out.append([x.copy() for x in w])
  return out


def constant(value):
  return lambda t: value


CASES = {
    "sgd": (optimizers.build_sgdm(learning_rate=0.05),
            lambda w, g: sgdm_reference(w, g, constant(0.05))),
    "sgdm": (optimizers.build_sgdm(learning_rate=0.05, momentum=0.7),
             lambda w, g: sgdm_reference(w, g, constant(0.05), momentum=0.7)),
    "adam": (optimizers.build_adam(learning_rate=0.05, beta_1=0.8, beta_2=0.95, epsilon=0.1),
             lambda w, g: adam_reference(w, g, constant(0.05), 0.8, 0.95, 0.1)),
    "adamw": (optimizers.build_adamw(learning_rate=0.05, beta_1=0.8, beta_2=0.95, epsilon=0.1,
                                     weight_decay=0.3),
              lambda w, g: adam_reference(w, g, constant(0.05), 0.8, 0.95, 0.1, weight_decay=0.3)),
    "adagrad": (optimizers.build_adagrad(learning_rate=0.2, initial_preconditioner_value=0.5,
                                         epsilon=0.01),
                lambda w, g: adagrad_reference(w, g, constant(0.2), 0.5, 0.01)),
    "rmsprop": (optimizers.build_rmsprop(learning_rate=0.02, decay=0.7, epsilon=0.05),
                lambda w, g: rmsprop_reference(w, g, constant(0.02), 0.7, 0.05)),
    "yogi": (optimizers.build_yogi(learning_rate=0.05, beta_1=0.8, beta_2=0.9, epsilon=0.01,
                                   initial_preconditioner_value=0.3),
             lambda w, g: adam_reference(w, g, constant(0.05), 0.8, 0.9, 0.01, yogi=True,
                                         initial_preconditioner=0.3)),
    "adam_schedule": (
        optimizers.build_adam(learning_rate=optax.exponential_decay(0.1, 1, 0.5), epsilon=0.01),
        lambda w, g: adam_reference(w, g, lambda t: 0.1 * 0.5**t, 0.9, 0.999, 0.01)),
    "sgdm_schedule": (
        optimizers.build_sgdm(learning_rate=optax.linear_schedule(0.1, 0.0, 4), momentum=0.5),
        lambda w, g: sgdm_reference(w, g, lambda t: 0.1 * max(0.0, 1 - t / 4), momentum=0.5)),
}


@pytest.mark.parametrize("name", CASES)
def test_next_follows_tffs_rule_step_by_step(name):
  optimizer, reference = CASES[name]
  weights, steps = _weights_and_gradients()
  actual = _run(optimizer, weights, steps)
  expected = reference(weights, steps)
  for step, (got, want) in enumerate(zip(actual, expected)):
    for leaf, (a, b) in enumerate(zip(got, want)):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6,
                                 err_msg=f"{name}: step {step + 1}, leaf {leaf}")


@pytest.mark.parametrize("name, optax_twin", [
    ("adam", optax.adam(0.05, b1=0.8, b2=0.95, eps=0.1)),
    ("yogi", optax.yogi(0.05, b1=0.8, b2=0.9, eps=0.01)),
    ("rmsprop", optax.rmsprop(0.02, decay=0.7, eps=0.05)),
])
def test_the_references_tell_tffs_rule_from_optaxs(name, optax_twin):
  # Where TFF and Optax place epsilon or the bias correction differently, the test inputs
  # separate the two: matching the reference is not automatic.
  weights, steps = _weights_and_gradients()
  ours = _run(CASES[name][0], weights, steps)[-1]
  theirs = _run(optimizers.from_optax(optax_twin), weights, steps)[-1]
  assert max(np.max(np.abs(a - b)) for a, b in zip(ours, theirs)) > 1e-3


REQUIRED = inspect.Parameter.empty


@pytest.mark.parametrize("build, defaults", [
    (optimizers.build_sgdm, {"learning_rate": 0.01, "momentum": None}),
    (optimizers.build_adam, {"learning_rate": REQUIRED, "beta_1": 0.9, "beta_2": 0.999,
                             "epsilon": 1e-7}),
    (optimizers.build_adamw, {"learning_rate": REQUIRED, "beta_1": 0.9, "beta_2": 0.999,
                              "epsilon": 1e-7, "weight_decay": 0.004}),
    (optimizers.build_adagrad, {"learning_rate": REQUIRED, "initial_preconditioner_value": 0.1,
                                "epsilon": 1e-7}),
    (optimizers.build_rmsprop, {"learning_rate": REQUIRED, "decay": 0.9, "epsilon": 1e-7}),
    (optimizers.build_yogi, {"learning_rate": REQUIRED, "beta_1": 0.9, "beta_2": 0.999,
                             "epsilon": 1e-3, "initial_preconditioner_value": 1e-6}),
])
def test_signatures_are_tffs(build, defaults):
  # TFF's source: only build_sgdm has a default learning rate.
  parameters = inspect.signature(build).parameters
  assert {name: p.default for name, p in parameters.items()} == defaults


@pytest.mark.parametrize("optimizer, expected", [
    (optimizers.build_sgdm(), {"learning_rate": 0.01}),
    (optimizers.build_sgdm(momentum=0.9), {"learning_rate": 0.01, "momentum": 0.9}),
    (optimizers.build_adam(0.001), {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                                    "epsilon": 1e-7}),
    (optimizers.build_adamw(0.001), {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                                     "epsilon": 1e-7, "weight_decay": 0.004}),
    (optimizers.build_adagrad(0.1), {"learning_rate": 0.1, "epsilon": 1e-7}),
    (optimizers.build_rmsprop(0.01), {"learning_rate": 0.01, "decay": 0.9, "epsilon": 1e-7}),
    (optimizers.build_yogi(0.01), {"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999,
                                   "epsilon": 1e-3}),
])
def test_defaults_and_hparam_names_are_tffs(optimizer, expected):
  hparams = optimizer.get_hparams(optimizer.initialize({"w": jnp.zeros(2)}))
  assert list(hparams) == list(expected)
  for key, value in expected.items():
    assert hparams[key].dtype == jnp.float32
    np.testing.assert_allclose(hparams[key], value, rtol=1e-6)


@pytest.mark.parametrize("name, keys", [
    ("sgd", ["learning_rate"]),
    ("sgdm", ["learning_rate", "momentum", "accumulator"]),
    ("adam", ["learning_rate", "beta_1", "beta_2", "epsilon", "step", "accumulator",
              "preconditioner"]),
    ("adamw", ["learning_rate", "beta_1", "beta_2", "epsilon", "step", "accumulator",
               "preconditioner", "weight_decay"]),
    ("adagrad", ["learning_rate", "epsilon", "preconditioner"]),
    ("rmsprop", ["learning_rate", "decay", "epsilon", "preconditioner"]),
    ("yogi", ["learning_rate", "beta_1", "beta_2", "epsilon", "step", "accumulator",
              "preconditioner"]),
    ("sgdm_schedule", ["learning_rate", "momentum", "accumulator", "step"]),
    ("adam_schedule", ["learning_rate", "beta_1", "beta_2", "epsilon", "step", "accumulator",
                       "preconditioner"]),
])
def test_state_holds_tffs_keys(name, keys):
  state = CASES[name][0].initialize({"w": jnp.zeros(2)})
  assert list(state) == keys
  assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(state))


# The server optimizer's state as TFF 0.87 prints it: build_weighted_fed_avg(model_fn,
# build_sgdm(0.02), <optimizer>).initialize.type_signature.result.member.finalizer, for the
# tutorials' 784 -> 10 linear model.
_MODEL = "<float32[784,10],float32[10]>"
TFF_STATE_TYPES = {
    "sgd": "<learning_rate=float32>",
    "sgdm": f"<learning_rate=float32,momentum=float32,accumulator={_MODEL}>",
    "adam": ("<learning_rate=float32,beta_1=float32,beta_2=float32,epsilon=float32,step=int32,"
             f"accumulator={_MODEL},preconditioner={_MODEL}>"),
    "adamw": ("<learning_rate=float32,beta_1=float32,beta_2=float32,epsilon=float32,step=int32,"
              f"accumulator={_MODEL},preconditioner={_MODEL},weight_decay=float32>"),
    "adagrad": f"<learning_rate=float32,epsilon=float32,preconditioner={_MODEL}>",
    "rmsprop": f"<learning_rate=float32,decay=float32,epsilon=float32,preconditioner={_MODEL}>",
    "yogi": ("<learning_rate=float32,beta_1=float32,beta_2=float32,epsilon=float32,step=int32,"
             f"accumulator={_MODEL},preconditioner={_MODEL}>"),
}


@pytest.mark.parametrize("name", sorted(TFF_STATE_TYPES))
def test_state_types_print_as_tffs_and_keep_their_order_through_jit(name):
  import federax as fx
  optimizer = CASES[name][0]
  weights = [jnp.zeros((784, 10)), jnp.zeros(10)]
  state = optimizer.initialize(weights)
  assert str(fx.type_of(state)) == TFF_STATE_TYPES[name]
  state, weights = jax.jit(optimizer.next)(state, weights, [jnp.ones((784, 10)), jnp.ones(10)])
  assert str(fx.type_of(state)) == TFF_STATE_TYPES[name]
  state = optimizer.set_hparams(state, {"learning_rate": 0.5})
  assert str(fx.type_of(state)) == TFF_STATE_TYPES[name]


@pytest.mark.parametrize("momentum", [None, 0.0])
def test_sgd_without_momentum_keeps_no_accumulator(momentum):
  optimizer = optimizers.build_sgdm(learning_rate=0.1, momentum=momentum)
  state = optimizer.initialize({"w": jnp.zeros(3)})
  assert list(state) == ["learning_rate"]
  state, weights = optimizer.next(state, {"w": jnp.zeros(3)}, {"w": jnp.ones(3)})
  assert list(state) == ["learning_rate"]
  np.testing.assert_allclose(weights["w"], -0.1)


def test_initial_preconditioners_follow_tff():
  specs = {"w": jax.ShapeDtypeStruct((2,), jnp.float32)}
  np.testing.assert_allclose(  # TFF's defaults
      optimizers.build_yogi(0.01).initialize(specs)["preconditioner"]["w"], 1e-6)
  np.testing.assert_allclose(
      optimizers.build_adagrad(0.01).initialize(specs)["preconditioner"]["w"], 0.1)
  yogi = optimizers.build_yogi(0.01, initial_preconditioner_value=0.25).initialize(specs)
  np.testing.assert_array_equal(yogi["accumulator"]["w"], 0.0)  # optax.yogi starts it at 0.25
  np.testing.assert_array_equal(yogi["preconditioner"]["w"], 0.25)
  adagrad = optimizers.build_adagrad(0.01, initial_preconditioner_value=0.5).initialize(specs)
  np.testing.assert_array_equal(adagrad["preconditioner"]["w"], 0.5)


def test_schedule_state_reports_the_rate_of_the_next_step():
  schedule = optax.exponential_decay(0.1, 1, 0.5)
  optimizer = optimizers.build_sgdm(learning_rate=schedule)
  state = optimizer.initialize({"w": jnp.zeros(2)})
  weights = {"w": jnp.zeros(2)}
  for step in range(3):
    np.testing.assert_allclose(optimizer.get_hparams(state)["learning_rate"], 0.1 * 0.5**step)
    assert int(state["step"]) == step
    state, weights = jax.jit(optimizer.next)(state, weights, {"w": jnp.ones(2)})
  np.testing.assert_allclose(weights["w"], -(0.1 + 0.05 + 0.025), rtol=1e-6)


def test_a_rate_set_under_a_schedule_lasts_one_step():
  optimizer = optimizers.build_sgdm(learning_rate=optax.constant_schedule(0.1))
  state = optimizer.initialize({"w": jnp.zeros(1)})
  state = optimizer.set_hparams(state, {"learning_rate": 1.0})
  state, weights = optimizer.next(state, {"w": jnp.zeros(1)}, {"w": jnp.ones(1)})
  np.testing.assert_allclose(weights["w"], -1.0)
  np.testing.assert_allclose(optimizer.get_hparams(state)["learning_rate"], 0.1)
  state, weights = optimizer.next(state, weights, {"w": jnp.ones(1)})
  np.testing.assert_allclose(weights["w"], -1.1, rtol=1e-6)
