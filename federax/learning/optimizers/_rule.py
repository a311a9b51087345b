"""The state layout behind the builders: TFF's flat dict of hyperparameters and accumulators.

A builder names its hyperparameters and gives a *rule*: a function from the hyperparameters
(scalar arrays read from the state) to an Optax `GradientTransformation` whose state is a
dict keyed by TFF's names ('accumulator', 'preconditioner', 'step'). `keyed` and `chain`
turn Optax's own transforms into such rules.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Union

import jax.numpy as jnp
import optax

from federax.learning.optimizers import _validation
from federax.learning.optimizers._optimizer import (Hparams, Optimizer, checked_gradients,
                                                    keep_dtypes)

LEARNING_RATE_KEY = "learning_rate"
STEP_KEY = "step"
Schedule = Callable[[Any], Any]
Rule = Callable[[Hparams], optax.GradientTransformation]


def keyed(transform: optax.GradientTransformation, state_type: type = optax.EmptyState,
          **keys: str) -> optax.GradientTransformation:
  """`transform` with its NamedTuple state held as a dict under TFF's names.

  Args:
    transform: an Optax transform whose state is one `state_type` NamedTuple.
    state_type: that NamedTuple's class (`optax.EmptyState` for stateless transforms).
    **keys: the dict key for each field of `state_type`, e.g. `trace="accumulator"`.

  Returns:
    A transform whose `init` returns `{key: field}`; its `update` reads its own keys from
    whatever dict it is given (so that `chain` can pass one shared dict to every part).
  """

  def init(params):
    state = transform.init(params)
    return {keys[field]: getattr(state, field) for field in state._fields}

  def update(updates, state, params=None):
    inner = state_type(**{field: state[key] for field, key in keys.items()})
    updates, inner = transform.update(updates, inner, params)
    return updates, {keys[field]: getattr(inner, field) for field in inner._fields}

  return optax.GradientTransformation(init, update)


def chain(*transforms: optax.GradientTransformation) -> optax.GradientTransformation:
  """`optax.chain` for dict-state transforms: one flat dict holds every part's state."""

  def init(params):
    return {key: value for t in transforms for key, value in t.init(params).items()}

  def update(updates, state, params=None):
    new_state = {}
    for t in transforms:
      updates, part = t.update(updates, state, params)
      new_state.update(part)
    return updates, new_state

  return optax.GradientTransformation(init, update)


def _ordered(items: Mapping[str, Any], order: Sequence[str]) -> collections.OrderedDict:
  """`items` as an OrderedDict: the keys in `order` first, in that order, then the others."""
  keys = [k for k in order if k in items] + [k for k in items if k not in order]
  return collections.OrderedDict((k, items[k]) for k in keys)


def _like(state: Mapping[str, Any], items: Iterable[tuple[str, Any]]) -> Mapping[str, Any]:
  """`items` in a mapping of `state`'s type (an OrderedDict keeps its order through JAX)."""
  return collections.OrderedDict(items) if isinstance(state, collections.OrderedDict) else dict(
      items)


def build_optimizer(op: str, hparams: dict[str, Union[float, Schedule]], rule: Rule,
                    order: Sequence[str] = ()) -> Optimizer:
  """An `Optimizer` whose state is `{**hparams, **rule_state}`, TFF's layout.

  Hyperparameters are float32 scalars in the state, so changing them never recompiles `next`.
  With a schedule for the learning rate, the state also counts steps ('step', shared with a
  rule that already counts them) and holds the rate the next step will use,
  `schedule(steps taken)`, as TFF's `schedule_learning_rate` does.

  The state is an OrderedDict in TFF's order, so it prints (and flattens) as TFF's does:
  plain dicts come out of JAX with their keys sorted.

  Args:
    op: the builder's name, for error messages.
    hparams: the hyperparameters by TFF's names, in TFF's order.
    rule: maps the hyperparameters to a dict-state transform that returns the weights' update.
    order: the state's keys in TFF's order, where it is not the hyperparameters then the
      rule's state (TFF's AdamW keeps 'weight_decay' last).

  Returns:
    The `Optimizer`.
  """
  schedule = hparams.get(LEARNING_RATE_KEY)
  schedule = schedule if callable(schedule) else None
  hparam_keys = tuple(hparams)

  def hparams_of(where, state):
    missing = [k for k in hparam_keys if k not in state]
    if missing:
      raise _validation.OptimizerKeyError(_validation.message(
          where, f"the state has no {', '.join(repr(k) for k in missing)}: it was not made by "
          f"this optimizer (expected the hyperparameters {', '.join(map(repr, hparam_keys))}).",
          hint="pass the state returned by this optimizer's initialize or next."))
    return {k: state[k] for k in hparam_keys}

  def initialize(specs):
    weights = _validation.zeros_like_specs(f"{op}(...).initialize", specs)
    step = jnp.zeros([], jnp.int32)
    values = {k: _validation.scheduled_value(f"{op}(...).initialize", v, step)
              if k == LEARNING_RATE_KEY and schedule is not None else jnp.asarray(v, jnp.float32)
              for k, v in hparams.items()}
    state = {**values, **rule(values).init(weights)}
    if schedule is not None:
      state.setdefault(STEP_KEY, step)
    return _ordered(state, order)

  def next_(state, weights, gradients):
    where = f"{op}(...).next"
    gradients = checked_gradients(where, weights, gradients)
    values = hparams_of(where, state)
    rule_state = {k: v for k, v in state.items() if k not in values}
    for key, value in rule_state.items():
      if key != STEP_KEY:
        _validation.check_like(
            where, f"state[{key!r}]", weights, value,
            hint="initialize the optimizer with specs of these weights: "
            "optimizer.initialize(weights).")
    updates, new_rule_state = rule(values).update(gradients, rule_state, weights)
    new_rule_state = {k: keep_dtypes(v, rule_state[k]) for k, v in new_rule_state.items()}
    new_state = {**values, **new_rule_state}
    if schedule is not None:
      new_state.setdefault(STEP_KEY, optax.safe_increment(state[STEP_KEY]))
      new_state[LEARNING_RATE_KEY] = _validation.scheduled_value(where, schedule,
                                                                 new_state[STEP_KEY])
    new_state = _like(state, ((k, new_state[k]) for k in state))  # The same structure.
    return new_state, optax.apply_updates(weights, updates)

  def get_hparams(state):
    return hparams_of(f"{op}(...).get_hparams", state)

  def set_hparams(state, new_hparams):
    where = f"{op}(...).set_hparams"
    old = hparams_of(where, state)
    _validation.check_hparam_keys(where, hparam_keys, new_hparams)
    cast = {k: _validation.cast_hparam(where, k, v, old[k]) for k, v in new_hparams.items()}
    return _like(state, ((k, cast.get(k, v)) for k, v in state.items()))

  return Optimizer(initialize, next_, get_hparams, set_hparams)
