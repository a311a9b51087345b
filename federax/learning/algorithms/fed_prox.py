"""FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks", arXiv:1812.06127):
FedAvg whose clients add `mu/2 ||w - w0||^2` to their loss."""

from __future__ import annotations

from typing import Any, Callable, Optional

from federax.aggregators import AggregationFactory
from federax.learning._resolve import resolve_model
from federax.learning._weighting import ClientWeighting
from federax.learning.algorithms._compose import compose_model_update_algorithm
from federax.learning.optimizers import build_sgdm
from federax.learning.templates import (DistributionProcess, LearningProcess,
                                        build_model_delta_client_work)


def _check_strength(where: str, proximal_strength: Any) -> float:
  if not isinstance(proximal_strength, (int, float)) or not proximal_strength >= 0:
    raise ValueError(f"{where}: proximal_strength must be a number >= 0 (0 is FedAvg); got "
                     f"{proximal_strength!r}.")
  return float(proximal_strength)


def build_weighted_fed_prox(
    model_fn: Any, proximal_strength: float, client_optimizer_fn: Any,
    server_optimizer_fn: Any = None, client_weighting: Any = ClientWeighting.EXAMPLES,
    model_distributor: Optional[DistributionProcess] = None,
    model_aggregator: Optional[AggregationFactory] = None,
    metrics_aggregator: Optional[Callable] = None) -> LearningProcess:
  """Weighted FedProx: `build_weighted_fed_avg` with the proximal term of strength mu.

  Args:
    proximal_strength: mu >= 0; the client gradient gains `mu * (w - w0)`.
    Others: as `fx.learning.algorithms.build_weighted_fed_avg`.

  Example:
    >>> from federax.simulation.baselines import synthetic
    >>> process = fx.learning.algorithms.build_weighted_fed_prox(
    ...     synthetic.create_logistic_regression_model(), 0.01,
    ...     fx.learning.optimizers.build_sgdm(0.1))
  """
  where = "build_weighted_fed_prox"
  mu = _check_strength(where, proximal_strength)
  model = resolve_model(model_fn, where)
  client_work = build_model_delta_client_work(model, client_optimizer_fn, client_weighting,
                                              proximal_strength=mu,
                                              metrics_aggregator=metrics_aggregator)
  return compose_model_update_algorithm(where, model, client_work,
                                        server_optimizer_fn or build_sgdm(learning_rate=1.0),
                                        model_distributor, model_aggregator, weighted=True)


def build_unweighted_fed_prox(
    model_fn: Any, proximal_strength: float, client_optimizer_fn: Any,
    server_optimizer_fn: Any = None, model_distributor: Optional[DistributionProcess] = None,
    model_aggregator: Optional[AggregationFactory] = None,
    metrics_aggregator: Optional[Callable] = None) -> LearningProcess:
  """Unweighted FedProx: every client's update counts equally. Arguments as the weighted one."""
  where = "build_unweighted_fed_prox"
  mu = _check_strength(where, proximal_strength)
  model = resolve_model(model_fn, where)
  client_work = build_model_delta_client_work(model, client_optimizer_fn,
                                              ClientWeighting.UNIFORM, proximal_strength=mu,
                                              metrics_aggregator=metrics_aggregator)
  return compose_model_update_algorithm(where, model, client_work,
                                        server_optimizer_fn or build_sgdm(learning_rate=1.0),
                                        model_distributor, model_aggregator, weighted=False)
