"""`build_adam`, `build_adamw`, and the TFF form of Adam's moments they (and Yogi) share."""

from __future__ import annotations

from typing import Union

import jax
import jax.numpy as jnp
import optax

from federax.learning.optimizers import _rule, _validation
from federax.learning.optimizers._optimizer import Optimizer


def scale_by_tff_moments(beta_1: jax.Array, beta_2: jax.Array, epsilon: jax.Array, *,
                         initial_preconditioner: float = 0.0,
                         yogi: bool = False) -> optax.GradientTransformation:
  """TFF's Adam (or Yogi) direction, state `{'step', 'accumulator', 'preconditioner'}`.

  It differs from `optax.scale_by_adam` and `optax.scale_by_yogi`, hence written here: TFF
  folds the bias correction into the step size and adds `epsilon` to the uncorrected root,

      normalization = sqrt(1 - beta_2**t) / (1 - beta_1**t)
      direction = normalization * acc / (sqrt(s) + epsilon)

  which is Optax's `acc_hat / (sqrt(s_hat) + epsilon')` with `epsilon' = epsilon /
  sqrt(1 - beta_2**t)` (Kingma and Ba's "epsilon hat"), not a constant. Optax's Yogi has no
  bias correction at all and starts both moments at its initial value; TFF starts the
  accumulator at zero and only the preconditioner at `initial_preconditioner`.

  Args:
    beta_1: decay of the first moment `acc`.
    beta_2: decay of the second moment `s`.
    epsilon: added to `sqrt(s)`.
    initial_preconditioner: the starting value of `s`.
    yogi: update `s` additively, `s + (1 - beta_2) * sign(g**2 - s) * g**2`, as Yogi does.

  Returns:
    A dict-state `optax.GradientTransformation` returning the direction (before the
    learning rate).
  """

  def init(params):
    return {"step": jnp.zeros([], jnp.int32),
            "accumulator": optax.tree.zeros_like(params),
            "preconditioner": optax.tree.full_like(params, initial_preconditioner)}

  def second_moment(s, g):
    if yogi:
      return s + (1.0 - beta_2) * jnp.sign(jnp.square(g) - s) * jnp.square(g)
    return s + (jnp.square(g) - s) * (1.0 - beta_2)

  def update(updates, state, params=None):
    del params
    step = optax.safe_increment(state["step"])
    t = step.astype(jnp.float32)
    normalization = jnp.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t)
    accumulator = jax.tree.map(lambda a, g: a + (g - a) * (1.0 - beta_1),
                               state["accumulator"], updates)
    preconditioner = jax.tree.map(second_moment, state["preconditioner"], updates)
    direction = jax.tree.map(lambda a, s: normalization * a / (jnp.sqrt(s) + epsilon),
                             accumulator, preconditioner)
    return direction, {"step": step, "accumulator": accumulator,
                       "preconditioner": preconditioner}

  return optax.GradientTransformation(init, update)


def check_betas(op: str, beta_1: float, beta_2: float):
  # TFF's newest Adam admits 1.0; it divides by 1 - beta_1**t = 0, so it is refused here.
  for name, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
    _validation.check_range(op, name, beta, 0.0, 1.0,
                            hint="a beta of 1 never forgets: 1 - beta**t is 0 at every step.")


def build_adam(learning_rate: Union[float, _rule.Schedule], beta_1: float = 0.9,
               beta_2: float = 0.999, epsilon: float = 1e-7) -> Optimizer:
  """Adam, in TFF's form (TFF's `build_adam`).

  From Kingma and Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015), with the
  bias correction folded into the learning rate, as in the paper's section 2 and in TFF:

      acc = beta_1 * acc + (1 - beta_1) * g
      s = beta_2 * s + (1 - beta_2) * g**2
      normalized_lr = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
      w = w - normalized_lr * acc / (sqrt(s) + epsilon)

  With `epsilon` outside the bias correction this is not `optax.adam`; see
  `scale_by_tff_moments`. The state is an OrderedDict `{'learning_rate', 'beta_1', 'beta_2',
  'epsilon', 'step', 'accumulator', 'preconditioner'}`, in TFF's order.

  Args:
    learning_rate: a float >= 0, or an Optax schedule (a callable step -> learning rate).
      Required, as in TFF.
    beta_1: in [0, 1), the decay of the gradients' running mean.
    beta_2: in [0, 1), the decay of the squared gradients' running mean.
    epsilon: >= 0, for numerical stability.

  Returns:
    An `Optimizer`.

  Raises:
    TypeError: if an argument is not a number (or, for `learning_rate`, a schedule).
    ValueError: naming the argument and its range, if a value lies outside it.

  Example:
    >>> optimizer = fx.learning.optimizers.build_adam(learning_rate=0.001)
    >>> state = optimizer.initialize({"w": jnp.zeros(2)})
    >>> state, weights = optimizer.next(state, {"w": jnp.zeros(2)}, {"w": jnp.ones(2)})
  """
  _validation.check_learning_rate("build_adam", learning_rate)
  check_betas("build_adam", beta_1, beta_2)
  _validation.check_range("build_adam", "epsilon", epsilon, 0.0)

  def rule(hp):
    return _rule.chain(scale_by_tff_moments(hp["beta_1"], hp["beta_2"], hp["epsilon"]),
                       _rule.keyed(optax.scale_by_learning_rate(hp["learning_rate"])))

  return _rule.build_optimizer("build_adam", {
      "learning_rate": learning_rate, "beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon,
  }, rule)


def build_adamw(learning_rate: Union[float, _rule.Schedule], beta_1: float = 0.9,
                beta_2: float = 0.999, epsilon: float = 1e-7,
                weight_decay: float = 0.004) -> Optimizer:
  """AdamW, in TFF's form (TFF's `build_adamw`).

  From Loshchilov and Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019): Adam as
  in `build_adam`, plus a weight decay `lambda` scaled by the learning rate (not by the
  normalized one):

      normalization = sqrt(1 - beta_2**t) / (1 - beta_1**t)
      w = w - lr * (normalization * acc / (sqrt(s) + epsilon) + lambda * w)

  The default `weight_decay` is tf.keras's 0.004 (Optax's is 1e-4). Composed from the TFF
  moments, `optax.add_decayed_weights` and `optax.scale_by_learning_rate`. The state is
  `build_adam`'s plus `'weight_decay'`, last (TFF's order).

  Args:
    learning_rate: a float >= 0, or an Optax schedule (a callable step -> learning rate).
      Required, as in TFF.
    beta_1: in [0, 1), the decay of the gradients' running mean.
    beta_2: in [0, 1), the decay of the squared gradients' running mean.
    epsilon: >= 0, for numerical stability.
    weight_decay: >= 0; 0 recovers Adam.

  Returns:
    An `Optimizer`.

  Raises:
    TypeError: if an argument is not a number (or, for `learning_rate`, a schedule).
    ValueError: naming the argument and its range, if a value lies outside it.

  Example:
    >>> optimizer = fx.learning.optimizers.build_adamw(learning_rate=0.001, weight_decay=0.01)
    >>> optimizer.get_hparams(optimizer.initialize({"w": jnp.zeros(2)}))["weight_decay"]
    Array(0.01, dtype=float32)
  """
  _validation.check_learning_rate("build_adamw", learning_rate)
  check_betas("build_adamw", beta_1, beta_2)
  _validation.check_range("build_adamw", "epsilon", epsilon, 0.0)
  _validation.check_range("build_adamw", "weight_decay", weight_decay, 0.0)

  def rule(hp):
    return _rule.chain(scale_by_tff_moments(hp["beta_1"], hp["beta_2"], hp["epsilon"]),
                       _rule.keyed(optax.add_decayed_weights(hp["weight_decay"])),
                       _rule.keyed(optax.scale_by_learning_rate(hp["learning_rate"])))

  return _rule.build_optimizer("build_adamw", {
      "learning_rate": learning_rate, "beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon,
      "weight_decay": weight_decay,
  }, rule, order=("learning_rate", "beta_1", "beta_2", "epsilon", "step", "accumulator",
                  "preconditioner", "weight_decay"))
