"""`FinalizerProcess`: applies the aggregated update at the server; `build_apply_optimizer_finalizer`."""

from __future__ import annotations

import collections
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import Computation, computation, federated_computation
from federax.core.placements import SERVER
from federax.core.type_conversions import to_type
from federax.learning._local import all_finite
from federax.learning._resolve import resolve_optimizer
from federax.learning._specs import abstract_value
from federax.learning.templates._checks import parameters, placed_at
from federax.templates.measured_process import MeasuredProcess, MeasuredProcessOutput


class FinalizerProcess(MeasuredProcess):
  """A `MeasuredProcess` that makes the next global model from the aggregated update.

  `next: (<S@SERVER, W@SERVER, U@SERVER> -> <state=S@SERVER, result=W@SERVER,
  measurements=M@SERVER>)`.
  """

  def __init__(self, initialize_fn: Computation, next_fn: Computation):
    super().__init__(initialize_fn, next_fn)
    name = type(self).__name__
    parameter = parameters(name, next_fn, ("state", "weights", "update"))
    placed_at(name, "the state", self.state_type, SERVER)
    placed_at(name, "the weights", parameter[1], SERVER)
    placed_at(name, "the update", parameter[2], SERVER)
    result = next_fn.type_signature.result
    placed_at(name, "the result", result[1], SERVER)
    placed_at(name, "the measurements", result[2], SERVER)


def build_apply_optimizer_finalizer(optimizer_fn: Any, model_weights_type: Any) -> FinalizerProcess:
  """A finalizer that treats the update as a gradient for `optimizer_fn` on the trainable weights.

  The server's optimizer state is the finalizer's state. An update with any non-finite value
  is rejected: weights and state stay as they were and `update_non_finite` is 1 (else 0).

  Args:
    optimizer_fn: a `fx.learning.optimizers` optimizer, an Optax transform, or a no-argument
      function returning one (e.g. `build_sgdm(1.0)`: the new weights are `w - update`).
    model_weights_type: the type of `ModelWeights(trainable, non_trainable)`.

  Returns:
    A `FinalizerProcess` with measurements `<update_non_finite=int32>@SERVER`.
  """
  optimizer = resolve_optimizer(optimizer_fn, "build_apply_optimizer_finalizer", "optimizer_fn")
  weights_type = to_type(model_weights_type)
  if not (isinstance(weights_type, t.StructType) and weights_type.names()[:1] == ("trainable",)):
    raise TypeError("build_apply_optimizer_finalizer: model_weights_type must be the type of "
                    f"ModelWeights(trainable, non_trainable); got {weights_type}.")
  trainable_type = weights_type[0]

  @computation
  def initial_state():
    return optimizer.initialize(abstract_value(trainable_type))

  state_type = initial_state.type_signature.result

  @computation(state_type, weights_type, trainable_type)
  def apply(state, weights, update):
    finite = all_finite(update)
    new_state, trainable = optimizer.next(state, weights.trainable, update)
    keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)
    return (keep(new_state, state), weights._replace(trainable=keep(trainable, weights.trainable)),
            collections.OrderedDict(update_non_finite=jnp.where(finite, 0, 1).astype(np.int32)))

  @federated_computation
  def initialize():
    return fi.federated_eval(initial_state, SERVER)

  @federated_computation(initialize.type_signature.result, t.FederatedType(weights_type, SERVER),
                         t.FederatedType(trainable_type, SERVER))
  def next_fn(state, weights, update):
    new_state, new_weights, measurements = fi.federated_map(apply, (state, weights, update))
    return MeasuredProcessOutput(state=new_state, result=new_weights, measurements=measurements)

  return FinalizerProcess(initialize, next_fn)

