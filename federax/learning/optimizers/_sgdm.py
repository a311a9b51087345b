"""`build_sgdm`: gradient descent, with optional heavy-ball momentum."""

from __future__ import annotations

from typing import Optional, Union

import optax

from federax.learning.optimizers import _rule, _validation
from federax.learning.optimizers._optimizer import Optimizer


def build_sgdm(learning_rate: Union[float, _rule.Schedule] = 0.01,
               momentum: Optional[float] = None) -> Optimizer:
  """Gradient descent with optional momentum (TFF's `build_sgdm`).

  Without momentum the rule is `w = w - lr * g`. With momentum `m` it is Polyak's heavy
  ball ("Some methods of speeding up the convergence of iteration methods", 1964) in the
  form of Sutskever et al. (ICML 2013), with the velocity `v` summing gradients:

      v = m * v + g
      w = w - lr * v

  The state is `{'learning_rate'}`, plus `'momentum'` and `'accumulator'` (`v`, shaped like
  the weights) only when `momentum` is neither None nor 0, as in TFF; plus `'step'` when the
  learning rate is a schedule. Built from `optax.trace` and `optax.scale_by_learning_rate`.

  Args:
    learning_rate: a float >= 0, or an Optax schedule (a callable step -> learning rate).
    momentum: None, or a float in [0, 1]; None and 0 mean no momentum and no accumulator.

  Returns:
    An `Optimizer`.

  Raises:
    TypeError: if an argument is not a number (or, for `learning_rate`, a schedule).
    ValueError: naming the argument and its range, if a value lies outside it.

  Example:
    >>> optimizer = fx.learning.optimizers.build_sgdm(learning_rate=0.1, momentum=0.9)
    >>> state = optimizer.initialize({"w": jnp.zeros(2)})
    >>> list(state)  # TFF's order
    ['learning_rate', 'momentum', 'accumulator']
  """
  _validation.check_learning_rate("build_sgdm", learning_rate)
  if momentum is not None:
    _validation.check_range("build_sgdm", "momentum", momentum, 0.0, 1.0, high_open=False,
                            hint="pass momentum=None for plain gradient descent.")
  if momentum is None or _validation.as_float("build_sgdm", "momentum", momentum) == 0.0:
    return _rule.build_optimizer(
        "build_sgdm", {"learning_rate": learning_rate},
        lambda hp: _rule.keyed(optax.scale_by_learning_rate(hp["learning_rate"])))

  def rule(hp):
    return _rule.chain(
        _rule.keyed(optax.trace(hp["momentum"]), optax.TraceState, trace="accumulator"),
        _rule.keyed(optax.scale_by_learning_rate(hp["learning_rate"])))

  return _rule.build_optimizer(
      "build_sgdm", {"learning_rate": learning_rate, "momentum": momentum}, rule)
