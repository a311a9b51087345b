"""Mime Lite (Karimireddy et al. 2021, "Breaking the centralized barrier for cross-device
federated learning", NeurIPS): clients step with the server's optimizer state, kept fixed."""

from __future__ import annotations

import collections
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from federax.aggregators import AggregationFactory, MeanFactory, UnweightedMeanFactory
from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type, type_of
from federax.learning import _local
from federax.learning._resolve import resolve_model, resolve_optimizer
from federax.learning._specs import KEY, abstract_value
from federax.learning._weighting import ClientWeighting
from federax.learning.algorithms._compose import compose_model_update_algorithm
from federax.learning.algorithms._gradient_client_work import gradient_accumulator
from federax.learning.metrics import sum_then_finalize
from federax.learning.optimizers import build_sgdm
from federax.learning.templates import (ClientResult, ClientWorkProcess, DistributionProcess,
                                        LearningProcess, _round_inputs)
from federax.templates.measured_process import MeasuredProcessOutput


def build_mime_lite_client_work(model, optimizer, client_weighting,
                                full_gradient_aggregator: AggregationFactory,
                                metrics_aggregator: Optional[Callable] = None,
                                weighted: bool = True) -> ClientWorkProcess:
  """Mime Lite's client work; its state is the base optimizer's state, updated at the server.

  Every client computes its full-batch gradient at the broadcast weights, then trains with
  `optimizer` whose state is the server's, never updated locally. The server aggregates the
  full gradients and advances its optimizer state with their mean.
  """
  metrics_aggregator = metrics_aggregator or sum_then_finalize
  weights_type = type_of(model.initial_weights)
  trainable_type = weights_type[0]
  batch_type = to_type(model.input_spec)
  round_state = _round_inputs.initial_round_state(False,
                                                  _round_inputs.model_uses_key(model, batch_type))
  advance = _round_inputs.advance_computation(round_state)
  gradient_mean = (full_gradient_aggregator.create(trainable_type, to_type(jnp.float32))
                   if weighted else full_gradient_aggregator.create(trainable_type))
  optimizer_init = computation()(lambda: optimizer.initialize(abstract_value(trainable_type)))
  optimizer_state_type = optimizer_init.type_signature.result

  def train_start(global_state, weights, key):
    return collections.OrderedDict(weights=weights, optimizer_state=global_state,
                                   metrics=model.initialize_metrics_state(),
                                   num_examples=_local.INITIAL_COUNT, key=key,
                                   **_local.loss_check(model.initialize_metrics_state()),
                                   **_local.carry_of(model))

  grad_acc_type = type_of(jax.eval_shape(lambda w, k: gradient_accumulator(model, w, k),
                                         abstract_value(weights_type), KEY))
  train_acc_type = type_of(jax.eval_shape(train_start, abstract_value(optimizer_state_type),
                                          abstract_value(weights_type), KEY))
  grad_begin = computation(weights_type, KEY)(lambda w, key: gradient_accumulator(model, w, key))
  add_batch = computation(grad_acc_type, batch_type, row_mask=model.row_mask(training=True))(
      lambda acc, batch: _local.add_batch_gradient(model, acc, batch, update_metrics=False))
  full_gradient = computation(grad_acc_type)(_local.mean_gradient)
  train_begin = computation(optimizer_state_type, weights_type, KEY)(
      lambda state, weights, key: train_start(state, weights, jax.random.fold_in(key, 1)))

  @computation(train_acc_type, batch_type, row_mask=model.row_mask(training=True))
  def train_on_batch(acc, batch):
    return _local.train_on_batch(model, optimizer, acc, batch, acc["weights"],
                                 optimizer_state=acc["optimizer_state"])

  initial_metrics = model.initialize_metrics_state()

  @computation(train_acc_type, weights_type, trainable_type)
  def finish(acc, initial, gradient):
    # A dropped client's full gradient is zeroed too: 0 * NaN would poison the weighted mean.
    weight = _local.client_weight(client_weighting, acc["num_examples"], acc["metrics"])
    delta, weight, metrics, gradient = _local.drop_if_non_finite(
        acc, _local.model_delta(acc, initial), weight, initial_metrics, also=gradient)
    return ClientResult(update=delta, update_weight=weight), metrics, gradient

  @federated_computation(optimizer_state_type, weights_type, t.SequenceType(batch_type), KEY)
  def client_update(global_state, weights, data, key):
    gradient = full_gradient(fi.sequence_reduce(data, grad_begin(weights, key), add_batch))
    trained = fi.sequence_reduce(data, train_begin(global_state, weights, key), train_on_batch)
    return finish(trained, weights, gradient)

  @computation(optimizer_state_type, trainable_type)
  def update_optimizer_state(state, mean_gradient):
    new_state, _ = optimizer.next(state, _local.zeros_like_tree(mean_gradient), mean_gradient)
    return new_state

  where = "build_weighted_mime_lite" if weighted else "build_unweighted_mime_lite"
  finalize, unfinalized = _local.with_non_finite_count(where, model.finalize_metrics,
                                                       initial_metrics)
  aggregate_metrics = metrics_aggregator(finalize, type_of(unfinalized))

  @federated_computation
  def initialize():
    return fi.federated_zip(collections.OrderedDict(
        optimizer_state=fi.federated_eval(optimizer_init, SERVER),
        full_gradient_aggregator=gradient_mean.initialize(),
        round_inputs=fi.federated_value(round_state, SERVER)))

  @federated_computation(initialize.type_signature.result, t.FederatedType(weights_type, CLIENTS),
                         t.FederatedType(t.SequenceType(batch_type), CLIENTS))
  def next_fn(state, weights, client_data):
    round_inputs, _, key = fi.federated_map(advance, state.round_inputs)
    results, metrics, gradients = fi.federated_map(
        client_update, (fi.federated_broadcast(state.optimizer_state), weights, client_data,
                        fi.federated_client_keys(key)))
    if weighted:
      gradient_out = gradient_mean.next(state.full_gradient_aggregator, gradients,
                                        results.update_weight)
    else:
      gradient_out = gradient_mean.next(state.full_gradient_aggregator, gradients)
    new_state = fi.federated_zip(collections.OrderedDict(
        optimizer_state=fi.federated_map(update_optimizer_state,
                                         (state.optimizer_state, gradient_out.result)),
        full_gradient_aggregator=gradient_out.state, round_inputs=round_inputs))
    measurements = fi.federated_zip(collections.OrderedDict(train=aggregate_metrics(metrics)))
    return MeasuredProcessOutput(state=new_state, result=results, measurements=measurements)

  return ClientWorkProcess(initialize, next_fn)


def build_weighted_mime_lite(
    model_fn: Any, base_optimizer: Any, server_optimizer: Any = None,
    client_weighting: Any = ClientWeighting.EXAMPLES,
    model_distributor: Optional[DistributionProcess] = None,
    model_aggregator: Optional[AggregationFactory] = None,
    full_gradient_aggregator: Optional[AggregationFactory] = None,
    metrics_aggregator: Optional[Callable] = None) -> LearningProcess:
  """Weighted Mime Lite: client updates and full gradients averaged with client weights.

  Args:
    model_fn: a `FunctionalModel` or a no-argument function returning one.
    base_optimizer: the optimizer whose state the server keeps and the clients use fixed
      (e.g. `build_sgdm(learning_rate=0.1, momentum=0.9)`).
    server_optimizer: applies the mean update at the server; default `build_sgdm(1.0)`.
    client_weighting: `ClientWeighting.EXAMPLES` (default), `UNIFORM`, or a function.
    model_distributor, model_aggregator, metrics_aggregator: as `build_weighted_fed_avg`.
    full_gradient_aggregator: a weighted factory for the full gradients; default `MeanFactory`.

  Returns:
    A `LearningProcess`.
  """
  where = "build_weighted_mime_lite"
  model = resolve_model(model_fn, where)
  optimizer = resolve_optimizer(base_optimizer, where, "base_optimizer")
  _local.check_weighting(where, client_weighting)
  client_work = build_mime_lite_client_work(model, optimizer, client_weighting,
                                            full_gradient_aggregator or MeanFactory(),
                                            metrics_aggregator, weighted=True)
  return compose_model_update_algorithm(where, model, client_work,
                                        server_optimizer or build_sgdm(learning_rate=1.0),
                                        model_distributor, model_aggregator, weighted=True)


def build_unweighted_mime_lite(
    model_fn: Any, base_optimizer: Any, server_optimizer: Any = None,
    model_distributor: Optional[DistributionProcess] = None,
    model_aggregator: Optional[AggregationFactory] = None,
    full_gradient_aggregator: Optional[AggregationFactory] = None,
    metrics_aggregator: Optional[Callable] = None) -> LearningProcess:
  """Unweighted Mime Lite: every client counts equally. Arguments as the weighted one, with
  unweighted factories (default `UnweightedMeanFactory`)."""
  where = "build_unweighted_mime_lite"
  model = resolve_model(model_fn, where)
  optimizer = resolve_optimizer(base_optimizer, where, "base_optimizer")
  client_work = build_mime_lite_client_work(model, optimizer, ClientWeighting.UNIFORM,
                                            full_gradient_aggregator or UnweightedMeanFactory(),
                                            metrics_aggregator, weighted=False)
  return compose_model_update_algorithm(where, model, client_work,
                                        server_optimizer or build_sgdm(learning_rate=1.0),
                                        model_distributor, model_aggregator, weighted=False)
