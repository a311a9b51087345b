"""Federated Reconstruction (Singhal et al. 2021, arXiv:2102.03448): partially local learning.

Each round the server broadcasts the global weights; every client reconstructs its local
weights from their initial values with the global ones frozen, then trains the global weights
with its local ones frozen and returns the global delta. Local weights never leave a client:
the server's state, values and measurements hold global weights only.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Optional

import jax
import numpy as np

from federax.aggregators import AggregationFactory, MeanFactory
from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type, type_of
from federax.learning import _local
from federax.learning._resolve import resolve_optimizer
from federax.learning._specs import abstract_value
from federax.learning._weighting import ClientWeighting
from federax.learning.algorithms import _recon_local as rl
from federax.learning.algorithms._compose import distributor_for
from federax.learning.metrics import sum_then_finalize
from federax.learning.models._common import with_row_mask
from federax.learning.models._recon_split import as_split_fn
from federax.learning.models._reconstruction import ReconstructionModel
from federax.learning.optimizers import build_sgdm
from federax.learning.templates import (ClientResult, ClientWorkProcess, DistributionProcess,
                                        LearningProcess, build_apply_optimizer_finalizer,
                                        compose_learning_process)
from federax.templates.measured_process import MeasuredProcessOutput


def resolve_recon_model(model_fn: Any, where: str) -> ReconstructionModel:
  """A `ReconstructionModel` from itself or a no-argument function returning one."""
  model = model_fn
  if not isinstance(model, ReconstructionModel) and callable(model):
    model = model()
  if not isinstance(model, ReconstructionModel):
    raise error(TypeError, where, "model_fn must return a ReconstructionModel.",
                expected="a fx.learning.models.ReconstructionModel or a no-argument function "
                "returning one", actual=f"a {type(model).__name__}",
                hint="build it with ReconstructionModel.from_keras_model_and_layers(...) or "
                "ReconstructionModel(global_weights=..., local_weights=..., ...)")
  return model


def recon_client(model, split, data, global_weights, recon_step_comp, begin_recon, next_epoch,
                 acc_type, batch_type):
  """Inside a federated computation: the reconstruction folds; returns their accumulator."""
  acc = begin_recon()
  if jax.tree.leaves(model.local_weights.trainable):
    for _ in range(split.recon_epochs):
      acc = next_epoch(acc)

      @federated_computation(acc_type, batch_type)
      def step(acc, batch):
        return recon_step_comp(acc, batch, global_weights)

      acc = fi.sequence_reduce(data, acc, step)
  return acc


def reconstruction_pieces(model, loss, recon_optimizer, split, weights_type, batch_type):
  """The local computations of the reconstruction stage, shared by training and evaluation."""
  recon_parity, _ = rl.parities(split.split_dataset)
  start = lambda: rl.recon_start(model, recon_optimizer)
  begin_recon = computation()(start)
  acc_type = begin_recon.type_signature.result

  @computation(acc_type, batch_type, weights_type, row_mask=with_row_mask)
  def recon_step(acc, batch, global_weights):
    return rl.reconstruct_step(model, loss, recon_optimizer, acc, batch, global_weights,
                               split.recon_steps_max, recon_parity)

  return begin_recon, computation(acc_type)(rl.new_epoch), recon_step, acc_type


def build_fed_recon(
    model_fn: Any, *, loss_fn: Any, metrics_fn: Optional[Callable] = None,
    server_optimizer_fn: Any = build_sgdm(learning_rate=1.0),
    client_optimizer_fn: Any = build_sgdm(learning_rate=0.1),
    reconstruction_optimizer_fn: Any = build_sgdm(learning_rate=0.1),
    dataset_split_fn: Any = None, client_weighting: Any = None,
    model_distributor: Optional[DistributionProcess] = None,
    model_aggregator_factory: Optional[AggregationFactory] = None,
    metrics_aggregator: Optional[Callable] = None) -> LearningProcess:
  """Federated Reconstruction as a `LearningProcess` (TFF's `build_fed_recon`, its defaults).

  On each client: (1) reconstruction: the local trainable weights start from the model's
  initial local weights and take one `reconstruction_optimizer_fn` step per reconstruction
  batch, global weights frozen; (2) post-reconstruction: the global trainable weights take
  one `client_optimizer_fn` step per post-reconstruction batch, local weights frozen, and the
  client returns `initial - trained` global weights, weighted by its post-reconstruction
  examples. `dataset_split_fn` picks the batches of each stage (default: even batches
  reconstruct, odd ones train). Metrics are computed on post-reconstruction batches only.
  Both stages are `fx.sequence_reduce` folds, so a round is one array program over the cohort.

  Args:
    model_fn: a `ReconstructionModel` or a no-argument function returning one.
    loss_fn: a no-argument function returning a Keras loss (TFF's form), a Keras loss, or a
      function `(y_true, y_pred) -> per-example losses`.
    metrics_fn: a no-argument function returning a list of Keras metrics or
      `fx.learning.models.metrics.Metric`s; None for none.
    server_optimizer_fn: default `build_sgdm(1.0)`.
    client_optimizer_fn: post-reconstruction optimizer; default `build_sgdm(0.1)`.
    reconstruction_optimizer_fn: default `build_sgdm(0.1)`.
    dataset_split_fn: a `build_dataset_split_fn(...)`; default `split_dataset=True`.
    client_weighting: `ClientWeighting.EXAMPLES` (default, TFF's NUM_EXAMPLES), `UNIFORM`,
      or a function of the client's unfinalized metrics.
    model_distributor: default broadcast of the global weights.
    model_aggregator_factory: default `MeanFactory()`; an unweighted factory needs
      `client_weighting=UNIFORM` (TFF's rule).
    metrics_aggregator: default `fx.learning.metrics.sum_then_finalize`.

  Returns:
    A `LearningProcess` whose state holds the global weights only. Metrics:
    `<distributor=<>, client_work=<train=<...metrics_fn's metrics..., loss,
    num_non_finite_clients>>, aggregator=<mean_value=<>,mean_weight=<>>,
    finalizer=<update_non_finite>>`; 'loss' is the mean over post-reconstruction batches of
    the batch loss (TFF's `MeanMetricWrapper` of the loss).

  Raises:
    TypeError: if `model_fn`, `loss_fn`, a metric, an optimizer or `dataset_split_fn` is of
      the wrong kind.
    ValueError: for an unweighted aggregator with non-uniform weighting.

  Example:
    >>> import jax.numpy as jnp
    >>> def predict(g, l, x, training):
    ...   return jnp.sum(g.trainable[0][x[:, 0]] * l.trainable[0], axis=1, keepdims=True)
    >>> model = fx.learning.models.ReconstructionModel(
    ...     global_weights=([jnp.full((5, 2), 0.5)], []), local_weights=([jnp.ones((1, 2))], []),
    ...     predict_on_batch_fn=predict,
    ...     input_spec={'x': (np.int32, [None, 1]), 'y': (np.float32, [None, 1])})
    >>> process = fx.learning.algorithms.build_fed_recon(
    ...     model, loss_fn=lambda y, p: jnp.mean((y - p) ** 2, axis=-1))
    >>> batches = [{'x': np.array([[i % 5]]), 'y': np.array([[3.0]], np.float32)}
    ...            for i in range(4)]
    >>> state, metrics = process.next(process.initialize(), [batches, batches[:2]])
    >>> list(metrics['client_work']['train'])
    ['loss', 'num_non_finite_clients']
  """
  where = "build_fed_recon"
  model = resolve_recon_model(model_fn, where)
  loss = rl.per_example_loss(loss_fn, where)
  metric_ops = rl.MetricOps(rl.model_metrics(metrics_fn, where))
  server_optimizer = resolve_optimizer(server_optimizer_fn, where, "server_optimizer_fn")
  client_optimizer = resolve_optimizer(client_optimizer_fn, where, "client_optimizer_fn")
  recon_optimizer = resolve_optimizer(reconstruction_optimizer_fn, where,
                                      "reconstruction_optimizer_fn")
  split = as_split_fn(dataset_split_fn, where)
  client_weighting = ClientWeighting.EXAMPLES if client_weighting is None else client_weighting
  _local.check_weighting(where, client_weighting)
  factory = model_aggregator_factory or MeanFactory()
  if not isinstance(factory, AggregationFactory):
    raise error(TypeError, where, "model_aggregator_factory must be an aggregation factory.",
                expected="e.g. fx.aggregators.MeanFactory()", actual=repr(factory))
  if not factory.weighted and client_weighting is not ClientWeighting.UNIFORM:
    raise error(ValueError, where, "an unweighted aggregator needs uniform client weighting.",
                expected="client_weighting=fx.learning.ClientWeighting.UNIFORM",
                actual=f"{client_weighting} with {type(factory).__name__}")

  weights_type = type_of(model.global_weights)
  batch_type = to_type(model.input_spec)
  if isinstance(batch_type, t.SequenceType):
    batch_type = batch_type.element
  _, post_parity = rl.parities(split.split_dataset)
  begin_recon, next_epoch, recon_step, recon_type = reconstruction_pieces(
      model, loss, recon_optimizer, split, weights_type, batch_type)
  initial_metrics = metric_ops.initialize()

  def post_start(weights, recon):
    return collections.OrderedDict(
        weights=weights, local=recon["local"],
        optimizer_state=client_optimizer.initialize(weights.trainable),
        metrics=initial_metrics, num_examples=_local.INITIAL_COUNT,
        position=np.int32(0), steps=np.int32(0))

  post_type = type_of(jax.eval_shape(post_start, abstract_value(weights_type),
                                     abstract_value(recon_type)))
  begin_post = computation(weights_type, recon_type)(post_start)
  next_post_epoch = computation(post_type)(rl.new_epoch)

  @computation(post_type, batch_type, row_mask=with_row_mask)
  def post_step(acc, batch):
    return rl.train_step(model, loss, metric_ops, client_optimizer, acc, batch,
                         split.post_recon_steps_max, post_parity)

  @computation(post_type, weights_type)
  def finish(acc, initial):
    weight = _local.client_weight(client_weighting, acc["num_examples"], acc["metrics"])
    delta, weight, metrics, _ = _local.drop_if_non_finite(
        acc, _local.model_delta(acc, initial), weight, initial_metrics)
    return ClientResult(update=delta, update_weight=weight), metrics

  @federated_computation(weights_type, t.SequenceType(batch_type))
  def client_update(weights, data):
    recon = recon_client(model, split, data, weights, recon_step, begin_recon, next_epoch,
                         recon_type, batch_type)
    acc = begin_post(weights, recon)
    for _ in range(split.post_recon_epochs):
      acc = next_post_epoch(acc)
      acc = fi.sequence_reduce(data, acc, post_step)
    return finish(acc, weights)

  finalize, unfinalized = _local.with_non_finite_count(where, metric_ops.finalize,
                                                       initial_metrics)
  aggregate_metrics = (metrics_aggregator or sum_then_finalize)(finalize, type_of(unfinalized))

  @federated_computation
  def initialize():
    return fi.federated_value((), SERVER)

  @federated_computation(initialize.type_signature.result,
                         t.FederatedType(weights_type, CLIENTS),
                         t.FederatedType(t.SequenceType(batch_type), CLIENTS))
  def next_fn(state, weights, client_data):
    results, metrics = fi.federated_map(client_update, (weights, client_data))
    measurements = fi.federated_zip(collections.OrderedDict(train=aggregate_metrics(metrics)))
    return MeasuredProcessOutput(state=state, result=results, measurements=measurements)

  client_work = ClientWorkProcess(initialize, next_fn)
  update_type = weights_type[0]
  aggregator = (factory.create(update_type, t.TensorType(np.float32)) if factory.weighted
                else factory.create(update_type))
  return compose_learning_process(
      computation()(lambda: model.global_weights),
      distributor_for(where, _GlobalView(model), model_distributor), client_work, aggregator,
      build_apply_optimizer_finalizer(server_optimizer, weights_type))


class _GlobalView:
  """What `distributor_for` reads of a model: its (global) initial weights."""

  def __init__(self, model: ReconstructionModel):
    self.initial_weights = model.global_weights
