"""Every error the optimizers raise: what is wrong, expected versus actual, a hint, the line."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from federax.learning import optimizers

WEIGHTS = {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)}


@pytest.mark.parametrize("build, message", [
    (lambda: optimizers.build_sgdm(learning_rate=-0.1),
     "build_sgdm: `learning_rate` must be >= 0, got -0.1."),
    (lambda: optimizers.build_sgdm(learning_rate=float("nan")),
     "build_sgdm: `learning_rate` must be >= 0, got nan."),
    (lambda: optimizers.build_sgdm(momentum=1.5),
     "build_sgdm: `momentum` must be in [0, 1], got 1.5."),
    (lambda: optimizers.build_sgdm(momentum=-0.5),
     "build_sgdm: `momentum` must be in [0, 1], got -0.5."),
    (lambda: optimizers.build_adam(0.1, beta_1=1.0),
     "build_adam: `beta_1` must be in [0, 1), got 1.0."),
    (lambda: optimizers.build_adam(0.1, beta_2=-0.1),
     "build_adam: `beta_2` must be in [0, 1), got -0.1."),
    (lambda: optimizers.build_adam(0.1, epsilon=-1e-7),
     "build_adam: `epsilon` must be >= 0, got -1e-07."),
    (lambda: optimizers.build_adamw(-1.0), "build_adamw: `learning_rate` must be >= 0, got -1.0."),
    (lambda: optimizers.build_adamw(0.1, beta_1=1.2),
     "build_adamw: `beta_1` must be in [0, 1), got 1.2."),
    (lambda: optimizers.build_adamw(0.1, epsilon=-1.0),
     "build_adamw: `epsilon` must be >= 0, got -1.0."),
    (lambda: optimizers.build_adamw(0.1, weight_decay=-0.004),
     "build_adamw: `weight_decay` must be >= 0, got -0.004."),
    (lambda: optimizers.build_adagrad(-0.1), "build_adagrad: `learning_rate` must be >= 0"),
    (lambda: optimizers.build_adagrad(0.1, initial_preconditioner_value=-0.1),
     "build_adagrad: `initial_preconditioner_value` must be >= 0, got -0.1."),
    (lambda: optimizers.build_adagrad(0.1, epsilon=-0.1),
     "build_adagrad: `epsilon` must be >= 0, got -0.1."),
    (lambda: optimizers.build_rmsprop(-0.1), "build_rmsprop: `learning_rate` must be >= 0"),
    (lambda: optimizers.build_rmsprop(0.1, decay=1.0),
     "build_rmsprop: `decay` must be in [0, 1), got 1.0."),
    (lambda: optimizers.build_rmsprop(0.1, epsilon=-0.1),
     "build_rmsprop: `epsilon` must be >= 0, got -0.1."),
    (lambda: optimizers.build_yogi(-0.1), "build_yogi: `learning_rate` must be >= 0"),
    (lambda: optimizers.build_yogi(0.1, beta_2=1.0),
     "build_yogi: `beta_2` must be in [0, 1), got 1.0."),
    (lambda: optimizers.build_yogi(0.1, epsilon=-0.1),
     "build_yogi: `epsilon` must be >= 0, got -0.1."),
    (lambda: optimizers.build_yogi(0.1, initial_preconditioner_value=0.0),
     "build_yogi: `initial_preconditioner_value` must be > 0, got 0.0."),
])
def test_out_of_range_arguments_name_the_argument_range_and_value(build, message):
  with pytest.raises(ValueError, match=re.escape(message)) as error:
    build()
  assert "test_optimizer_errors.py" in str(error.value)  # the user's own line


def test_out_of_range_hints_say_why():
  with pytest.raises(ValueError, match="hint: a beta of 1 never forgets"):
    optimizers.build_adam(0.1, beta_1=1.0)
  with pytest.raises(ValueError, match=re.escape("hint: pass momentum=None for plain gradient")):
    optimizers.build_sgdm(0.1, momentum=2.0)


def test_an_array_hyperparameter_is_checked_too():
  with pytest.raises(ValueError, match=r"`beta_1` must be in \[0, 1\)"):
    optimizers.build_adam(0.1, beta_1=np.float32(1.5))
  optimizers.build_adam(jnp.asarray(0.1), beta_1=np.float32(0.5))  # accepted


@pytest.mark.parametrize("build, message", [
    (lambda: optimizers.build_adam(0.1, beta_1="0.9"),
     "build_adam: `beta_1` must be a float, got str '0.9'."),
    (lambda: optimizers.build_sgdm(0.1, momentum=True),
     "build_sgdm: `momentum` must be a float, got bool True."),
    (lambda: optimizers.build_adam(0.1, epsilon=jnp.ones(2)),
     "build_adam: `epsilon` must be a float, got ArrayImpl"),
])
def test_non_numbers_are_type_errors(build, message):
  with pytest.raises(TypeError, match=re.escape(message)):
    build()


@pytest.mark.parametrize("learning_rate, shown", [("fast", "str 'fast'"), (None, "NoneType None")])
def test_learning_rate_must_be_a_float_or_a_schedule(learning_rate, shown):
  with pytest.raises(TypeError, match=re.escape(
      "build_adam: `learning_rate` must be a float or an Optax schedule (a callable step -> "
      f"learning rate), got {shown}.")) as error:
    optimizers.build_adam(learning_rate)
  assert "hint: pass e.g. learning_rate=0.01" in str(error.value)


def test_a_schedule_must_return_a_scalar():
  optimizer = optimizers.build_sgdm(learning_rate=lambda step: jnp.ones(2) * 0.1)
  with pytest.raises(ValueError, match=re.escape(
      "build_sgdm(...).initialize: the learning-rate schedule must return a scalar, "
      "got shape (2,).")):
    optimizer.initialize(WEIGHTS)


@pytest.mark.parametrize("optimizer", [optimizers.build_adam(0.1),
                                       optimizers.from_optax(optax.adam(0.1))])
def test_specs_must_be_floating_arrays_or_specs(optimizer):
  with pytest.raises(TypeError, match=r"\.initialize: `specs` must be a pytree of floating-point "
                     r"arrays or shape/dtype specs\.\n  at \['b'\]: expected an array or a "
                     r"jax\.ShapeDtypeStruct, got float 1\.0\n  at \['n'\]: expected a floating "
                     r"dtype, got int32\n  hint: pass the weights themselves"):
    optimizer.initialize({"a": jnp.zeros(2), "b": 1.0, "n": jnp.zeros(2, jnp.int32)})


@pytest.mark.parametrize("optimizer", [optimizers.build_sgdm(0.1),
                                       optimizers.from_optax(optax.sgd(0.1))])
def test_gradients_must_match_the_weights_listing_only_the_differences(optimizer):
  state = optimizer.initialize(WEIGHTS)
  gradients = {"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros(2), "extra": jnp.zeros(1)}
  with pytest.raises(ValueError) as error:
    jax.jit(optimizer.next)(state, WEIGHTS, gradients)
  message = str(error.value)
  assert ".next: `gradients` must match `weights` in structure and shapes.\n" in message
  assert "  at ['kernel']: expected float32[3,2], got float32[2,3]\n" in message
  assert "  at ['extra']: expected nothing, got float32[1]\n" in message
  assert "['bias']" not in message
  assert "hint: pass the gradients of the loss at these weights" in message
  assert "test_optimizer_errors.py" in message
  with pytest.raises(ValueError, match=re.escape("at ['bias']: expected float32[2], got nothing")):
    optimizer.next(state, WEIGHTS, {"kernel": jnp.zeros((3, 2))})


def test_a_difference_message_is_the_core_template_whole():
  optimizer = optimizers.build_sgdm(0.1)
  weights = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
  state = optimizer.initialize(weights)
  with pytest.raises(ValueError) as error:
    optimizer.next(state, weights, {"a": jnp.zeros(2), "b": jnp.zeros(4)})
  assert re.fullmatch(re.escape(
      "build_sgdm(...).next: `gradients` must match `weights` in structure and shapes.\n"
      "  at ['b']: expected float32[3], got float32[4]\n"
      "  hint: pass the gradients of the loss at these weights, e.g. jax.grad(loss)(weights).\n"
      f"  at {__file__}:") + r"\d+: " + re.escape(
          'optimizer.next(state, weights, {"a": jnp.zeros(2), "b": jnp.zeros(4)})'),
      str(error.value))


def test_a_structure_difference_without_path_differences_is_shown_whole():
  optimizer = optimizers.build_sgdm(0.1)
  weights = (jnp.zeros(2), jnp.zeros(3))
  with pytest.raises(ValueError, match=r"expected the structure PyTreeDef\(\(\*, \*\)\), "
                     r"got PyTreeDef\(\[\*, \*\]\)"):
    optimizer.next(optimizer.initialize(weights), weights, [jnp.zeros(2), jnp.zeros(3)])


def test_many_differences_are_cut_short():
  optimizer = optimizers.build_sgdm(0.1)
  weights = {f"w{i:02d}": jnp.zeros(2) for i in range(11)}
  with pytest.raises(ValueError, match=re.escape("... and 3 more differences")) as error:
    optimizer.next(optimizer.initialize(weights), weights, {})
  assert str(error.value).count("expected float32[2], got nothing") == 8


def test_state_from_other_specs_is_refused_naming_the_accumulator():
  optimizer = optimizers.build_adam(0.1)
  state = optimizer.initialize({"kernel": jnp.zeros((3, 2))})
  with pytest.raises(ValueError) as error:
    optimizer.next(state, WEIGHTS, WEIGHTS)
  message = str(error.value)
  assert "build_adam(...).next: state['accumulator'] must match `weights`" in message
  assert "at ['bias']: expected float32[2], got nothing" in message
  assert "hint: initialize the optimizer with specs of these weights" in message


def test_set_hparams_names_unknown_keys_as_a_key_error():
  optimizer = optimizers.build_adam(0.1)
  state = optimizer.initialize(WEIGHTS)
  with pytest.raises(KeyError) as error:
    optimizer.set_hparams(state, {"learning_rate": 0.2, "beta1": 0.5, "momentum": 0.9})
  assert str(error.value).startswith(
      "build_adam(...).set_hparams: unknown hyperparameter(s) 'beta1', 'momentum'.\n"
      "  this optimizer's hyperparameters: 'learning_rate', 'beta_1', 'beta_2', 'epsilon'\n"
      "  for 'beta1', did you mean 'beta_1'?\n"
      "  hint: pass a subset of get_hparams(state).\n")
  assert "test_optimizer_errors.py" in str(error.value)


def test_a_plain_optax_transform_has_no_hyperparameters_to_set():
  optimizer = optimizers.from_optax(optax.adam(0.1))
  state = optimizer.initialize(WEIGHTS)
  assert optimizer.get_hparams(state) == {}
  with pytest.raises(KeyError, match=re.escape(
      "from_optax(...).set_hparams: unknown hyperparameter(s) 'learning_rate'.\n"
      "  this optimizer's hyperparameters: none\n"
      "  hint: an Optax transform has settable hyperparameters only when built with "
      "optax.inject_hyperparams, e.g. optax.inject_hyperparams(optax.adam)(learning_rate=1e-3).")):
    optimizer.set_hparams(state, {"learning_rate": 0.2})


@pytest.mark.parametrize("optimizer, where", [
    (optimizers.build_sgdm(0.1), "build_sgdm(...).set_hparams"),
    (optimizers.from_optax(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)),
     "from_optax(...).set_hparams"),
])
def test_hyperparameters_must_keep_their_shape(optimizer, where):
  state = optimizer.initialize(WEIGHTS)
  with pytest.raises(ValueError, match=re.escape(
      f"{where}: hyperparameter 'learning_rate' must have shape (), got shape (2,).")):
    optimizer.set_hparams(state, {"learning_rate": [0.1, 0.2]})


def test_a_state_from_another_optimizer_is_refused():
  state = optimizers.build_sgdm(0.1).initialize(WEIGHTS)
  adam = optimizers.build_adam(0.1)
  with pytest.raises(KeyError) as error:
    adam.get_hparams(state)
  assert str(error.value).startswith(
      "build_adam(...).get_hparams: the state has no 'beta_1', 'beta_2', 'epsilon': it was not "
      "made by this optimizer")
  with pytest.raises(KeyError, match=re.escape("build_adam(...).next: the state has no")):
    adam.next(state, WEIGHTS, WEIGHTS)


@pytest.mark.parametrize("value, shown, hint", [
    (3, "int 3", "hint: pass e.g. fx.learning.optimizers.build_sgdm(learning_rate=0.1) or "
     "optax.sgd(0.1)."),
    (optax.adam, "function <function adam", "hint: adam looks like a builder or an Optax "
     "factory: call it first"),
    (optimizers.build_adam, "function <function build_adam", "hint: build_adam looks like a "
     "builder"),
])
def test_as_optimizer_says_what_it_expected_and_got(value, shown, hint):
  with pytest.raises(TypeError) as error:
    optimizers.as_optimizer(value)
  message = str(error.value)
  assert message.startswith("as_optimizer: expected an fx.learning.optimizers.Optimizer or an "
                            f"optax.GradientTransformation, got {shown}")
  assert hint in message


def test_from_optax_refuses_other_values():
  with pytest.raises(TypeError, match=re.escape(
      "from_optax: expected an fx.learning.optimizers.Optimizer or an "
      "optax.GradientTransformation, got str 'sgd'.")):
    optimizers.from_optax("sgd")
