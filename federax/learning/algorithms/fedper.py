"""FedPer (Arivazhagan et al. 2019, "Federated Learning with Personalization Layers",
arXiv:1912.00818): base layers learned by FedAvg, personalization layers kept on each client
(as its client state) and never sent to the server."""

from __future__ import annotations

import collections
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from federax.aggregators import AggregationFactory, MeanFactory
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
from federax.learning.metrics import sum_then_finalize
from federax.learning.optimizers import build_sgdm
from federax.learning.templates import (ClientResult, ClientStateLearningProcess,
                                        ClientStateLearningProcessOutput,
                                        build_apply_optimizer_finalizer)

_NAME = "build_fedper"


def build_fedper(
    model_fn: Any, client_optimizer_fn: Any, personal_layers: Sequence[int],
    server_optimizer_fn: Any = None, client_weighting: Any = ClientWeighting.EXAMPLES,
    model_aggregator: Optional[AggregationFactory] = None,
    metrics_aggregator: Optional[Callable] = None, seed: int = 0) -> ClientStateLearningProcess:
  """FedPer: FedAvg on the base layers; each client's personalization layers stay on it.

  The trainable weights' leaves (in `jax.tree_util.tree_leaves` order) split into the
  personalization leaves named by `personal_layers` and the base leaves. Each round the server
  broadcasts the base leaves only; a client joins them with its own personalization leaves
  (its client state; the model's initial values before its first round), trains the whole
  model over its batches with `client_optimizer_fn`, keeps the trained personalization leaves
  and returns the base leaves' delta only, aggregated (weighted) and applied by
  `server_optimizer_fn` as in FedAvg. No personalization value enters a server value: the
  server's model keeps those leaves at their initial values (a new client's start). A client
  whose update, loss or metrics are not finite counts nowhere and keeps its state.

  Args:
    model_fn: a `FunctionalModel` or a no-argument function returning one.
    client_optimizer_fn: the local optimizer (e.g. `build_sgdm(0.05)`).
    personal_layers: indices of the personalization leaves among the trainable leaves (e.g.
      the last dense layer's kernel and bias); at least one, and not all.
    server_optimizer_fn: default `build_sgdm(learning_rate=1.0)`.
    client_weighting: `ClientWeighting.EXAMPLES` (default), `UNIFORM`, or a function of the
      unfinalized metrics.
    model_aggregator: a weighted aggregation factory for the base delta; default
      `fx.aggregators.MeanFactory()`.
    metrics_aggregator: default `fx.learning.metrics.sum_then_finalize`.
    seed: seeds the PRNG key in the server state (for models with dropout).

  Returns:
    A `ClientStateLearningProcess` with client state `<personal_layers=[...leaves...]>`; run it
    with `fx.program.ClientStateProcess`. State `<global_model_weights, aggregator, finalizer,
    key>`; metrics `<client_work=<train=<...model metrics..., num_non_finite_clients>>,
    aggregator=..., finalizer=<update_non_finite>>`.

  Example:
    >>> from federax.simulation.baselines import synthetic
    >>> process = fx.learning.algorithms.build_fedper(
    ...     synthetic.create_logistic_regression_model(),
    ...     fx.learning.optimizers.build_sgdm(0.05), personal_layers=[1])  # the bias is local
    >>> print(process.client_state_type)
    <personal_layers=<float32[10]>>
  """
  model = resolve_model(model_fn, _NAME)
  optimizer = resolve_optimizer(client_optimizer_fn, _NAME, "client_optimizer_fn")
  _local.check_weighting(_NAME, client_weighting)
  metrics_aggregator = metrics_aggregator or sum_then_finalize
  leaves, treedef = jax.tree_util.tree_flatten(model.initial_weights.trainable)
  num_leaves = len(leaves)
  try:
    personal = sorted({int(i) for i in personal_layers})
  except (TypeError, ValueError):
    personal = None
  if not personal or any(i < 0 or i >= num_leaves for i in personal) or (
      len(personal) == num_leaves):
    raise error(ValueError, _NAME, "personal_layers must name some, not all, of the trainable "
                "leaves by index.", expected=f"indices in [0, {num_leaves}), at most "
                f"{num_leaves - 1} of them", actual=repr(personal_layers),
                hint="the leaves are jax.tree_util.tree_leaves(model.initial_weights.trainable)")
  base = [i for i in range(num_leaves) if i not in personal]

  def split(trainable):
    flat = jax.tree_util.tree_leaves(trainable)
    return [flat[i] for i in base], [flat[i] for i in personal]

  def join(base_leaves, personal_leaves):
    flat = [None] * num_leaves
    for i, x in zip(base, base_leaves):
      flat[i] = x
    for i, x in zip(personal, personal_leaves):
      flat[i] = x
    return jax.tree_util.tree_unflatten(treedef, flat)

  initial = jax.tree_util.tree_map(np.asarray, model.initial_weights)
  initial_base, initial_personal = split(initial.trainable)
  base_weights = initial._replace(trainable=initial_base)
  base_weights_type = type_of(base_weights)
  weights_type = type_of(initial)
  batch_type = to_type(model.input_spec)
  initial_metrics = model.initialize_metrics_state()
  finalizer = build_apply_optimizer_finalizer(server_optimizer_fn or build_sgdm(1.0),
                                              base_weights_type)
  factory = model_aggregator or MeanFactory()
  if not (isinstance(factory, AggregationFactory) and factory.weighted):
    raise error(TypeError, _NAME, "model_aggregator must be a weighted aggregation factory.",
                expected="e.g. fx.aggregators.MeanFactory()", actual=repr(model_aggregator))
  aggregator = factory.create(base_weights_type[0], t.TensorType(np.float32))

  initial_client_state = computation()(
      lambda: collections.OrderedDict(personal_layers=initial_personal))
  client_state_type = initial_client_state.type_signature.result

  def start(weights, key):
    return collections.OrderedDict(weights=weights,
                                   optimizer_state=optimizer.initialize(weights.trainable),
                                   metrics=initial_metrics, num_examples=_local.INITIAL_COUNT,
                                   key=key, **_local.loss_check(initial_metrics),
                                   **_local.carry_of(model))

  acc_type = type_of(jax.eval_shape(start, model.initial_weights, KEY))

  @computation(base_weights_type, client_state_type, KEY)
  def begin(base_w, client_state, key):
    full = base_w._replace(trainable=join(base_w.trainable, client_state["personal_layers"]))
    return start(full, key)

  @computation(acc_type, batch_type, row_mask=model.row_mask(training=True))
  def step(acc, batch):
    return _local.train_on_batch(model, optimizer, acc, batch, acc["weights"])

  @computation(acc_type, base_weights_type, client_state_type)
  def finish(acc, base_w, client_state):
    weight = _local.client_weight(client_weighting, acc["num_examples"], acc["metrics"])
    trained_base, trained_personal = split(acc["weights"].trainable)
    delta = jax.tree_util.tree_map(jnp.subtract, base_w.trainable, trained_base)
    delta, weight, metrics, kept = _local.drop_if_non_finite(
        acc, delta, weight, initial_metrics, also=trained_personal)
    keep = metrics[_local.NUM_NON_FINITE_CLIENTS] == 0
    new_personal = jax.tree_util.tree_map(lambda p, old: jnp.where(keep, p, old), kept,
                                          client_state["personal_layers"])
    return (ClientResult(update=delta, update_weight=weight), metrics,
            collections.OrderedDict(personal_layers=new_personal))

  @federated_computation(base_weights_type, t.SequenceType(batch_type), client_state_type, KEY)
  def client_update(base_w, data, client_state, key):
    trained = fi.sequence_reduce(data, begin(base_w, client_state, key), step)
    return finish(trained, base_w, client_state)

  finalize, unfinalized = _local.with_non_finite_count(_NAME, model.finalize_metrics,
                                                       initial_metrics)
  aggregate_metrics = metrics_aggregator(finalize, type_of(unfinalized))
  initial_key = host_key(seed)
  split_key = computation(KEY)(lambda key: tuple(jax.random.split(key)))
  initial_weights = computation()(lambda: initial)
  to_base = computation(weights_type)(lambda w: w._replace(trainable=split(w.trainable)[0]))

  @computation(weights_type, base_weights_type)
  def with_base(w, base_w):  # The personalization leaves keep their initial values.
    return base_w._replace(trainable=join(base_w.trainable, split(w.trainable)[1]))

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
    next_key, round_key = fi.federated_map(split_key, state.key)
    base_now = fi.federated_map(to_base, state.global_model_weights)
    results, metrics, new_client_states = fi.federated_map(
        client_update, (fi.federated_broadcast(base_now), client_data, client_states,
                        fi.federated_client_keys(round_key)))
    aggregated = aggregator.next(state.aggregator, results.update, results.update_weight)
    finalized = finalizer.next(state.finalizer, base_now, aggregated.result)
    new_state = fi.federated_zip(collections.OrderedDict(
        global_model_weights=fi.federated_map(with_base, (state.global_model_weights,
                                                          finalized.result)),
        aggregator=aggregated.state, finalizer=finalized.state, key=next_key))
    measurements = fi.federated_zip(collections.OrderedDict(
        client_work=fi.federated_zip(collections.OrderedDict(train=aggregate_metrics(metrics))),
        aggregator=aggregated.measurements, finalizer=finalized.measurements))
    return ClientStateLearningProcessOutput(state=new_state, metrics=measurements,
                                            client_states=new_client_states)

  return ClientStateLearningProcess(initialize, next_fn, initial_client_state,
                                    *_client_state.model_weights_accessors(state_type.member))
