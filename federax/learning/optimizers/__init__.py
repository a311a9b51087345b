"""Optimizers as pure functions, hyperparameters in the state (TFF's `tff.learning.optimizers`).

    optimizer = fx.learning.optimizers.build_adam(learning_rate=0.01)
    state = optimizer.initialize(weights)
    state, weights = optimizer.next(state, weights, gradients)
    state = optimizer.set_hparams(state, {"learning_rate": 0.001})

Any Optax `GradientTransformation` is accepted where an optimizer is, through `as_optimizer`.
"""

from federax.learning.optimizers._adagrad import build_adagrad as build_adagrad
from federax.learning.optimizers._adam import build_adam as build_adam
from federax.learning.optimizers._adam import build_adamw as build_adamw
from federax.learning.optimizers._optimizer import Optimizer as Optimizer
from federax.learning.optimizers._optimizer import as_optimizer as as_optimizer
from federax.learning.optimizers._optimizer import from_optax as from_optax
from federax.learning.optimizers._rmsprop import build_rmsprop as build_rmsprop
from federax.learning.optimizers._sgdm import build_sgdm as build_sgdm
from federax.learning.optimizers._yogi import build_yogi as build_yogi

__all__ = [
    "Optimizer",
    "as_optimizer",
    "build_adagrad",
    "build_adam",
    "build_adamw",
    "build_rmsprop",
    "build_sgdm",
    "build_yogi",
    "from_optax",
]
