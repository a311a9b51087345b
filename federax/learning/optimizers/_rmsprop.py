"""`build_rmsprop`: a per-coordinate step from a running mean of squared gradients."""

from __future__ import annotations

from typing import Union

import optax

from federax.learning.optimizers import _rule, _validation
from federax.learning.optimizers._optimizer import Optimizer


def build_rmsprop(learning_rate: Union[float, _rule.Schedule], decay: float = 0.9,
                  epsilon: float = 1e-7) -> Optimizer:
  """RMSprop (TFF's `build_rmsprop`).

  From Tieleman and Hinton, "Lecture 6.5 - RMSProp", COURSERA: Neural Networks for Machine
  Learning (2012), with `epsilon` outside the root as in TFF:

      s = decay * s + (1 - decay) * g**2
      w = w - lr * g / (sqrt(s) + epsilon)

  `s` starts at 0. Built from `optax.scale_by_rms(eps_in_sqrt=False)`; note `optax.rmsprop`
  puts `epsilon` inside the root by default. The state is `{'learning_rate', 'decay',
  'epsilon', 'preconditioner'}`.

  Args:
    learning_rate: a float >= 0, or an Optax schedule (a callable step -> learning rate).
    decay: in [0, 1), the decay of the squared gradients' running mean.
    epsilon: >= 0, for numerical stability.

  Returns:
    An `Optimizer`.

  Raises:
    TypeError: if an argument is not a number (or, for `learning_rate`, a schedule).
    ValueError: naming the argument and its range, if a value lies outside it.

  Example:
    >>> optimizer = fx.learning.optimizers.build_rmsprop(learning_rate=0.01, decay=0.95)
    >>> state = optimizer.initialize({"w": jnp.zeros(2)})
  """
  _validation.check_learning_rate("build_rmsprop", learning_rate)
  _validation.check_range("build_rmsprop", "decay", decay, 0.0, 1.0)
  _validation.check_range("build_rmsprop", "epsilon", epsilon, 0.0)

  def rule(hp):
    return _rule.chain(
        _rule.keyed(optax.scale_by_rms(hp["decay"], hp["epsilon"], eps_in_sqrt=False),
                    optax.ScaleByRmsState, nu="preconditioner"),
        _rule.keyed(optax.scale_by_learning_rate(hp["learning_rate"])))

  return _rule.build_optimizer("build_rmsprop", {
      "learning_rate": learning_rate, "decay": decay, "epsilon": epsilon}, rule)
