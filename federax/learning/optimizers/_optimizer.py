"""`Optimizer`: TFF's functional optimizer interface, and its adapter from Optax."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from federax.learning.optimizers import _validation

Weights = Any  # a pytree of floating-point arrays
State = Any  # a pytree of arrays; a dict for the builders
Hparams = dict[str, jax.Array]

_INJECTED_STATES = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


class Optimizer(NamedTuple):
  """An optimizer as four pure functions (TFF's `tff.learning.optimizers.Optimizer`).

  Unlike an Optax `GradientTransformation`, `next` returns the new weights rather than an
  update, and the hyperparameters live in the state, so a server can read or change them
  between rounds without rebuilding or recompiling anything.

  The builders take a float or an Optax schedule for the learning rate. With a schedule the
  state also counts steps, and `get_hparams` reports the rate the next step will use; a rate
  given to `set_hparams` is used for that one step, after which the schedule resumes.

  Attributes:
    initialize: `specs -> state`; `specs` is a pytree of weights, or of
      `jax.ShapeDtypeStruct`s (anything with `.shape` and `.dtype`).
    next: `(state, weights, gradients) -> (state, weights)`; pure and jit-able; `gradients`
      has the structure and shapes of `weights`, and the weights keep their dtypes.
    get_hparams: `state -> dict` of the hyperparameters held in `state`.
    set_hparams: `(state, hparams) -> state` with some hyperparameters replaced.

  Example:
    >>> optimizer = fx.learning.optimizers.build_sgdm(learning_rate=0.1, momentum=0.9)
    >>> weights = {"w": jnp.ones(3)}
    >>> state = optimizer.initialize(weights)
    >>> state, weights = jax.jit(optimizer.next)(state, weights, {"w": jnp.ones(3)})
    >>> optimizer.get_hparams(state)["momentum"]
    Array(0.9, dtype=float32)
  """

  initialize: Callable[[Any], State]
  next: Callable[[State, Weights, Weights], tuple[State, Weights]]
  get_hparams: Callable[[State], Hparams]
  set_hparams: Callable[[State, Hparams], State]


def from_optax(transform: optax.GradientTransformation) -> Optimizer:
  """An `Optimizer` that takes its steps with an Optax `GradientTransformation`.

  The state is the transform's own state. Its hyperparameters are those of
  `optax.inject_hyperparams` when the transform was built with it (outermost), else none.

  Args:
    transform: any Optax gradient transformation, e.g. `optax.adam(1e-3)`.

  Returns:
    An `Optimizer` whose `next` applies `transform`'s update to the weights.

  Raises:
    TypeError: if `transform` is not an `optax.GradientTransformation`.

  Example:
    >>> adam = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    >>> optimizer = fx.learning.optimizers.from_optax(adam)
    >>> state = optimizer.initialize({"w": jnp.ones(3)})
    >>> state = optimizer.set_hparams(state, {"learning_rate": 1e-4})
  """
  if not isinstance(transform, optax.GradientTransformation):
    raise _type_error("from_optax", transform)
  op = "from_optax(...)"

  def initialize(specs):
    return transform.init(_validation.zeros_like_specs(f"{op}.initialize", specs))

  def next_(state, weights, gradients):
    gradients = checked_gradients(f"{op}.next", weights, gradients)
    updates, new_state = transform.update(gradients, state, weights)
    return keep_dtypes(new_state, state), optax.apply_updates(weights, updates)

  def get_hparams(state):
    return dict(state.hyperparams) if isinstance(state, _INJECTED_STATES) else {}

  def set_hparams(state, hparams):
    known = get_hparams(state)
    _validation.check_hparam_keys(f"{op}.set_hparams", known, hparams)
    if not hparams:
      return state
    cast = {k: _validation.cast_hparam(f"{op}.set_hparams", k, v, known[k])
            for k, v in hparams.items()}
    return state._replace(hyperparams={**state.hyperparams, **cast})

  return Optimizer(initialize, next_, get_hparams, set_hparams)


def as_optimizer(optimizer: Optimizer | optax.GradientTransformation) -> Optimizer:
  """`optimizer` itself, or an Optax transform wrapped by `from_optax`.

  Use it wherever an optimizer is accepted, so that callers may pass either kind.

  Args:
    optimizer: an `Optimizer` (e.g. `build_adam(0.01)`) or an `optax.GradientTransformation`.

  Returns:
    An `Optimizer`.

  Raises:
    TypeError: naming what was given, if it is neither.

  Example:
    >>> server_optimizer = fx.learning.optimizers.as_optimizer(optax.sgd(1.0))
  """
  if isinstance(optimizer, Optimizer):
    return optimizer
  if isinstance(optimizer, optax.GradientTransformation):
    return from_optax(optimizer)
  raise _type_error("as_optimizer", optimizer)


def _type_error(op: str, value: Any) -> TypeError:
  if callable(value):
    name = getattr(value, "__name__", type(value).__name__)
    hint = (f"{name} looks like a builder or an Optax factory: call it first, e.g. "
            "build_adam(learning_rate=0.01) or optax.adam(1e-3).")
  else:
    hint = "pass e.g. fx.learning.optimizers.build_sgdm(learning_rate=0.1) or optax.sgd(0.1)."
  return TypeError(_validation.message(
      op, "expected an fx.learning.optimizers.Optimizer or an optax.GradientTransformation, "
      f"got {type(value).__name__} {value!r}.", hint=hint))


def checked_gradients(op: str, weights: Weights, gradients: Weights) -> Weights:
  """`gradients`, checked against `weights` and cast to their dtypes (so weights keep theirs)."""
  _validation.check_like(op, "`gradients`", weights, gradients,
                         hint="pass the gradients of the loss at these weights, e.g. "
                         "jax.grad(loss)(weights).")
  return jax.tree.map(lambda g, w: jnp.asarray(g, w.dtype), gradients, weights)


def keep_dtypes(new_state: State, state: State) -> State:
  """`new_state` with the dtypes of `state`.

  Float32 hyperparameters promote narrower accumulators (e.g. Optax's bfloat16 `mu` under
  `inject_hyperparams`); a state whose dtypes change would recompile the next call, and
  would change the server state's type between rounds.
  """
  def keep(new, old):
    dtype = getattr(old, "dtype", None)
    return new if dtype is None or new.dtype == dtype else new.astype(dtype)

  return jax.tree.map(keep, new_state, state)
