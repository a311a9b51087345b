"""SCAFFOLD (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning", arXiv:1910.06378), Algorithm 1 with option II control variates."""

from __future__ import annotations

import collections
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type, type_of
from federax.learning import _local
from federax.learning._resolve import resolve_model
from federax.learning._specs import KEY, initial_key as host_key
from federax.learning.algorithms import _client_state
from federax.learning.metrics import sum_then_finalize
from federax.learning.optimizers import build_sgdm
from federax.learning.templates import (ClientStateLearningProcess,
                                        ClientStateLearningProcessOutput,
                                        build_apply_optimizer_finalizer)

_NAME = "build_scaffold"


def build_scaffold(
    model_fn: Any, client_learning_rate: float, server_optimizer_fn: Any = None,
    num_total_clients: Optional[int] = None,
    metrics_aggregator: Optional[Callable] = None, seed: int = 0) -> ClientStateLearningProcess:
  """SCAFFOLD: local SGD corrected by control variates that each client keeps across rounds.

  Each round the server sends the global weights `x` and its control variate `c`; client `i`
  (with its own control variate `c_i`, zeros before its first round) runs `K` steps of
  `y <- y - lr * (g_i(y) - c_i + c)` from `y = x`, one per batch of its data, then sets
  `c_i+ = c_i - c + (x - y) / (K * lr)` (option II) and returns `x - y` and `c_i+ - c_i`.
  The server applies the mean of `x - y` as a gradient with `server_optimizer_fn` (SGD with
  rate `eta_g` is the paper's `x <- x + eta_g * mean(y - x)`) and sets `c <- c + sum(c_i+ -
  c_i) / N` (`|S| / N` times the mean). A client whose update or metrics are not finite
  counts nowhere (`num_non_finite_clients`) and keeps its `c_i`.

  Args:
    model_fn: a `FunctionalModel` or a no-argument function returning one.
    client_learning_rate: the local SGD rate `lr` > 0 (option II divides by it).
    server_optimizer_fn: default `build_sgdm(learning_rate=1.0)` (`eta_g = 1`).
    num_total_clients: the population size `N`; None takes every round's cohort as the
      population (`c` moves by the cohort's mean).
    metrics_aggregator: default `fx.learning.metrics.sum_then_finalize`.
    seed: seeds the PRNG key in the server state (for models with dropout).

  Returns:
    A `ClientStateLearningProcess` with client state `<control_variate=trainable weights>`;
    run it with `fx.program.ClientStateProcess` (and `run_training_process`). State:
    `<global_model_weights, control_variate, finalizer, key>`; metrics:
    `<client_work=<train=<...model metrics..., num_non_finite_clients>>,
    finalizer=<update_non_finite>>`.

  Example:
    >>> from federax.simulation.baselines import synthetic
    >>> process = fx.learning.algorithms.build_scaffold(
    ...     synthetic.create_logistic_regression_model(), client_learning_rate=0.05)
    >>> runner = fx.program.ClientStateProcess(process)
    >>> train, _ = fx.simulation.datasets.synthetic.load_data(1.0, 1.0, num_clients=3, seed=0)
    >>> cohort = {c: train.create_dataset(c).masked_batch(10) for c in train.client_ids[:2]}
    >>> state, metrics = runner.next(runner.initialize(), cohort)
    >>> len(runner.client_state_store)
    2
  """
  model = resolve_model(model_fn, _NAME)
  if isinstance(client_learning_rate, bool) or not isinstance(
      client_learning_rate, (int, float)) or not client_learning_rate > 0:
    raise error(ValueError, _NAME, "client_learning_rate must be a number > 0.",
                actual=repr(client_learning_rate))
  if num_total_clients is not None and (
      isinstance(num_total_clients, bool) or not isinstance(num_total_clients, int)
      or num_total_clients < 1):
    raise error(ValueError, _NAME, "num_total_clients must be None or an int >= 1.",
                actual=repr(num_total_clients))
  lr = np.float32(client_learning_rate)
  metrics_aggregator = metrics_aggregator or sum_then_finalize
  weights_type = type_of(model.initial_weights)
  trainable_type = weights_type[0]
  batch_type = to_type(model.input_spec)
  initial_metrics = model.initialize_metrics_state()
  zeros = _local.zeros_like_tree(model.initial_weights.trainable)
  zeros = jax.tree_util.tree_map(np.asarray, zeros)
  finalizer = build_apply_optimizer_finalizer(server_optimizer_fn or build_sgdm(1.0),
                                              weights_type)

  initial_client_state = computation()(
      lambda: collections.OrderedDict(control_variate=zeros))
  client_state_type = initial_client_state.type_signature.result

  def start(weights, key):
    return collections.OrderedDict(weights=weights, metrics=initial_metrics,
                                   num_examples=_local.INITIAL_COUNT, num_steps=np.int32(0),
                                   key=key, **_local.loss_check(initial_metrics),
                                   **_local.carry_of(model))

  acc_type = type_of(jax.eval_shape(start, model.initial_weights, KEY))
  begin = computation(weights_type, KEY)(start)

  @computation(acc_type, batch_type, trainable_type, row_mask=model.row_mask(training=True))
  def step(acc, batch, correction):
    key, step_key = jax.random.split(acc["key"])
    weights = acc["weights"]
    grads, output = jax.grad(
        _local.loss_and_output(model, weights, batch, step_key, acc.get("carry")),
        has_aux=True)(weights.trainable)
    trainable = jax.tree_util.tree_map(lambda w, g, d: w - lr * (g + d), weights.trainable,
                                       grads, correction)
    non_trainable = (weights.non_trainable if output.non_trainable is None
                     else output.non_trainable)
    new = collections.OrderedDict(acc)
    new.update(weights=weights._replace(trainable=trainable, non_trainable=non_trainable),
               metrics=model.update_metrics_state(acc["metrics"], batch, output),
               num_examples=acc["num_examples"] + jnp.asarray(output.num_examples, jnp.int32),
               num_steps=acc["num_steps"] + 1, key=key)
    if "finite" in acc:
      new["finite"] = acc["finite"] & jnp.isfinite(output.loss)
    if "carry" in acc:
      new["carry"] = output.carry
    return new

  @computation(trainable_type, trainable_type)
  def correction_of(c, c_i):
    return jax.tree_util.tree_map(lambda a, b: b - a, c_i, c)  # c - c_i, added to g.

  @computation(acc_type, weights_type, trainable_type, client_state_type)
  def finish(acc, x, c, client_state):
    c_i = client_state["control_variate"]
    steps = acc["num_steps"]
    scale = jnp.where(steps > 0, 1.0 / (jnp.maximum(steps, 1).astype(jnp.float32) * lr), 0.0)
    delta_y = _local.model_delta(acc, x)  # x - y
    new_c_i = jax.tree_util.tree_map(
        lambda ci, cc, d: jnp.where(steps > 0, ci - cc + d * scale.astype(d.dtype), ci),
        c_i, c, delta_y)
    delta_c = jax.tree_util.tree_map(jnp.subtract, new_c_i, c_i)
    delta_y, weight, metrics, delta_c = _local.drop_if_non_finite(
        acc, delta_y, jnp.float32(1.0), initial_metrics, also=delta_c)
    new_c_i = jax.tree_util.tree_map(jnp.add, c_i, delta_c)  # Unchanged for a dropped client.
    weighted = jax.tree_util.tree_map(lambda u: u * weight.astype(u.dtype), (delta_y, delta_c))
    return (weighted, weight), metrics, collections.OrderedDict(control_variate=new_c_i)

  @federated_computation(weights_type, trainable_type, t.SequenceType(batch_type),
                         client_state_type, KEY)
  def client_update(x, c, data, client_state, key):
    correction = correction_of(c, client_state["control_variate"])

    @federated_computation(acc_type, batch_type)
    def reduce_step(acc, batch):
      return step(acc, batch, correction)

    return finish(fi.sequence_reduce(data, begin(x, key), reduce_step), x, c, client_state)

  finalize, unfinalized = _local.with_non_finite_count(_NAME, model.finalize_metrics,
                                                       initial_metrics)
  aggregate_metrics = metrics_aggregator(finalize, type_of(unfinalized))
  population = None if num_total_clients is None else np.float32(num_total_clients)

  @computation(trainable_type, type_of((zeros, zeros)), np.float32)
  def server_means(c, sums, total_weight):
    sum_y, sum_c = sums
    mean_y = jax.tree_util.tree_map(lambda s: s / jnp.maximum(total_weight, 1.0), sum_y)
    denominator = jnp.maximum(total_weight, 1.0) if population is None else population
    new_c = jax.tree_util.tree_map(lambda cc, s: cc + s / denominator, c, sum_c)
    return mean_y, new_c

  initial_weights = computation()(lambda: model.initial_weights)
  initial_key = host_key(seed)  # Outside any trace.

  @federated_computation
  def initialize():
    return fi.federated_zip(collections.OrderedDict(
        global_model_weights=fi.federated_eval(initial_weights, SERVER),
        control_variate=fi.federated_value(zeros, SERVER),
        finalizer=finalizer.initialize(),
        key=fi.federated_value(initial_key, SERVER)))

  state_type = initialize.type_signature.result
  split = computation(KEY)(lambda key: tuple(jax.random.split(key)))

  @federated_computation(state_type, t.FederatedType(t.SequenceType(batch_type), CLIENTS),
                         t.FederatedType(client_state_type, CLIENTS))
  def next_fn(state, client_data, client_states):
    next_key, round_key = fi.federated_map(split, state.key)
    x, c = state.global_model_weights, state.control_variate
    (updates, weights), metrics, new_client_states = fi.federated_map(
        client_update, (fi.federated_broadcast(x), fi.federated_broadcast(c), client_data,
                        client_states, fi.federated_client_keys(round_key)))
    mean_y, new_c = fi.federated_map(
        server_means, (c, fi.federated_sum(updates), fi.federated_sum(weights)))
    finalized = finalizer.next(state.finalizer, x, mean_y)
    new_state = fi.federated_zip(collections.OrderedDict(
        global_model_weights=finalized.result, control_variate=new_c,
        finalizer=finalized.state, key=next_key))
    measurements = fi.federated_zip(collections.OrderedDict(
        client_work=fi.federated_zip(collections.OrderedDict(train=aggregate_metrics(metrics))),
        finalizer=finalized.measurements))
    return ClientStateLearningProcessOutput(state=new_state, metrics=measurements,
                                            client_states=new_client_states)

  return ClientStateLearningProcess(initialize, next_fn, initial_client_state,
                                    *_client_state.model_weights_accessors(state_type.member))
