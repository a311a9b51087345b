"""Assembles a model-update algorithm from its client work and the usual other three blocks."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from federax.aggregators import AggregationFactory, MeanFactory, UnweightedMeanFactory
from federax.core import types as t
from federax.core.computations import computation
from federax.core.type_conversions import type_of
from federax.learning.templates import (ClientWorkProcess, DistributionProcess, LearningProcess,
                                        build_apply_optimizer_finalizer, build_broadcast_process,
                                        compose_learning_process)

FLOAT32 = np.float32


def initial_weights_computation(model):
  """`( -> ModelWeights)`: the model's initial weights as a local computation."""
  weights = model.initial_weights
  return computation()(lambda: weights)


def distributor_for(where: str, model, model_distributor: Optional[DistributionProcess]):
  if model_distributor is None:
    return build_broadcast_process(type_of(model.initial_weights))
  if not isinstance(model_distributor, DistributionProcess):
    raise TypeError(f"{where}: model_distributor must be a "
                    f"fx.learning.templates.DistributionProcess; got {model_distributor!r}.")
  return model_distributor


def aggregator_for(where: str, model, model_aggregator: Optional[AggregationFactory],
                   weighted: bool):
  """The aggregation process for the trainable weights' updates (weighted by a float32)."""
  factory = model_aggregator or (MeanFactory() if weighted else UnweightedMeanFactory())
  if not isinstance(factory, AggregationFactory):
    raise TypeError(f"{where}: model_aggregator must be an aggregation factory (e.g. "
                    f"fx.aggregators.MeanFactory()); got {model_aggregator!r}.")
  update_type = type_of(model.initial_weights)[0]
  if weighted and not factory.weighted:
    # A factory that refuses weights for a reason (e.g. differential privacy) gives it.
    reason = getattr(factory, "_no_weights_hint", AggregationFactory._no_weights_hint)
    reason = "" if reason == AggregationFactory._no_weights_hint else f" ({reason})"
    raise TypeError(f"{where}: model_aggregator must support weights (client updates are "
                    f"weighted); {type(factory).__name__} does not{reason}. Use an unweighted "
                    "algorithm or a weighted factory such as fx.aggregators.MeanFactory().")
  # Types, as TFF passes them: a factory overriding `create` itself gets no conversion.
  weight_type = t.TensorType(FLOAT32)
  return factory.create(update_type, weight_type) if weighted else factory.create(update_type)


def compose_model_update_algorithm(where: str, model, client_work: ClientWorkProcess,
                                   server_optimizer_fn: Any,
                                   model_distributor: Optional[DistributionProcess],
                                   model_aggregator: Optional[AggregationFactory],
                                   weighted: bool) -> LearningProcess:
  """Broadcast, `client_work`, (weighted) mean of updates, server optimizer: a `LearningProcess`."""
  return compose_learning_process(
      initial_weights_computation(model), distributor_for(where, model, model_distributor),
      client_work, aggregator_for(where, model, model_aggregator, weighted),
      build_apply_optimizer_finalizer(server_optimizer_fn, type_of(model.initial_weights)))
