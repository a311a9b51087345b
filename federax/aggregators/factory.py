"""The aggregation factory interface: `create(value_type[, weight_type]) -> AggregationProcess`."""

from __future__ import annotations

import abc
from typing import Any, Optional

from federax.core import types as t
from federax.core.errors import error
from federax.core.type_conversions import to_type
from federax.core.computations import Computation, federated_computation
from federax.core.placements import CLIENTS
from federax.templates._naming import named
from federax.templates.aggregation_process import AggregationProcess


class AggregationFactory(abc.ABC):
  """Makes `AggregationProcess`es for a value type: `create(value_type[, weight_type])`.

  One interface serves weighted and unweighted aggregation: a factory that supports weights
  returns a weighted process when given `weight_type`, an unweighted one otherwise. Factories
  compose: an outer factory (clipping, DP, compression) takes an inner one and calls its
  `create` with the type it hands on.

  A federax factory implements `_create(value_type, weight_type)` and inherits `create`, which
  converts and checks the types. A factory written TFF's way subclasses
  `UnweightedAggregationFactory` or `WeightedAggregationFactory` and overrides `create` itself.
  """

  weighted: bool = False  # whether `create` accepts a weight type
  # What to do instead, when weights are given to a factory without weighted aggregation.
  _no_weights_hint: str = "use fx.aggregators.MeanFactory for weighted aggregation"

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    # TFF's spelling: `create` overridden and no `_create`. Then `create` is the factory's
    # only implementation, and `_create` (the abstract method) hands over to it.
    if (cls.create is not AggregationFactory.create
        and getattr(cls._create, "__isabstractmethod__", False)):
      cls._create = _create_by_create

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
                  hint=self._no_weights_hint)
    return self._create(value_type, None if weight_type is None else to_type(weight_type))

  @abc.abstractmethod
  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    """Builds the process; types are already converted and checked."""


def _create_by_create(self, value_type: t.Type, weight_type: Optional[t.Type]):
  """`_create` of a factory that overrides `create` (TFF's spelling)."""
  if weight_type is None:
    return self.create(value_type)
  return self.create(value_type, weight_type)


class UnweightedAggregationFactory(AggregationFactory):
  """TFF's base for factories whose processes take no weights: override `create(value_type)`.

  Example (TFF's custom_aggregators tutorial):
    >>> class ExampleTaskFactory(fx.aggregators.UnweightedAggregationFactory):
    ...   def create(self, value_type):
    ...     @fx.federated_computation()
    ...     def initialize_fn():
    ...       return fx.federated_value((), fx.SERVER)
    ...     @fx.federated_computation(initialize_fn.type_signature.result,
    ...                               fx.FederatedType(value_type, fx.CLIENTS))
    ...     def next_fn(state, value):
    ...       total = fx.federated_sum(value)
    ...       return fx.templates.MeasuredProcessOutput(state, total,
    ...                                                 fx.federated_value((), fx.SERVER))
    ...     return fx.templates.AggregationProcess(initialize_fn, next_fn)
    >>> process = ExampleTaskFactory().create(fx.TensorType(np.float32))
    >>> print(process.next(process.initialize(), [1.0, 2.0, 5.0]).result)
    8.0
  """

  weighted = False


class WeightedAggregationFactory(AggregationFactory):
  """TFF's base for factories whose processes take weights: override
  `create(value_type, weight_type)`; the process's `next` takes `(state, value, weight)`."""

  weighted = True


def check_float_value(factory: str, value_type: t.Type,
                      hint: str = "cast integer values to a float dtype first (a mean of "
                      "integers is not an integer)") -> None:
  """Raises TypeError unless every tensor in `value_type` is floating point."""
  if not t.has_dtype_kind(value_type, "f") or not t.is_numeric(value_type):
    raise error(TypeError, f"{factory}.create", "the values must be floating point.",
                expected="floating-point tensors", actual=f"value_type {value_type}", hint=hint)


def check_float_weight(factory: str, weight_type: t.Type) -> None:
  """Raises TypeError unless `weight_type` is a floating-point scalar."""
  if not (isinstance(weight_type, t.TensorType) and weight_type.shape == ()
          and weight_type.dtype.kind == "f"):
    raise error(TypeError, f"{factory}.create", "the weight must be a floating-point scalar.",
                expected="a floating-point scalar, e.g. float32",
                actual=f"weight_type {weight_type}")


def next_computation(where: str, state_type: t.Type, value_type: t.Type,
                     weight_type: Optional[t.Type], step) -> Computation:
  """A process's `next`, named `{where}.next`: `step(state, value[, weight])` declared on
  `(state_type, {value_type}@CLIENTS[, {weight_type}@CLIENTS])` (weighted iff `weight_type`)."""
  at_clients = t.FederatedType(value_type, CLIENTS)
  if weight_type is None:
    @federated_computation(state_type, at_clients)
    @named(f"{where}.next")
    def next_fn(state, value):
      return step(state, value)
  else:
    @federated_computation(state_type, at_clients, t.FederatedType(weight_type, CLIENTS))
    @named(f"{where}.next")
    def next_fn(state, value, weight):
      return step(state, value, weight)
  return next_fn
