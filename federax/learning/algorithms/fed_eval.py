"""Federated evaluation: the global model's metrics on the clients' data, per round and overall."""

from __future__ import annotations

import collections
from typing import Any, Optional

import jax
import numpy as np

from federax.aggregators import MeanFactory
from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type, type_of
from federax.learning._resolve import resolve_model
from federax.learning.algorithms._compose import distributor_for, initial_weights_computation
from federax.learning.templates import (ClientResult, ClientWorkProcess, DistributionProcess,
                                        FinalizerProcess, LearningProcess,
                                        compose_learning_process)
from federax.templates.measured_process import MeasuredProcessOutput


def build_fed_eval(model_fn: Any,
                   model_distributor: Optional[DistributionProcess] = None) -> LearningProcess:
  """A `LearningProcess` that evaluates the global model on each round's clients.

  Clients run the model in inference mode (`training=False`) over their batches; their
  unfinalized metrics are summed and finalized at the server. Metrics are
  `client_work=<eval=<current_round_metrics=..., total_rounds_metrics=...>>`: this round's,
  and those of every example seen since `initialize` (the client work's state is TFF's
  `<<>, running sums>`). The global weights never change; set them with `set_model_weights`.
  As in TFF, the (empty) client updates go through a `MeanFactory` aggregator, so the state
  and measurements print as TFF's (`aggregator=<mean_value=<>,mean_weight=<>>`).

  Args:
    model_fn: a `FunctionalModel` or a no-argument function returning one.
    model_distributor: a `DistributionProcess`; default broadcast.

  Returns:
    A `LearningProcess` with TFF's structure.

  Example:
    >>> from federax.simulation.baselines import synthetic
    >>> model = synthetic.create_logistic_regression_model()
    >>> training = fx.learning.algorithms.build_weighted_fed_avg(
    ...     model, fx.learning.optimizers.build_sgdm(0.02))
    >>> train_state = training.initialize()
    >>> _, test = fx.simulation.datasets.synthetic.load_data(1.0, 1.0, num_clients=3, seed=0)
    >>> test_datasets = [test.create_dataset(c).masked_batch(10) for c in test.client_ids]
    >>> evaluation = fx.learning.algorithms.build_fed_eval(model)
    >>> state = evaluation.set_model_weights(evaluation.initialize(),
    ...                                      training.get_model_weights(train_state))
    >>> state, metrics = evaluation.next(state, test_datasets)
    >>> sorted(metrics['client_work']['eval']['current_round_metrics'])
    ['loss', 'num_batches', 'num_examples', 'sparse_categorical_accuracy']
  """
  where = "build_fed_eval"
  model = resolve_model(model_fn, where)
  weights_type = type_of(model.initial_weights)
  batch_type = to_type(model.input_spec)
  metrics_type = type_of(model.initialize_metrics_state())

  # A stateful model (a Keras stateful RNN) carries its state from batch to batch of a
  # client: the accumulator is then <metrics, carry>, the carry starting afresh per client.
  carry = getattr(model, "initial_carry", None)
  acc_type = (metrics_type if carry is None
              else t.StructType([metrics_type, type_of(carry)]))

  @computation(acc_type, batch_type, weights_type, row_mask=model.row_mask(training=False))
  def evaluate_batch(acc, batch, weights):
    if carry is None:
      return model.update_metrics_state(acc, batch, model.forward_pass(weights, batch, False))
    output = model.forward_pass(weights, batch, False, carry=acc[1])
    return model.update_metrics_state(acc[0], batch, output), output.carry

  initial_acc = computation()(
      model.initialize_metrics_state if carry is None
      else lambda: (model.initialize_metrics_state(), carry))
  metrics_of = None if carry is None else computation(acc_type)(lambda acc: acc[0])

  @federated_computation(weights_type, t.SequenceType(batch_type))
  def client_eval(weights, data):
    @federated_computation(acc_type, batch_type)
    def step(acc, batch):
      return evaluate_batch(acc, batch, weights)

    acc = fi.sequence_reduce(data, initial_acc(), step)
    return acc if metrics_of is None else metrics_of(acc)

  @computation(metrics_type)
  def no_update(metrics):
    return ClientResult(update=(), update_weight=jax.numpy.float32(0.0))

  # The state is TFF's (SumThenFinalizeFactory's): <the sum's state <>, the running sums>.
  @computation(t.StructType([t.StructType([]), metrics_type]), metrics_type)
  def add_and_finalize(state, current):
    new_total = jax.tree_util.tree_map(lambda a, b: a + b, state[1], current)
    return (state[0], new_total), collections.OrderedDict(
        current_round_metrics=model.finalize_metrics(current),
        total_rounds_metrics=model.finalize_metrics(new_total))

  @computation
  def initial_state():
    return (), model.initialize_metrics_state()

  @federated_computation
  def initialize():
    return fi.federated_eval(initial_state, SERVER)

  @federated_computation(initialize.type_signature.result, t.FederatedType(weights_type, CLIENTS),
                         t.FederatedType(t.SequenceType(batch_type), CLIENTS))
  def next_fn(state, weights, client_data):
    metrics = fi.federated_map(client_eval, (weights, client_data))
    new_state, report = fi.federated_map(add_and_finalize, (state, fi.federated_sum(metrics)))
    return MeasuredProcessOutput(
        state=new_state, result=fi.federated_map(no_update, metrics),
        measurements=fi.federated_zip(collections.OrderedDict(eval=report)))

  client_work = ClientWorkProcess(initialize, next_fn)
  return compose_learning_process(
      initial_weights_computation(model), distributor_for(where, model, model_distributor),
      client_work, MeanFactory().create(t.StructType([]), t.TensorType(np.float32)),
      _keep_weights_finalizer(weights_type))


def _keep_weights_finalizer(weights_type: t.Type) -> FinalizerProcess:
  @federated_computation
  def initialize():
    return fi.federated_value((), SERVER)

  @federated_computation(initialize.type_signature.result, t.FederatedType(weights_type, SERVER),
                         t.FederatedType(t.StructType([]), SERVER))
  def next_fn(state, weights, update):
    return MeasuredProcessOutput(state=state, result=weights,
                                 measurements=fi.federated_value((), SERVER))

  return FinalizerProcess(initialize, next_fn)
