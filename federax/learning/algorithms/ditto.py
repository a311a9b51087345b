"""Ditto (Li et al. 2021, "Ditto: Fair and Robust Federated Learning Through Personalization",
arXiv:2012.04221), Algorithm 1: FedAvg for the global model, plus a personal model on every
client trained towards it with a proximal term, kept by the client across rounds."""

from __future__ import annotations

import collections
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.aggregators import AggregationFactory
from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type, type_of
from federax.learning import _local
from federax.learning._resolve import resolve_model, resolve_optimizer
from federax.learning._specs import KEY, initial_key as host_key
from federax.learning._weighting import ClientWeighting
from federax.learning.algorithms import _client_state
from federax.learning.algorithms._compose import aggregator_for
from federax.learning.metrics import sum_then_finalize
from federax.learning.optimizers import build_sgdm
from federax.learning.templates import (ClientResult, ClientStateLearningProcess,
                                        ClientStateLearningProcessOutput,
                                        build_apply_optimizer_finalizer)

_NAME = "build_ditto"


def build_ditto(
    model_fn: Any, client_optimizer_fn: Any, personal_optimizer_fn: Any = None,
    server_optimizer_fn: Any = None, ditto_lambda: float = 0.1,
    client_weighting: Any = ClientWeighting.EXAMPLES,
    model_aggregator: Optional[AggregationFactory] = None,
    metrics_aggregator: Optional[Callable] = None, seed: int = 0) -> ClientStateLearningProcess:
  """Ditto: a global model by FedAvg and a personal model `v_k` per client, kept across rounds.

  Each round every client in the cohort (1) trains the broadcast global weights `w` over its
  batches with `client_optimizer_fn` and returns `w - w_k` (weighted FedAvg, applied by
  `server_optimizer_fn`), and (2) trains its personal model `v_k` over the same batches with
  `personal_optimizer_fn` on `F_k(v) + lambda / 2 * ||v - w||^2` (gradient `g + lambda *
  (v - w)`, `w` the round's global weights) and keeps it. A client's personal model starts
  from the model's initial weights (`v_k^0 = w^0`). A client whose update, loss or metrics
  are not finite counts nowhere (`num_non_finite_clients`) and keeps its personal model.

  Args:
    model_fn: a `FunctionalModel` or a no-argument function returning one.
    client_optimizer_fn: the optimizer of the global model's local training.
    personal_optimizer_fn: the optimizer of the personal model; default the client one.
    server_optimizer_fn: default `build_sgdm(learning_rate=1.0)`.
    ditto_lambda: the proximal strength lambda >= 0 (0: purely local personal models).
    client_weighting: `ClientWeighting.EXAMPLES` (default) or `UNIFORM`, or a function of
      the unfinalized metrics.
    model_aggregator: a weighted aggregation factory; default `fx.aggregators.MeanFactory()`.
    metrics_aggregator: default `fx.learning.metrics.sum_then_finalize`.
    seed: seeds the PRNG key in the server state (for models with dropout).

  Returns:
    A `ClientStateLearningProcess` with client state `<personal_model=trainable weights>`;
    run it with `fx.program.ClientStateProcess`. Metrics: `<client_work=<train=<...global
    pass metrics..., num_non_finite_clients>, personal_train=<...personal pass metrics...>>,
    aggregator=<...>, finalizer=<update_non_finite>>`.

  Example:
    >>> from federax.simulation.baselines import synthetic
    >>> process = fx.learning.algorithms.build_ditto(
    ...     synthetic.create_logistic_regression_model(), fx.learning.optimizers.build_sgdm(0.05),
    ...     ditto_lambda=0.5)
    >>> print(process.client_state_type)
    <personal_model=<float32[60,10],float32[10]>>
  """
  model = resolve_model(model_fn, _NAME)
  optimizer = resolve_optimizer(client_optimizer_fn, _NAME, "client_optimizer_fn")
  personal_optimizer = (optimizer if personal_optimizer_fn is None else
                        resolve_optimizer(personal_optimizer_fn, _NAME, "personal_optimizer_fn"))
  if isinstance(ditto_lambda, bool) or not isinstance(ditto_lambda, (int, float)) or not (
      ditto_lambda >= 0):
    raise error(ValueError, _NAME, "ditto_lambda must be a number >= 0.",
                actual=repr(ditto_lambda))
  _local.check_weighting(_NAME, client_weighting)
  metrics_aggregator = metrics_aggregator or sum_then_finalize
  weights_type = type_of(model.initial_weights)
  trainable_type = weights_type[0]
  batch_type = to_type(model.input_spec)
  initial_metrics = model.initialize_metrics_state()
  initial_trainable = jax.tree_util.tree_map(np.asarray, model.initial_weights.trainable)
  finalizer = build_apply_optimizer_finalizer(server_optimizer_fn or build_sgdm(1.0),
                                              weights_type)
  aggregator = aggregator_for(_NAME, model, model_aggregator, weighted=True)

  initial_client_state = computation()(
      lambda: collections.OrderedDict(personal_model=initial_trainable))
  client_state_type = initial_client_state.type_signature.result

  def start(weights, key, personal):
    opt = personal_optimizer if personal else optimizer
    return collections.OrderedDict(weights=weights,
                                   optimizer_state=opt.initialize(weights.trainable),
                                   metrics=initial_metrics, num_examples=_local.INITIAL_COUNT,
                                   key=key, **_local.loss_check(initial_metrics),
                                   **_local.carry_of(model))

  acc_type = type_of(jax.eval_shape(lambda w, k: start(w, k, False), model.initial_weights, KEY))
  personal_acc_type = type_of(jax.eval_shape(lambda w, k: start(w, k, True),
                                             model.initial_weights, KEY))
  begin = computation(weights_type, KEY)(lambda w, k: start(w, k, False))

  @computation(weights_type, trainable_type, KEY)
  def begin_personal(weights, personal, key):
    return start(weights._replace(trainable=personal), jax.random.fold_in(key, 1), True)

  row_mask = model.row_mask(training=True)

  @computation(acc_type, batch_type, weights_type, row_mask=row_mask)
  def global_step(acc, batch, initial):
    return _local.train_on_batch(model, optimizer, acc, batch, initial)

  @computation(personal_acc_type, batch_type, weights_type, row_mask=row_mask)
  def personal_step(acc, batch, initial):
    return _local.train_on_batch(model, personal_optimizer, acc, batch, initial,
                                 proximal_strength=float(ditto_lambda))

  @computation(acc_type, personal_acc_type, weights_type, client_state_type)
  def finish(acc, personal_acc, initial, client_state):
    weight = _local.client_weight(client_weighting, acc["num_examples"], acc["metrics"])
    personal = personal_acc["weights"].trainable
    finite = _local.all_finite((personal, personal_acc["metrics"])) & personal_acc.get(
        "finite", True)
    delta, weight, metrics, _ = _local.drop_if_non_finite(
        acc, _local.model_delta(acc, initial), weight, initial_metrics)
    keep = finite & (metrics[_local.NUM_NON_FINITE_CLIENTS] == 0)
    new_personal = jax.tree_util.tree_map(lambda p, old: jnp.where(keep, p, old), personal,
                                          client_state["personal_model"])
    metrics[_local.NUM_NON_FINITE_CLIENTS] = jnp.where(keep, 0, 1).astype(jnp.int32)
    personal_metrics = jax.tree_util.tree_map(lambda m, m0: jnp.where(keep, m, m0),
                                              personal_acc["metrics"], initial_metrics)
    weight = jnp.where(keep, weight, jnp.float32(0.0))
    delta = jax.tree_util.tree_map(lambda u: jnp.where(keep, u, jnp.zeros_like(u)), delta)
    return (ClientResult(update=delta, update_weight=weight), metrics, personal_metrics,
            collections.OrderedDict(personal_model=new_personal))

  @federated_computation(weights_type, t.SequenceType(batch_type), client_state_type, KEY)
  def client_update(weights, data, client_state, key):
    @federated_computation(acc_type, batch_type)
    def reduce_global(acc, batch):
      return global_step(acc, batch, weights)

    @federated_computation(personal_acc_type, batch_type)
    def reduce_personal(acc, batch):
      return personal_step(acc, batch, weights)

    trained = fi.sequence_reduce(data, begin(weights, key), reduce_global)
    personal = fi.sequence_reduce(
        data, begin_personal(weights, client_state["personal_model"], key), reduce_personal)
    return finish(trained, personal, weights, client_state)

  finalize, unfinalized = _local.with_non_finite_count(_NAME, model.finalize_metrics,
                                                       initial_metrics)
  aggregate_metrics = metrics_aggregator(finalize, type_of(unfinalized))
  aggregate_personal = metrics_aggregator(model.finalize_metrics, type_of(initial_metrics))
  initial_weights = computation()(lambda: model.initial_weights)
  initial_key = host_key(seed)
  split = computation(KEY)(lambda key: tuple(jax.random.split(key)))

  @federated_computation
  def initialize():
    return fi.federated_zip(collections.OrderedDict(
        global_model_weights=fi.federated_eval(initial_weights, SERVER),
        aggregator=aggregator.initialize(), finalizer=finalizer.initialize(),
        key=fi.federated_value(initial_key, SERVER)))

  state_type = initialize.type_signature.result

  @federated_computation(state_type, t.FederatedType(t.SequenceType(batch_type), CLIENTS),
                         t.FederatedType(client_state_type, CLIENTS))
  def next_fn(state, client_data, client_states):
    next_key, round_key = fi.federated_map(split, state.key)
    weights = state.global_model_weights
    results, metrics, personal_metrics, new_client_states = fi.federated_map(
        client_update, (fi.federated_broadcast(weights), client_data, client_states,
                        fi.federated_client_keys(round_key)))
    aggregated = aggregator.next(state.aggregator, results.update, results.update_weight)
    finalized = finalizer.next(state.finalizer, weights, aggregated.result)
    new_state = fi.federated_zip(collections.OrderedDict(
        global_model_weights=finalized.result, aggregator=aggregated.state,
        finalizer=finalized.state, key=next_key))
    measurements = fi.federated_zip(collections.OrderedDict(
        client_work=fi.federated_zip(collections.OrderedDict(
            train=aggregate_metrics(metrics),
            personal_train=aggregate_personal(personal_metrics))),
        aggregator=aggregated.measurements, finalizer=finalized.measurements))
    return ClientStateLearningProcessOutput(state=new_state, metrics=measurements,
                                            client_states=new_client_states)

  return ClientStateLearningProcess(initialize, next_fn, initial_client_state,
                                    *_client_state.model_weights_accessors(state_type.member))
