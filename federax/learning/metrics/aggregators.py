"""Metrics aggregators: federated computations from clients' unfinalized metrics to server values."""

from __future__ import annotations

from typing import Any, Callable

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import Computation, computation, federated_computation
from federax.core.placements import CLIENTS
from federax.core.type_conversions import to_type


def sum_then_finalize(metric_finalizers: Callable[[Any], Any],
                      local_unfinalized_metrics_type: Any) -> Computation:
  """Sums the clients' unfinalized metrics, then finalizes the sum at the server.

  Unfinalized metrics are sums (e.g. `[total, count]` for a mean), so the sum over clients is
  the unfinalized metric of all their examples together, and finalizing it gives the metric
  over the union (an example-weighted mean, not a mean of client means).

  Args:
    metric_finalizers: the model's `finalize_metrics`: unfinalized state -> finalized metrics.
    local_unfinalized_metrics_type: the type `U` of one client's unfinalized metrics.

  Returns:
    A federated computation `({U}@CLIENTS -> F@SERVER)`.

  Example:
    >>> from federax.simulation.baselines import synthetic
    >>> model = synthetic.create_logistic_regression_model()
    >>> aggregate = fx.learning.metrics.sum_then_finalize(
    ...     model.finalize_metrics, fx.type_of(model.initialize_metrics_state()))
  """
  if not callable(metric_finalizers):
    raise TypeError("sum_then_finalize: metric_finalizers must be a function from unfinalized "
                    f"to finalized metrics (e.g. model.finalize_metrics); got {metric_finalizers!r}.")
  unfinalized_type = to_type(local_unfinalized_metrics_type)
  if not t.is_numeric(unfinalized_type):
    raise TypeError("sum_then_finalize: unfinalized metrics must be numeric tensors (they are "
                    f"summed across clients); got {unfinalized_type}.")
  finalize = computation(unfinalized_type)(lambda state: metric_finalizers(state))

  @federated_computation(t.FederatedType(unfinalized_type, CLIENTS))
  def aggregate(unfinalized_metrics):
    return fi.federated_map(finalize, fi.federated_sum(unfinalized_metrics))

  return aggregate
