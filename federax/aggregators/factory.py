"""The aggregation factory interface and `AggregationProcess`, TFF's templates for aggregators."""

from __future__ import annotations

import abc
from typing import Any, Optional

from federax.core import types as t
from federax.core.computations import Computation
from federax.core.errors import FederatedTypeError, error
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type
from federax.templates._checks import placed_at
from federax.templates.measured_process import MeasuredProcess


class AggregationProcess(MeasuredProcess):
  """A `MeasuredProcess` that reduces client values to a server value.

  `initialize: ( -> S@SERVER)`; `next: (<S@SERVER, {V}@CLIENTS[, {W}@CLIENTS]> ->
  <state=S@SERVER, result=R@SERVER, measurements=M@SERVER>)`. With the third parameter the
  process is weighted (`is_weighted`).

  Raises:
    FederatedTypeError: if the state is not at SERVER, the value (and weight) not at CLIENTS,
      or the result or measurements not at SERVER.

  Example:
    >>> process = fx.aggregators.MeanFactory().create(fx.TensorType(np.float32),
    ...                                               fx.TensorType(np.float32))
    >>> process.is_weighted
    True
    >>> output = process.next(process.initialize(), [1.0, 2.0, 4.0], [1.0, 1.0, 2.0])
    >>> float(output.result)
    2.75
  """

  def __init__(self, initialize_fn: Computation, next_fn: Computation):
    super().__init__(initialize_fn, next_fn)
    name = type(self).__name__
    placed_at(name, "the state", self.state_type, SERVER)
    parameter = next_fn.type_signature.parameter
    if not isinstance(parameter, t.StructType) or len(parameter) not in (2, 3):
      raise FederatedTypeError(name, "next_fn must take (state, value) or (state, value, weight).",
                               actual=next_fn.type_signature)
    placed_at(name, "the value", parameter[1], CLIENTS)
    if len(parameter) == 3:
      placed_at(name, "the weight", parameter[2], CLIENTS)
    result = next_fn.type_signature.result
    placed_at(name, "the result", result[1], SERVER)
    placed_at(name, "the measurements", result[2], SERVER)
    self._value_type = parameter[1].member
    self._weight_type = parameter[2].member if len(parameter) == 3 else None

  @property
  def is_weighted(self) -> bool:
    """Whether `next` takes a per-client weight."""
    return self._weight_type is not None

  @property
  def value_type(self) -> t.Type:
    """The type `V` of one client's value."""
    return self._value_type


class AggregationFactory(abc.ABC):
  """Makes `AggregationProcess`es for a value type: `create(value_type[, weight_type])`.

  One interface serves weighted and unweighted aggregation: a factory that supports weights
  returns a weighted process when given `weight_type`, an unweighted one otherwise. Factories
  compose: an outer factory (clipping, DP, compression) takes an inner one and calls its
  `create` with the type it hands on.
  """

  weighted: bool = False  # whether `create` accepts a weight type

  def create(self, value_type: Any, weight_type: Any = None) -> AggregationProcess:
    """Returns a process aggregating `{value_type}@CLIENTS` (weighted by `{weight_type}@CLIENTS`).

    Args:
      value_type: a federax type (or anything `fx.to_type` accepts) of one client's value.
      weight_type: the type of one client's weight; only for factories that support weights.

    Raises:
      TypeError: if a weight type is given to a factory without weighted aggregation, or the
        value type is one the factory cannot aggregate.
    """
    value_type = to_type(value_type)
    if weight_type is not None and not self.weighted:
      raise error(TypeError, f"{type(self).__name__}.create", "this factory does not take "
                  "weights.", actual=f"weight_type {to_type(weight_type)}",
                  hint="use fx.aggregators.MeanFactory for weighted aggregation")
    return self._create(value_type, None if weight_type is None else to_type(weight_type))

  @abc.abstractmethod
  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    """Builds the process; types are already converted and checked."""


# TFF's two interfaces, one class here: ported `isinstance` checks keep working.
UnweightedAggregationFactory = AggregationFactory
WeightedAggregationFactory = AggregationFactory


def check_float_value(factory: str, value_type: t.Type) -> None:
  """Raises TypeError unless every tensor in `value_type` is floating point."""
  if not t.has_dtype_kind(value_type, "f") or not t.is_numeric(value_type):
    raise error(TypeError, f"{factory}.create", "the values must be floating point.",
                expected="floating-point tensors", actual=f"value_type {value_type}",
                hint="cast integer values to a float dtype first (a mean of integers is not an "
                "integer)")
