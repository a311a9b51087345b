"""`build_model_delta_client_work`: local training on each client, reporting the model delta."""

from __future__ import annotations

import collections
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.type_conversions import to_type, type_of
from federax.learning import _local
from federax.learning._resolve import resolve_model, resolve_optimizer
from federax.learning._specs import KEY, abstract_value
from federax.learning._weighting import ClientWeighting
from federax.learning.metrics import sum_then_finalize
from federax.learning.templates import _round_inputs
from federax.learning.templates.client_works import ClientResult, ClientWorkProcess


def build_model_delta_client_work(
    model_fn: Any, optimizer_fn: Any,
    client_weighting: _local.Weighting = ClientWeighting.EXAMPLES,
    *, proximal_strength: float = 0.0, metrics_aggregator: Optional[Callable] = None,
    learning_rate_fn: Optional[Callable[[Any], Any]] = None) -> ClientWorkProcess:
  """Client work for FedAvg and its family: local optimizer steps over the client's batches.

  Each client starts from the broadcast weights `w0`, takes one optimizer step per batch of its
  data (in order) on the model's loss, plus `proximal_strength / 2 * ||w - w0||^2` (FedProx,
  Li et al. 2020) when that is positive, and returns `ClientResult(update=w0 - w, weight)`
  over the trainable weights. A client whose update, training loss or metrics hold a NaN or
  Inf is dropped: it returns zeros with weight 0 and its metrics are reset (TFF's rule
  for updates, widened: a label outside the model's classes gives a NaN loss but a finite
  update). The model's training metrics, computed during training as in TFF, plus
  `num_non_finite_clients` (the dropped clients; TFF's name), are aggregated by
  `metrics_aggregator` and reported as `<train=...>@SERVER`.

  Args:
    model_fn: a `FunctionalModel` or a no-argument function returning one.
    optimizer_fn: the client optimizer (`fx.learning.optimizers`, Optax, or a function
      returning either); its state starts afresh on every client every round.
    client_weighting: `ClientWeighting.EXAMPLES` (default), `UNIFORM`, or a function from the
      client's unfinalized metrics to a float32 weight.
    proximal_strength: FedProx's mu >= 0 (0 is FedAvg).
    metrics_aggregator: `(finalize_fn, unfinalized_type) -> federated computation`; default
      `fx.learning.metrics.sum_then_finalize`.
    learning_rate_fn: optional schedule `round_num -> learning rate` for the client optimizer
      (via its `learning_rate` hyperparameter); the state then counts rounds from 0.

  Returns:
    A `ClientWorkProcess` taking `{ModelWeights}@CLIENTS` and `{input_spec*}@CLIENTS`. Its
    state is `<>@SERVER`, plus `round_num` with a schedule and a PRNG `key` when the model's
    training pass uses randomness (dropout), so runs replay exactly from a seed.

  Example:
    >>> from federax.simulation.baselines import synthetic
    >>> client_work = fx.learning.templates.build_model_delta_client_work(
    ...     synthetic.create_logistic_regression_model(), fx.learning.optimizers.build_sgdm(0.02))
  """
  where = "build_model_delta_client_work"
  model = resolve_model(model_fn, where)
  optimizer = resolve_optimizer(optimizer_fn, where, "optimizer_fn")
  _local.check_weighting(where, client_weighting)
  if not proximal_strength >= 0:
    raise ValueError(f"{where}: proximal_strength must be >= 0; got {proximal_strength}.")
  metrics_aggregator = metrics_aggregator or sum_then_finalize

  weights_type = type_of(model.initial_weights)
  batch_type = to_type(model.input_spec)
  initial_metrics = model.initialize_metrics_state()
  if learning_rate_fn is not None:
    hparams = optimizer.get_hparams(optimizer.initialize(abstract_value(weights_type[0])))
    if "learning_rate" not in hparams:
      raise ValueError(f"{where}: learning_rate_fn needs an optimizer with a 'learning_rate' "
                       f"hyperparameter; this one has {sorted(hparams)}.")
  round_state = _round_inputs.initial_round_state(learning_rate_fn is not None,
                                                  _round_inputs.model_uses_key(model, batch_type))

  def start(weights, round_num, key):
    state = optimizer.initialize(weights.trainable)
    if learning_rate_fn is not None:
      hparams = dict(optimizer.get_hparams(state))
      dtype = jnp.asarray(hparams["learning_rate"]).dtype
      hparams["learning_rate"] = jnp.asarray(learning_rate_fn(round_num), dtype)
      state = optimizer.set_hparams(state, hparams)
    return collections.OrderedDict(weights=weights, optimizer_state=state,
                                   metrics=initial_metrics, num_examples=_local.INITIAL_COUNT,
                                   key=key, **_local.loss_check(initial_metrics),
                                   **_local.carry_of(model))

  acc_type = type_of(jax.eval_shape(start, abstract_value(weights_type), np.int32(0), KEY))
  begin = computation(weights_type, np.int32, KEY)(start)

  # A short last batch (batch(20)) arrives padded with a row mask, which the model honours.
  @computation(acc_type, batch_type, weights_type, row_mask=model.row_mask(training=True))
  def train_on_batch(acc, batch, initial):
    return _local.train_on_batch(model, optimizer, acc, batch, initial, proximal_strength)

  @computation(acc_type, weights_type)
  def finish(acc, initial):
    weight = _local.client_weight(client_weighting, acc["num_examples"], acc["metrics"])
    delta, weight, metrics, _ = _local.drop_if_non_finite(
        acc, _local.model_delta(acc, initial), weight, initial_metrics)
    return ClientResult(update=delta, update_weight=weight), metrics

  @federated_computation(weights_type, t.SequenceType(batch_type), np.int32, KEY)
  def client_update(weights, data, round_num, key):
    @federated_computation(acc_type, batch_type)
    def step(acc, batch):
      return train_on_batch(acc, batch, weights)

    return finish(fi.sequence_reduce(data, begin(weights, round_num, key), step), weights)

  finalize, unfinalized = _local.with_non_finite_count(where, model.finalize_metrics,
                                                       initial_metrics)
  return _round_inputs.build_client_work(
      round_state, weights_type, batch_type, client_update,
      metrics_aggregator(finalize, type_of(unfinalized)))
