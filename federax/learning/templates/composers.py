"""`compose_learning_process`: a `LearningProcess` from four blocks, as in TFF."""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

from federax.aggregators.factory import AggregationProcess
from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import Computation, computation, federated_computation
from federax.core.errors import FederatedTypeError
from federax.core.placements import SERVER
from federax.learning.templates.client_works import ClientWorkProcess
from federax.learning.templates.distributors import DistributionProcess
from federax.learning.templates.finalizers import FinalizerProcess
from federax.learning.templates.learning_process import LearningProcess, LearningProcessOutput
from federax.templates._naming import named


class LearningAlgorithmState(NamedTuple):
  """The state of a composed learning process: the global model and each block's state."""

  global_model_weights: Any
  distributor: Any
  client_work: Any
  aggregator: Any
  finalizer: Any


def compose_learning_process(initial_model_weights_fn: Computation,
                             model_weights_distributor: DistributionProcess,
                             client_work: ClientWorkProcess,
                             model_update_aggregator: AggregationProcess,
                             model_finalizer: FinalizerProcess) -> LearningProcess:
  """Composes the four blocks of a learning algorithm into a `LearningProcess` (TFF's design).

  Each round: the distributor sends the global weights to the clients; the client work turns
  weights and data into `ClientResult(update, update_weight)`; the aggregator reduces the
  updates (weighted when it is a weighted process); the finalizer applies the aggregate to the
  global weights. Metrics are `<distributor=..., client_work=..., aggregator=...,
  finalizer=...>@SERVER`, each block's measurements.

  Args:
    initial_model_weights_fn: a local computation `( -> W)` making the initial weights.
    model_weights_distributor: a `DistributionProcess` for `W`.
    client_work: a `ClientWorkProcess` taking `{W}@CLIENTS` and the client data.
    model_update_aggregator: an `AggregationProcess` for the updates.
    model_finalizer: a `FinalizerProcess` taking `W@SERVER` and the aggregated update.

  Returns:
    A `LearningProcess` whose state is `LearningAlgorithmState@SERVER`.

  Raises:
    TypeError: if a block is not of its template class.
    FederatedTypeError: if the blocks disagree on the weights' or the update's type.
  """
  name = "compose_learning_process"
  for label, block, cls in (("model_weights_distributor", model_weights_distributor,
                             DistributionProcess),
                            ("client_work", client_work, ClientWorkProcess),
                            ("model_update_aggregator", model_update_aggregator,
                             AggregationProcess),
                            ("model_finalizer", model_finalizer, FinalizerProcess)):
    if not isinstance(block, cls):
      raise TypeError(f"{name}: {label} must be a {cls.__name__}; got {block!r}.")
  weights_type = initial_model_weights_fn.type_signature.result
  checks = (("model_weights_distributor's value", model_weights_distributor.next, 1),
            ("client_work's weights", client_work.next, 1),
            ("model_finalizer's weights", model_finalizer.next, 1))
  for what, next_fn, index in checks:
    expected = next_fn.type_signature.parameter[index].member
    if not expected.is_assignable_from(weights_type):
      raise FederatedTypeError(name, f"{what} do not accept the initial model weights.",
                               expected=expected, actual=weights_type)
  update_type = client_work.next.type_signature.result[1].member[0]
  if not model_update_aggregator.value_type.is_assignable_from(update_type):
    raise FederatedTypeError(name, "the aggregator does not accept the client work's updates.",
                             expected=model_update_aggregator.value_type, actual=update_type)

  @federated_computation
  @named("LearningProcess.initialize")
  def initialize():
    return fi.federated_zip(LearningAlgorithmState(
        global_model_weights=fi.federated_eval(initial_model_weights_fn, SERVER),
        distributor=model_weights_distributor.initialize(),
        client_work=client_work.initialize(),
        aggregator=model_update_aggregator.initialize(),
        finalizer=model_finalizer.initialize()))

  state_type = initialize.type_signature.result

  @federated_computation(state_type, client_work.next.type_signature.parameter[2])
  @named("LearningProcess.next")
  def next_fn(state, client_data):
    distributed = model_weights_distributor.next(state.distributor, state.global_model_weights)
    work = client_work.next(state.client_work, distributed.result, client_data)
    results = work.result
    if model_update_aggregator.is_weighted:
      aggregated = model_update_aggregator.next(state.aggregator, results.update,
                                                results.update_weight)
    else:
      aggregated = model_update_aggregator.next(state.aggregator, results.update)
    finalized = model_finalizer.next(state.finalizer, state.global_model_weights,
                                     aggregated.result)
    new_state = fi.federated_zip(LearningAlgorithmState(
        global_model_weights=finalized.result, distributor=distributed.state,
        client_work=work.state, aggregator=aggregated.state, finalizer=finalized.state))
    metrics = fi.federated_zip(collections.OrderedDict(
        distributor=distributed.measurements, client_work=work.measurements,
        aggregator=aggregated.measurements, finalizer=finalized.measurements))
    return LearningProcessOutput(state=new_state, metrics=metrics)

  return LearningProcess(initialize, next_fn, *model_weights_accessors(state_type.member))


def model_weights_accessors(state_type: t.Type) -> tuple[Computation, Computation]:
  """`get_model_weights: (S -> W)` and `set_model_weights: (<S, W> -> S)` for a state struct."""
  weights_type = state_type[0]

  @computation(state_type)
  def get_model_weights(state):
    return state.global_model_weights

  @computation(state_type, weights_type)
  def set_model_weights(state, model_weights):
    return state._replace(global_model_weights=model_weights)

  return get_model_weights, set_model_weights
