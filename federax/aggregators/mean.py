"""`MeanFactory` and `UnweightedMeanFactory`: (weighted) means built on inner sum factories."""

from __future__ import annotations

import collections
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.errors import error
from federax.core.computations import computation, federated_computation
from federax.core.placements import CLIENTS
from federax.templates.measured_process import MeasuredProcessOutput
from federax.templates._naming import named
from federax.aggregators.factory import (AggregationFactory, AggregationProcess,
                                         UnweightedAggregationFactory,
                                         WeightedAggregationFactory, check_float_value,
                                         check_float_weight)
from federax.aggregators.sum_factory import SumFactory


class MeanFactory(UnweightedAggregationFactory, WeightedAggregationFactory):
  """The (weighted) mean of client values, with the sums delegated to inner factories.

  Weighted (`create(value_type, weight_type)`): `sum_i w_i v_i / sum_i w_i`; the weighted
  values are summed by `value_sum_factory` and the weights by `weight_sum_factory`.
  Unweighted (`create(value_type)`, a federax addition): `sum_i v_i / n`, as
  `UnweightedMeanFactory(value_sum_factory)` computes it. Weighted state is
  `<value_sum_process=..., weight_sum_process=...>` and measurements
  `<mean_value=..., mean_weight=...>`: the inner processes' own, as in TFF.

  Args:
    value_sum_factory: an unweighted factory summing `{V}@CLIENTS` (default `SumFactory()`);
      replace it to sum securely or with compression.
    weight_sum_factory: an unweighted factory summing the weights (default `SumFactory()`).
    no_nan_division: if True, a total weight of 0 gives a mean of 0 instead of NaN.

  Example:
    >>> mean = fx.aggregators.MeanFactory().create(fx.TensorType(np.float32),
    ...                                            fx.TensorType(np.float32))
    >>> float(mean.next(mean.initialize(), [1.0, 2.0, 4.0], [1.0, 1.0, 2.0]).result)
    2.75
  """

  weighted = True

  def __init__(self, value_sum_factory: Optional[AggregationFactory] = None,
               weight_sum_factory: Optional[AggregationFactory] = None,
               no_nan_division: bool = False):
    _check_inner("MeanFactory", value_sum_factory=value_sum_factory,
                 weight_sum_factory=weight_sum_factory)
    self._value_sum_factory = value_sum_factory or SumFactory()
    self._weight_sum_factory = weight_sum_factory or SumFactory()
    self._no_nan_division = bool(no_nan_division)

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    check_float_value(type(self).__name__, value_type)
    if weight_type is None:
      return _unweighted_mean(self._value_sum_factory.create(value_type),
                              SumFactory().create(t.TensorType(np.int32)), value_type,
                              self._no_nan_division, type(self).__name__)
    check_float_weight(type(self).__name__, weight_type)
    value_sum = self._value_sum_factory.create(value_type)
    weight_sum = self._weight_sum_factory.create(weight_type)
    divide = _divide(value_type, weight_type, self._no_nan_division)

    @computation(value_type, weight_type)
    def weigh(value, weight):
      return jax.tree_util.tree_map(lambda v: v * weight.astype(v.dtype), value)

    @federated_computation
    @named(f"{type(self).__name__}.create(value_type, weight_type).initialize")
    def initialize():
      return fi.federated_zip(collections.OrderedDict(
          value_sum_process=value_sum.initialize(), weight_sum_process=weight_sum.initialize()))

    @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS),
                           t.FederatedType(weight_type, CLIENTS))
    @named(f"{type(self).__name__}.create(value_type, weight_type).next")
    def next_fn(state, value, weight):
      value_out = value_sum.next(state["value_sum_process"],
                                 fi.federated_map(weigh, (value, weight)))
      weight_out = weight_sum.next(state["weight_sum_process"], weight)
      return MeasuredProcessOutput(
          state=fi.federated_zip(collections.OrderedDict(
              value_sum_process=value_out.state, weight_sum_process=weight_out.state)),
          result=fi.federated_map(divide, (value_out.result, weight_out.result)),
          measurements=fi.federated_zip(collections.OrderedDict(
              mean_value=value_out.measurements, mean_weight=weight_out.measurements)))

    return AggregationProcess(initialize, next_fn)


class UnweightedMeanFactory(UnweightedAggregationFactory):
  """The unweighted mean `sum_i v_i / n` (TFF's name); `MeanFactory().create(value_type)` alike.

  The values are summed by `value_sum_factory` and the client count (an int32 1 per client)
  by `count_sum_factory`. State is `<value_sum_state, count_sum_state>` and measurements
  `<mean_value=..., mean_count=...>`, the inner processes' own, as in TFF.

  Args:
    value_sum_factory: an unweighted factory summing the values (default `SumFactory()`).
    count_sum_factory: an unweighted factory summing the int32 counts (default `SumFactory()`);
      replace it to count securely.
    no_nan_division: if True, zero clients give a mean of 0 instead of NaN.

  Example:
    >>> mean = fx.aggregators.UnweightedMeanFactory().create(fx.TensorType(np.float32))
    >>> str(mean.next.type_signature.result)
    '<state=<<>,<>>@SERVER,result=float32@SERVER,measurements=<mean_value=<>,mean_count=<>>@SERVER>'
    >>> float(mean.next(mean.initialize(), [1.0, 2.0, 6.0]).result)
    3.0
  """

  def __init__(self, value_sum_factory: Optional[AggregationFactory] = None,
               count_sum_factory: Optional[AggregationFactory] = None,
               no_nan_division: bool = False):
    _check_inner("UnweightedMeanFactory", value_sum_factory=value_sum_factory,
                 count_sum_factory=count_sum_factory)
    self._value_sum_factory = value_sum_factory or SumFactory()
    self._count_sum_factory = count_sum_factory or SumFactory()
    self._no_nan_division = bool(no_nan_division)

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    check_float_value(type(self).__name__, value_type)
    return _unweighted_mean(self._value_sum_factory.create(value_type),
                            self._count_sum_factory.create(t.TensorType(np.int32)), value_type,
                            self._no_nan_division, type(self).__name__)


def _check_inner(factory: str, **inner: Optional[AggregationFactory]) -> None:
  for name, value in inner.items():
    if value is not None and not isinstance(value, AggregationFactory):
      raise error(TypeError, factory, f"{name} must be an aggregation factory.",
                  actual=repr(value), hint="e.g. fx.aggregators.SumFactory()")


def _unweighted_mean(value_sum: AggregationProcess, count_sum: AggregationProcess,
                     value_type: t.Type, no_nan_division: bool, factory: str
                     ) -> AggregationProcess:
  divide = _divide(value_type, count_sum.next.type_signature.result[1].member, no_nan_division)

  @federated_computation
  @named(f"{factory}.create(value_type).initialize")
  def initialize():
    return fi.federated_zip((value_sum.initialize(), count_sum.initialize()))

  @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS))
  @named(f"{factory}.create(value_type).next")
  def next_fn(state, value):
    value_out = value_sum.next(state[0], value)
    count_out = count_sum.next(state[1], fi.federated_value(np.int32(1), CLIENTS))
    return MeasuredProcessOutput(
        state=fi.federated_zip((value_out.state, count_out.state)),
        result=fi.federated_map(divide, (value_out.result, count_out.result)),
        measurements=fi.federated_zip(collections.OrderedDict(
            mean_value=value_out.measurements, mean_count=count_out.measurements)))

  return AggregationProcess(initialize, next_fn)


def _divide(value_type: t.Type, weight_type: t.Type, no_nan_division: bool):
  @computation(value_type, weight_type)
  def divide(total, weight):
    def leaf(v):
      w = weight.astype(v.dtype)
      if no_nan_division:
        return jnp.where(w == 0, jnp.zeros_like(v), v / jnp.where(w == 0, 1, w))
      return v / w
    return jax.tree_util.tree_map(leaf, total)

  return divide
