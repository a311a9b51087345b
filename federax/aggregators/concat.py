"""`concat_factory`: aggregates a structure of tensors as one vector with an inner factory."""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS
from federax.templates._naming import named
from federax.templates.measured_process import MeasuredProcessOutput
from federax.aggregators import _compression_utils as cu
from federax.aggregators.factory import (AggregationFactory, AggregationProcess,
                                         UnweightedAggregationFactory,
                                         WeightedAggregationFactory)


def concat_factory(inner_agg_factory: AggregationFactory) -> AggregationFactory:
  """A factory that flattens and concatenates a value's tensors for `inner_agg_factory`.

  TFF's `concat_factory`: for a value `<float32[N],float32[P,Q]>` the inner factory
  aggregates `float32[N + P*Q]`, and its result is split and reshaped back into the value's
  structure. All tensors must have one dtype, integer or floating. State and measurements are
  the inner process's. The factory is weighted exactly when the inner one is (a federax
  weighted factory that also aggregates without weights, like `MeanFactory`, keeps both).

  Useful before an aggregation that must see a client's value as one vector (a rotation with
  padding, a norm bound over the whole value).

  Args:
    inner_agg_factory: the factory aggregating the concatenated vectors.

  Example:
    >>> factory = fx.aggregators.concat_factory(fx.aggregators.MeanFactory())
    >>> process = factory.create(fx.to_type([(np.float32, [2]), (np.float32, [])]),
    ...                          fx.TensorType(np.float32))
    >>> output = process.next(process.initialize(), [[[1., 2.], 3.], [[3., 4.], 5.]], [1., 3.])
    >>> print(*output.result)
    [2.5 3.5] 4.5
  """
  if not isinstance(inner_agg_factory, AggregationFactory):
    raise error(TypeError, "concat_factory", "inner_agg_factory must be an aggregation factory.",
                actual=repr(inner_agg_factory), hint="e.g. fx.aggregators.SumFactory()")
  if isinstance(inner_agg_factory, WeightedAggregationFactory) or inner_agg_factory.weighted:
    return WeightedConcatFactory(inner_agg_factory)
  return UnweightedConcatFactory(inner_agg_factory)


class UnweightedConcatFactory(UnweightedAggregationFactory):
  """`concat_factory` around an unweighted inner factory (TFF's class of that name)."""

  def __init__(self, inner_agg_factory: AggregationFactory):
    self._inner = inner_agg_factory

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    return _concat_process(self._inner, value_type, weight_type)


class WeightedConcatFactory(WeightedAggregationFactory):
  """`concat_factory` around a weighted inner factory (TFF's class of that name)."""

  def __init__(self, inner_agg_factory: AggregationFactory):
    self._inner = inner_agg_factory

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    return _concat_process(self._inner, value_type, weight_type)


def _concat_process(inner_factory: AggregationFactory, value_type: t.Type,
                    weight_type: Optional[t.Type]) -> AggregationProcess:
  op = "concat_factory(...).create"
  leaf_types = cu.check_tensors(op, value_type, kinds="iuf", what="integers or floats")
  dtypes = sorted({str(ts.dtype) for ts in leaf_types})
  if len(dtypes) > 1:
    raise error(TypeError, op, "the tensors must all have one dtype.",
                expected="one dtype, e.g. all float32", actual=f"value_type {value_type} "
                f"(dtypes {', '.join(dtypes)})", hint="cast them to one dtype first")

  @computation(value_type)
  def concat(value):
    return jnp.concatenate([jnp.reshape(x, [-1]) for x in cu.flatten(value, value_type)])

  @computation(concat.type_signature.result)
  def unconcat(vector):
    pieces, start = [], 0
    for ts in leaf_types:
      n = cu.num_elements(ts)
      pieces.append(jnp.reshape(vector[start:start + n], ts.shape))
      start += n
    return cu.unflatten(pieces, value_type)

  vector_type = concat.type_signature.result
  inner = (inner_factory.create(vector_type) if weight_type is None
           else inner_factory.create(vector_type, weight_type))
  suffix = "value_type" if weight_type is None else "value_type, weight_type"

  def body(state, value, *weight):
    inner_out = inner.next(state, fi.federated_map(concat, value), *weight)
    return MeasuredProcessOutput(state=inner_out.state,
                                 result=fi.federated_map(unconcat, inner_out.result),
                                 measurements=inner_out.measurements)

  state_type = inner.initialize.type_signature.result
  if weight_type is None:
    @federated_computation(state_type, t.FederatedType(value_type, CLIENTS))
    @named(f"concat_factory(...).create({suffix}).next")
    def next_fn(state, value):
      return body(state, value)
  else:
    @federated_computation(state_type, t.FederatedType(value_type, CLIENTS),
                           t.FederatedType(weight_type, CLIENTS))
    @named(f"concat_factory(...).create({suffix}).next")
    def next_fn(state, value, weight):
      return body(state, value, weight)

  return AggregationProcess(inner.initialize, next_fn)
