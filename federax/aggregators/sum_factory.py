"""`SumFactory`: the plain federated sum as an aggregation factory."""

from __future__ import annotations

from typing import Optional

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.errors import error
from federax.core.computations import federated_computation
from federax.core.placements import CLIENTS, SERVER
from federax.templates.measured_process import MeasuredProcessOutput
from federax.templates._naming import named
from federax.aggregators.factory import AggregationProcess, UnweightedAggregationFactory


class SumFactory(UnweightedAggregationFactory):
  """Sums client values: `{V}@CLIENTS -> V@SERVER`, with empty state and measurements.

  The innermost factory of most compositions (`MeanFactory` sums with it by default).

  Example:
    >>> process = fx.aggregators.SumFactory().create(fx.TensorType(np.int32, [2]))
    >>> process.next(process.initialize(), [[1, 2], [3, 4]]).result
    array([4, 6], dtype=int32)
  """

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    if not t.is_numeric(value_type):
      raise error(TypeError, f"{type(self).__name__}.create", "the values must be numeric tensors.",
                  actual=f"value_type {value_type}")

    @federated_computation
    @named(f"{type(self).__name__}.create(value_type).initialize")
    def initialize():
      return fi.federated_value((), SERVER)

    @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS))
    @named(f"{type(self).__name__}.create(value_type).next")
    def next_fn(state, value):
      return MeasuredProcessOutput(state=state, result=fi.federated_sum(value),
                                   measurements=fi.federated_value((), SERVER))

    return AggregationProcess(initialize, next_fn)
