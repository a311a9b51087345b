"""Federated Averaging (McMahan et al. 2017, arXiv:1602.05629) and its generalization with
server and client optimizers (Reddi et al. 2021, "Adaptive Federated Optimization")."""

from __future__ import annotations

from typing import Any, Callable, Optional

from federax.aggregators import AggregationFactory
from federax.learning._resolve import resolve_model
from federax.learning._weighting import ClientWeighting
from federax.learning.algorithms._compose import compose_model_update_algorithm
from federax.learning.optimizers import build_sgdm
from federax.learning.templates import (DistributionProcess, LearningProcess,
                                        build_model_delta_client_work)


def build_weighted_fed_avg(
    model_fn: Any, client_optimizer_fn: Any, server_optimizer_fn: Any = None,
    client_weighting: Any = ClientWeighting.EXAMPLES,
    model_distributor: Optional[DistributionProcess] = None,
    model_aggregator: Optional[AggregationFactory] = None,
    metrics_aggregator: Optional[Callable] = None) -> LearningProcess:
  """FedAvg with client updates weighted by `client_weighting` (default: number of examples).

  Each round: broadcast the global weights; every client trains locally with
  `client_optimizer_fn` over its batches and returns `w0 - w`; the server averages the updates
  (weighted, by `model_aggregator`, default `MeanFactory`) and applies the average as a
  gradient with `server_optimizer_fn` (default SGD with learning rate 1.0: plain FedAvg).
  FedAvgM, FedAdam, FedYogi and FedAdagrad are this with another server optimizer.

  Args:
    model_fn: a `fx.learning.models.FunctionalModel`, or a no-argument function returning one.
    client_optimizer_fn: the client optimizer (e.g. `build_sgdm(learning_rate=0.02)`), an Optax
      transform, or a no-argument function returning either.
    server_optimizer_fn: the server optimizer; default `build_sgdm(learning_rate=1.0)`.
    client_weighting: `ClientWeighting.EXAMPLES`, `UNIFORM`, or a function of a client's
      unfinalized metrics returning its weight.
    model_distributor: a `DistributionProcess`; default broadcast.
    model_aggregator: a weighted aggregation factory; default `fx.aggregators.MeanFactory()`.
    metrics_aggregator: default `fx.learning.metrics.sum_then_finalize`.

  Returns:
    A `LearningProcess`; `next(state, client_data)` takes one dataset (or list of batches) per
    client, matching the model's `input_spec`, and returns `LearningProcessOutput(state,
    metrics)` with metrics `<distributor=<>, client_work=<train=<...model metrics...,
    num_non_finite_clients=int32>>, aggregator=<mean_value=<>,mean_weight=<>>,
    finalizer=<update_non_finite=int32>>`.

  Example:
    >>> from federax.simulation.baselines import synthetic
    >>> train, _ = fx.simulation.datasets.synthetic.load_data(1.0, 1.0, num_clients=3, seed=0)
    >>> client_datasets = [train.create_dataset(c).masked_batch(10) for c in train.client_ids]
    >>> sgdm = fx.learning.optimizers.build_sgdm
    >>> process = fx.learning.algorithms.build_weighted_fed_avg(
    ...     synthetic.create_logistic_regression_model(),
    ...     client_optimizer_fn=sgdm(learning_rate=0.02),
    ...     server_optimizer_fn=sgdm(learning_rate=1.0))
    >>> state = process.initialize()
    >>> state, metrics = process.next(state, client_datasets)
    >>> int(metrics['client_work']['train']['num_examples'])
    410
  """
  where = "build_weighted_fed_avg"
  model = resolve_model(model_fn, where)
  client_work = build_model_delta_client_work(model, client_optimizer_fn, client_weighting,
                                              metrics_aggregator=metrics_aggregator)
  return compose_model_update_algorithm(where, model, client_work,
                                        server_optimizer_fn or build_sgdm(learning_rate=1.0),
                                        model_distributor, model_aggregator, weighted=True)


def build_unweighted_fed_avg(
    model_fn: Any, client_optimizer_fn: Any, server_optimizer_fn: Any = None,
    model_distributor: Optional[DistributionProcess] = None,
    model_aggregator: Optional[AggregationFactory] = None,
    metrics_aggregator: Optional[Callable] = None) -> LearningProcess:
  """FedAvg with every client's update counting equally (default `UnweightedMeanFactory`).

  Arguments as `build_weighted_fed_avg`, without `client_weighting`; `model_aggregator` is an
  unweighted factory.
  """
  where = "build_unweighted_fed_avg"
  model = resolve_model(model_fn, where)
  client_work = build_model_delta_client_work(model, client_optimizer_fn,
                                              ClientWeighting.UNIFORM,
                                              metrics_aggregator=metrics_aggregator)
  return compose_model_update_algorithm(where, model, client_work,
                                        server_optimizer_fn or build_sgdm(learning_rate=1.0),
                                        model_distributor, model_aggregator, weighted=False)


def build_weighted_fed_avg_with_optimizer_schedule(
    model_fn: Any, client_learning_rate_fn: Callable[[Any], Any],
    client_optimizer_fn: Callable[[float], Any], server_optimizer_fn: Any = None,
    model_distributor: Optional[DistributionProcess] = None,
    model_aggregator: Optional[AggregationFactory] = None,
    metrics_aggregator: Optional[Callable] = None) -> LearningProcess:
  """Weighted FedAvg whose client learning rate follows a schedule over rounds.

  Args:
    model_fn: as `build_weighted_fed_avg`.
    client_learning_rate_fn: `round_num -> learning rate`, round numbers from 0; written with
      `jax.numpy` operations (it runs inside the compiled round), e.g. an Optax schedule.
    client_optimizer_fn: `learning_rate -> optimizer` (TFF's form), e.g.
      `lambda lr: build_sgdm(learning_rate=lr)`.
    server_optimizer_fn, model_distributor, model_aggregator, metrics_aggregator: as
      `build_weighted_fed_avg`.

  Returns:
    A `LearningProcess`; its client work state counts rounds.

  Example:
    >>> from federax.simulation.baselines import synthetic
    >>> process = fx.learning.algorithms.build_weighted_fed_avg_with_optimizer_schedule(
    ...     synthetic.create_logistic_regression_model(), lambda round_num: 0.1 * 0.5 ** round_num,
    ...     lambda lr: fx.learning.optimizers.build_sgdm(lr))
  """
  where = "build_weighted_fed_avg_with_optimizer_schedule"
  model = resolve_model(model_fn, where)
  if not callable(client_learning_rate_fn) or not callable(client_optimizer_fn):
    raise TypeError(f"{where}: client_learning_rate_fn (round -> rate) and client_optimizer_fn "
                    f"(rate -> optimizer) must be functions; got {client_learning_rate_fn!r} and "
                    f"{client_optimizer_fn!r}.")
  optimizer = client_optimizer_fn(float(client_learning_rate_fn(0)))
  client_work = build_model_delta_client_work(model, optimizer, ClientWeighting.EXAMPLES,
                                              metrics_aggregator=metrics_aggregator,
                                              learning_rate_fn=client_learning_rate_fn)
  return compose_model_update_algorithm(where, model, client_work,
                                        server_optimizer_fn or build_sgdm(learning_rate=1.0),
                                        model_distributor, model_aggregator, weighted=True)
