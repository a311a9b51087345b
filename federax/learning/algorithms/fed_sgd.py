"""Federated SGD (McMahan et al. 2017, arXiv:1602.05629): one server step per round on the
example-weighted mean of the clients' gradients."""

from __future__ import annotations

from typing import Any, Callable, Optional

from federax.aggregators import AggregationFactory
from federax.learning._resolve import resolve_model
from federax.learning._weighting import ClientWeighting
from federax.learning import _local
from federax.learning.algorithms._compose import compose_model_update_algorithm
from federax.learning.algorithms._gradient_client_work import build_gradient_client_work
from federax.learning.optimizers import build_sgdm
from federax.learning.templates import DistributionProcess, LearningProcess


def build_fed_sgd(model_fn: Any, server_optimizer_fn: Any = None,
                  client_weighting: Any = ClientWeighting.EXAMPLES,
                  model_distributor: Optional[DistributionProcess] = None,
                  model_aggregator: Optional[AggregationFactory] = None,
                  metrics_aggregator: Optional[Callable] = None) -> LearningProcess:
  """FedSGD: clients compute the gradient of their mean loss at the global weights, the server
  averages the gradients and takes one `server_optimizer_fn` step.

  With one client this is exactly one centralized gradient step on that client's data.

  Args:
    model_fn: a `FunctionalModel` or a no-argument function returning one.
    server_optimizer_fn: default `build_sgdm(learning_rate=0.1)` (TFF's default).
    client_weighting: `ClientWeighting.EXAMPLES` (default), `UNIFORM`, or a function of the
      client's unfinalized metrics.
    model_distributor, model_aggregator, metrics_aggregator: as `build_weighted_fed_avg`.

  Returns:
    A `LearningProcess` with TFF's metrics structure.

  Example:
    >>> from federax.simulation.baselines import synthetic
    >>> process = fx.learning.algorithms.build_fed_sgd(
    ...     synthetic.create_logistic_regression_model(),
    ...     fx.learning.optimizers.build_sgdm(learning_rate=0.5))
  """
  where = "build_fed_sgd"
  model = resolve_model(model_fn, where)
  _local.check_weighting(where, client_weighting)
  client_work = build_gradient_client_work(model, client_weighting, metrics_aggregator)
  return compose_model_update_algorithm(where, model, client_work,
                                        server_optimizer_fn or build_sgdm(learning_rate=0.1),
                                        model_distributor, model_aggregator, weighted=True)
