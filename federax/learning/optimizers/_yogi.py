"""`build_yogi`: Adam's moments with an additive, sign-controlled second moment."""

from __future__ import annotations

from typing import Union

import optax

from federax.learning.optimizers import _rule, _validation
from federax.learning.optimizers._adam import check_betas, scale_by_tff_moments
from federax.learning.optimizers._optimizer import Optimizer


def build_yogi(learning_rate: Union[float, _rule.Schedule], beta_1: float = 0.9,
               beta_2: float = 0.999, epsilon: float = 1e-3,
               initial_preconditioner_value: float = 1e-6) -> Optimizer:
  """Yogi, in TFF's form (TFF's `build_yogi`).

  From Zaheer, Reddi, Sachan, Kale and Kumar, "Adaptive Methods for Nonconvex Optimization"
  (NeurIPS 2018); the server optimizer of FedYogi (Reddi et al., "Adaptive Federated
  Optimization", ICLR 2021). TFF's rule, bias correction folded into the learning rate:

      acc = beta_1 * acc + (1 - beta_1) * g
      s = s + (1 - beta_2) * sign(g**2 - s) * g**2
      normalized_lr = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
      w = w - normalized_lr * acc / (sqrt(s) + epsilon)

  `acc` starts at 0 and `s` at `initial_preconditioner_value`. This is not `optax.yogi`,
  which has no bias correction and starts `acc` at the initial value too; see
  `scale_by_tff_moments`. Typically use 10x Adam's learning rate. The state is
  `{'learning_rate', 'beta_1', 'beta_2', 'epsilon', 'step', 'accumulator',
  'preconditioner'}`.

  Args:
    learning_rate: a float >= 0, or an Optax schedule (a callable step -> learning rate).
      Required, as in TFF.
    beta_1: in [0, 1), the decay of the gradients' running mean.
    beta_2: in [0, 1), the rate of the additive second-moment update.
    epsilon: >= 0, trading adaptivity off against noise.
    initial_preconditioner_value: > 0, the starting value of `s` (TFF's documented range).

  Returns:
    An `Optimizer`.

  Raises:
    TypeError: if an argument is not a number (or, for `learning_rate`, a schedule).
    ValueError: naming the argument and its range, if a value lies outside it.

  Example:
    >>> optimizer = fx.learning.optimizers.build_yogi(learning_rate=0.01)
    >>> state = optimizer.initialize({"w": jnp.zeros(2)})
  """
  _validation.check_learning_rate("build_yogi", learning_rate)
  check_betas("build_yogi", beta_1, beta_2)
  _validation.check_range("build_yogi", "epsilon", epsilon, 0.0)
  _validation.check_range("build_yogi", "initial_preconditioner_value",
                          initial_preconditioner_value, 0.0, low_open=True)

  def rule(hp):
    return _rule.chain(
        scale_by_tff_moments(hp["beta_1"], hp["beta_2"], hp["epsilon"],
                             initial_preconditioner=initial_preconditioner_value, yogi=True),
        _rule.keyed(optax.scale_by_learning_rate(hp["learning_rate"])))

  return _rule.build_optimizer("build_yogi", {
      "learning_rate": learning_rate, "beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon,
  }, rule)
