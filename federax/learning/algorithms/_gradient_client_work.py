"""Client work that reports each client's mean gradient at the broadcast weights (FedSGD)."""

from __future__ import annotations

import collections
from typing import Callable, Optional

import jax
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.type_conversions import to_type, type_of
from federax.learning import _local
from federax.learning._specs import KEY, abstract_value
from federax.learning.metrics import sum_then_finalize
from federax.learning.templates import _round_inputs
from federax.learning.templates.client_works import ClientResult, ClientWorkProcess

def gradient_accumulator(model, weights, key):
  """The accumulator for `_local.add_batch_gradient`, from the weights and a key."""
  metrics = model.initialize_metrics_state()
  return collections.OrderedDict(
      weights=weights, metrics=metrics, num_examples=_local.INITIAL_COUNT, key=key,
      gradient_sum=_local.zeros_like_tree(weights.trainable), **_local.loss_check(metrics),
      **_local.carry_of(model))

def build_gradient_client_work(model, client_weighting,
                               metrics_aggregator: Optional[Callable] = None) -> ClientWorkProcess:
  """`ClientResult(update=mean gradient over the client's examples, weight)` per client.

  The gradient of each batch's mean loss is weighted by the batch's number of examples, so the
  update is the gradient of the mean loss over all the client's examples (Shokri and
  Shmatikov 2015; McMahan et al. 2017's FedSGD). A client whose loss, gradient or metrics are
  not finite is dropped and counted (`_local.drop_if_non_finite`).
  """
  metrics_aggregator = metrics_aggregator or sum_then_finalize
  weights_type = type_of(model.initial_weights)
  batch_type = to_type(model.input_spec)
  round_state = _round_inputs.initial_round_state(False,
                                                  _round_inputs.model_uses_key(model, batch_type))
  acc_type = type_of(jax.eval_shape(lambda w, k: gradient_accumulator(model, w, k),
                                    abstract_value(weights_type), KEY))

  begin = computation(weights_type, KEY)(lambda weights, key:
                                         gradient_accumulator(model, weights, key))
  add_batch = computation(acc_type, batch_type, row_mask=model.row_mask(training=True))(
      lambda acc, batch: _local.add_batch_gradient(model, acc, batch))

  initial_metrics = model.initialize_metrics_state()

  @computation(acc_type)
  def finish(acc):
    weight = _local.client_weight(client_weighting, acc["num_examples"], acc["metrics"])
    gradient, weight, metrics, _ = _local.drop_if_non_finite(
        acc, _local.mean_gradient(acc), weight, initial_metrics)
    return ClientResult(update=gradient, update_weight=weight), metrics

  @federated_computation(weights_type, t.SequenceType(batch_type), np.int32, KEY)
  def client_update(weights, data, round_num, key):
    del round_num  # FedSGD has no schedule.
    return finish(fi.sequence_reduce(data, begin(weights, key), add_batch))

  finalize, unfinalized = _local.with_non_finite_count("build_fed_sgd", model.finalize_metrics,
                                                       initial_metrics)
  return _round_inputs.build_client_work(
      round_state, weights_type, batch_type, client_update,
      metrics_aggregator(finalize, type_of(unfinalized)))
