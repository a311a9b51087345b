"""`DeterministicDiscretizationFactory`: float values rounded to a grid of int32 levels for an
inner aggregation, scaled back at the server."""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp

from federax.core import types as t
from federax.aggregators import _compression_utils as cu
from federax.aggregators._discretization import discretization_process
from federax.aggregators.factory import (AggregationFactory, AggregationProcess,
                                         UnweightedAggregationFactory)


class DeterministicDiscretizationFactory(UnweightedAggregationFactory):
  """Rounds each client value to the nearest level `k * step_size` for the inner factory.

  TFF's factory. Each float tensor becomes the int32 levels `round(float32(x) / step_size)`
  (half to even, as `tf.round`); the inner factory aggregates these (in the value's
  structure), and the server returns `float32(total) * step_size` cast to each tensor's
  dtype. Rounding to the nearest level is biased and does not bound the norm's growth, so it
  is not meant for differential privacy (`StochasticDiscretizationFactory` is).

  The step size is read from the state every round (an outer aggregator may change it).
  State: `<step_size=float32,inner_agg_process=...>`; measurements
  `<deterministic_discretization=inner measurements[,distortion=...]>`, as TFF's.

  Args:
    inner_agg_factory: an unweighted factory aggregating the int32 levels.
    step_size: the distance between neighbouring levels (a positive number).
    distortion_aggregation_factory: if given, an unweighted factory aggregating each client's
      mean squared rounding error (over all its elements) into the `distortion` measurement.

  Example:
    >>> factory = fx.aggregators.DeterministicDiscretizationFactory(
    ...     fx.aggregators.SumFactory(), step_size=0.5)
    >>> process = factory.create(fx.TensorType(np.float32, [3]))
    >>> process.next(process.initialize(), [[0.2, 0.8, -1.3], [0.3, 1.0, 2.0]]).result
    array([0.5, 2. , 0.5], dtype=float32)
  """

  def __init__(self, inner_agg_factory: AggregationFactory, step_size: float,
               distortion_aggregation_factory: Optional[AggregationFactory] = None):
    name = type(self).__name__
    self._inner = cu.check_unweighted_inner(name, "inner_agg_factory", inner_agg_factory)
    self._step_size = cu.check_positive_number(name, "step_size", step_size)
    self._distortion = (None if distortion_aggregation_factory is None else
                        cu.check_unweighted_inner(name, "distortion_aggregation_factory",
                                                  distortion_aggregation_factory))

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    return discretization_process(
        type(self).__name__, "deterministic_discretization", self._inner, self._distortion,
        value_type, self._step_size, lambda scaled, *_: [jnp.round(s) for s in scaled])
