"""Federated Reconstruction evaluation: reconstruct each client's local weights, then measure."""

from __future__ import annotations

import collections
from typing import Any, Callable, Optional

import jax
import numpy as np

from federax.aggregators import MeanFactory
from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type, type_of
from federax.learning._resolve import resolve_optimizer
from federax.learning.algorithms import _recon_local as rl
from federax.learning.algorithms._compose import distributor_for
from federax.learning.algorithms.fed_eval import _keep_weights_finalizer
from federax.learning.algorithms.fed_recon import (_GlobalView, reconstruction_pieces,
                                                   recon_client, resolve_recon_model)
from federax.learning.models._common import with_row_mask
from federax.learning.models._recon_split import as_split_fn
from federax.learning.optimizers import build_sgdm
from federax.learning.templates import (ClientResult, ClientWorkProcess, DistributionProcess,
                                        LearningProcess, compose_learning_process)
from federax.templates.measured_process import MeasuredProcessOutput


def build_fed_recon_eval(
    model_fn: Any, *, loss_fn: Any, metrics_fn: Optional[Callable] = None,
    reconstruction_optimizer_fn: Any = build_sgdm(learning_rate=0.1),
    dataset_split_fn: Any = None,
    model_distributor: Optional[DistributionProcess] = None) -> LearningProcess:
  """Evaluates a `ReconstructionModel` (TFF's `build_fed_recon_eval`, its defaults).

  Each client reconstructs its local weights (global frozen; reconstruction batches of
  `dataset_split_fn`), then runs the model in inference mode on its evaluation batches (the
  post-reconstruction ones: by default the odd-indexed batches). The global weights never
  change; set them with `set_model_weights`.

  Args:
    model_fn, loss_fn, metrics_fn, reconstruction_optimizer_fn, dataset_split_fn,
      model_distributor: as `build_fed_recon`.

  Returns:
    A `LearningProcess`; metrics `client_work=<eval=<current_round_metrics=<...metrics_fn's
    metrics..., loss>, total_rounds_metrics=<...>>>`, as TFF's.

  Example:
    >>> import jax.numpy as jnp
    >>> def predict(g, l, x, training):
    ...   return jnp.sum(g.trainable[0][x[:, 0]] * l.trainable[0], axis=1, keepdims=True)
    >>> model = fx.learning.models.ReconstructionModel(
    ...     global_weights=([jnp.full((5, 2), 0.5)], []), local_weights=([jnp.ones((1, 2))], []),
    ...     predict_on_batch_fn=predict,
    ...     input_spec={'x': (np.int32, [None, 1]), 'y': (np.float32, [None, 1])})
    >>> evaluation = fx.learning.algorithms.build_fed_recon_eval(
    ...     model, loss_fn=lambda y, p: jnp.mean((y - p) ** 2, axis=-1))
    >>> batches = [{'x': np.array([[i]]), 'y': np.array([[1.0]], np.float32)} for i in range(4)]
    >>> _, metrics = evaluation.next(evaluation.initialize(), [batches])
    >>> list(metrics['client_work']['eval']['current_round_metrics'])
    ['loss']
  """
  where = "build_fed_recon_eval"
  model = resolve_recon_model(model_fn, where)
  loss = rl.per_example_loss(loss_fn, where)
  metric_ops = rl.MetricOps(rl.model_metrics(metrics_fn, where))
  recon_optimizer = resolve_optimizer(reconstruction_optimizer_fn, where,
                                      "reconstruction_optimizer_fn")
  split = as_split_fn(dataset_split_fn, where)
  weights_type = type_of(model.global_weights)
  batch_type = to_type(model.input_spec)
  if isinstance(batch_type, t.SequenceType):
    batch_type = batch_type.element
  _, eval_parity = rl.parities(split.split_dataset)
  begin_recon, next_epoch, recon_step, recon_type = reconstruction_pieces(
      model, loss, recon_optimizer, split, weights_type, batch_type)
  initial_metrics = metric_ops.initialize()
  metrics_type = type_of(initial_metrics)

  def eval_start(recon):
    return collections.OrderedDict(local=recon["local"], metrics=initial_metrics,
                                   position=np.int32(0), steps=np.int32(0))

  eval_type = type_of(jax.eval_shape(eval_start, jax.eval_shape(lambda: rl.recon_start(
      model, recon_optimizer))))
  begin_eval = computation(recon_type)(eval_start)
  next_eval_epoch = computation(eval_type)(rl.new_epoch)

  @computation(eval_type, batch_type, weights_type, row_mask=with_row_mask)
  def eval_step(acc, batch, global_weights):
    return rl.eval_step(model, loss, metric_ops, acc, batch, global_weights,
                        split.post_recon_steps_max, eval_parity)

  @computation(eval_type)
  def metrics_of(acc):
    return acc["metrics"]

  @federated_computation(weights_type, t.SequenceType(batch_type))
  def client_eval(weights, data):
    recon = recon_client(model, split, data, weights, recon_step, begin_recon, next_epoch,
                         recon_type, batch_type)
    acc = begin_eval(recon)
    for _ in range(split.post_recon_epochs):
      acc = next_eval_epoch(acc)

      @federated_computation(eval_type, batch_type)
      def step(acc, batch):
        return eval_step(acc, batch, weights)

      acc = fi.sequence_reduce(data, acc, step)
    return metrics_of(acc)

  @computation(metrics_type)
  def no_update(metrics):
    return ClientResult(update=(), update_weight=jax.numpy.float32(0.0))

  # TFF's SumThenFinalizeFactory state: <the sum's state <>, the running sums>.
  @computation(t.StructType([t.StructType([]), metrics_type]), metrics_type)
  def add_and_finalize(state, current):
    total = jax.tree.map(lambda a, b: a + b, state[1], current)
    return (state[0], total), collections.OrderedDict(
        current_round_metrics=metric_ops.finalize(current),
        total_rounds_metrics=metric_ops.finalize(total))

  @federated_computation
  def initialize():
    return fi.federated_eval(computation()(lambda: ((), metric_ops.initialize())), SERVER)

  @federated_computation(initialize.type_signature.result, t.FederatedType(weights_type, CLIENTS),
                         t.FederatedType(t.SequenceType(batch_type), CLIENTS))
  def next_fn(state, weights, client_data):
    metrics = fi.federated_map(client_eval, (weights, client_data))
    new_state, report = fi.federated_map(add_and_finalize, (state, fi.federated_sum(metrics)))
    return MeasuredProcessOutput(
        state=new_state, result=fi.federated_map(no_update, metrics),
        measurements=fi.federated_zip(collections.OrderedDict(eval=report)))

  return compose_learning_process(
      computation()(lambda: model.global_weights),
      distributor_for(where, _GlobalView(model), model_distributor),
      ClientWorkProcess(initialize, next_fn),
      MeanFactory().create(t.StructType([]), t.TensorType(np.float32)),
      _keep_weights_finalizer(weights_type))
