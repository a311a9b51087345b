"""`build_adagrad`: a per-coordinate step from the sum of squared gradients so far."""

from __future__ import annotations

from typing import Union

import optax

from federax.learning.optimizers import _rule, _validation
from federax.learning.optimizers._optimizer import Optimizer


def build_adagrad(learning_rate: Union[float, _rule.Schedule],
                  initial_preconditioner_value: float = 0.1,
                  epsilon: float = 1e-7) -> Optimizer:
  """Adagrad (TFF's `build_adagrad`).

  From Duchi, Hazan and Singer, "Adaptive Subgradient Methods for Online Learning and
  Stochastic Optimization" (JMLR 2011), with `epsilon` inside the root as in TFF:

      s = s + g**2
      w = w - lr * g / sqrt(s + epsilon)

  `s` starts at `initial_preconditioner_value`. Built from `optax.scale_by_rss`, which is
  this rule, except that where `s` is 0 (so `g` is 0 too) it takes no step rather than
  TFF's 0 / sqrt(epsilon), which is NaN for `epsilon=0`. The state is `{'learning_rate',
  'epsilon', 'preconditioner'}`.

  Args:
    learning_rate: a float >= 0, or an Optax schedule (a callable step -> learning rate).
    initial_preconditioner_value: >= 0, the starting value of `s`.
    epsilon: >= 0, for numerical stability.

  Returns:
    An `Optimizer`.

  Raises:
    TypeError: if an argument is not a number (or, for `learning_rate`, a schedule).
    ValueError: naming the argument and its range, if a value lies outside it.

  Example:
    >>> optimizer = fx.learning.optimizers.build_adagrad(learning_rate=0.1)
    >>> optimizer.initialize({"w": jnp.zeros(2)})["preconditioner"]["w"]
    Array([0.1, 0.1], dtype=float32)
  """
  _validation.check_learning_rate("build_adagrad", learning_rate)
  _validation.check_range("build_adagrad", "initial_preconditioner_value",
                          initial_preconditioner_value, 0.0)
  _validation.check_range("build_adagrad", "epsilon", epsilon, 0.0)

  def rule(hp):
    return _rule.chain(
        _rule.keyed(optax.scale_by_rss(initial_preconditioner_value, hp["epsilon"]),
                    optax.ScaleByRssState, sum_of_squares="preconditioner"),
        _rule.keyed(optax.scale_by_learning_rate(hp["learning_rate"])))

  return _rule.build_optimizer(
      "build_adagrad", {"learning_rate": learning_rate, "epsilon": epsilon}, rule)

