"""`ModularClippingSumFactory`: integer values wrapped into `[lower, upper)` before and after an
inner sum; with `modular_clip_by_value` and `estimate_wrapped_gaussian_stddev`."""

from __future__ import annotations

import collections
import math
import warnings
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error, user_stacklevel
from federax.core.placements import CLIENTS
from federax.templates._naming import named
from federax.templates.measured_process import MeasuredProcessOutput
from federax.aggregators import _compression_utils as cu
from federax.aggregators.factory import (AggregationFactory, AggregationProcess,
                                         UnweightedAggregationFactory)
from federax.aggregators.sum_factory import SumFactory

_INT32 = np.iinfo(np.int32)


class ModularClippingSumFactory(UnweightedAggregationFactory):
  """Wraps every integer element into `[clip_range_lower, clip_range_upper)`, sums, wraps again.

  TFF's factory: `v -> lower + (v - lower) mod (upper - lower)` elementwise at the clients,
  the inner factory aggregates (a sum by default), and the server wraps the total into the
  same range: a sum modulo `upper - lower` shifted to start at `lower`, what secure
  aggregation computes. The wrapping here is exact integer arithmetic (TFF's goes through
  float64); an inner sum that overflows int32 wraps modulo 2**32 first, as in TFF.

  State: the inner process's. Measurements `<modclip=inner measurements[,
  estimated_stddev=float32]>`, as TFF's.

  Args:
    clip_range_lower: the inclusive lower end, a Python int in int32's range.
    clip_range_upper: the exclusive upper end, larger than the lower, with
      `upper - lower <= 2**31 - 1`.
    inner_agg_factory: an unweighted factory for the wrapped values (default `SumFactory()`).
    estimate_stddev: if True, measure `estimated_stddev`: the standard deviation of the
      wrapped total's elements, estimated as that of a wrapped normal distribution
      (`estimate_wrapped_gaussian_stddev`); the value needs more than one element.

  Example (TFF's docstring):
    >>> process = fx.aggregators.ModularClippingSumFactory(-5, 10).create(
    ...     fx.TensorType(np.int32, [4]))
    >>> process.next(process.initialize(), [[20, 5, -15, 10]]).result
    array([ 5,  5,  0, -5], dtype=int32)
  """

  def __init__(self, clip_range_lower: int, clip_range_upper: int,
               inner_agg_factory: Optional[AggregationFactory] = None,
               estimate_stddev: bool = False):
    name = type(self).__name__
    lower = cu.check_int(name, "clip_range_lower", clip_range_lower, _INT32.min, _INT32.max)
    upper = cu.check_int(name, "clip_range_upper", clip_range_upper, _INT32.min, _INT32.max)
    if lower >= upper:
      raise error(ValueError, name, "clip_range_lower must be smaller than clip_range_upper.",
                  expected="lower < upper (the range [lower, upper) is not empty)",
                  actual=f"clip_range_lower={lower}, clip_range_upper={upper}")
    if upper - lower > _INT32.max:
      raise error(ValueError, name, "the range's width must fit in int32.",
                  expected=f"clip_range_upper - clip_range_lower <= {_INT32.max}",
                  actual=f"clip_range_lower={lower}, clip_range_upper={upper}")
    if not isinstance(estimate_stddev, bool):
      raise error(TypeError, name, "estimate_stddev must be a bool.", actual=repr(estimate_stddev))
    self._lower, self._upper = lower, upper
    self._inner = (SumFactory() if inner_agg_factory is None else
                   cu.check_unweighted_inner(name, "inner_agg_factory", inner_agg_factory))
    self._estimate_stddev = estimate_stddev

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    name = type(self).__name__
    leaf_types = cu.check_tensors(f"{name}.create", value_type, kinds="iu", what="integers",
                                  hint="modular clipping is for integer values (e.g. after "
                                  "fx.aggregators.StochasticDiscretizationFactory)")
    for ts in leaf_types:
      info = np.iinfo(ts.dtype)
      if self._lower < info.min or self._upper - 1 > info.max:
        raise error(TypeError, f"{name}.create", f"the range [{self._lower}, {self._upper}) "
                    f"does not fit in {ts.dtype}.", actual=f"value_type {value_type}",
                    hint="use an integer dtype that holds the range, e.g. int32")
    dim = sum(cu.num_elements(ts) for ts in leaf_types)
    if self._estimate_stddev and dim <= 1:
      raise error(ValueError, f"{name}.create", "estimating the stddev needs more than one "
                  "element.", actual=f"value_type {value_type} ({dim} element)")
    if self._estimate_stddev and dim <= 100:
      warnings.warn(f"{name}: value_type has only {dim} elements; the estimated standard "
                    "deviation may be noisy (set estimate_stddev=True for more than 100).",
                    stacklevel=user_stacklevel())
    lower, upper = self._lower, self._upper

    @computation(value_type)
    def clip(value):
      return cu.unflatten([modular_clip_by_value(x, lower, upper)
                           for x in cu.flatten(value, value_type)], value_type)

    @computation(value_type)
    def estimate(value):
      return estimate_wrapped_gaussian_stddev(cu.flatten(value, value_type), lower, upper)

    inner = self._inner.create(value_type)

    @federated_computation(inner.initialize.type_signature.result,
                           t.FederatedType(value_type, CLIENTS))
    @named(f"{name}.create(value_type).next")
    def next_fn(state, value):
      inner_out = inner.next(state, fi.federated_map(clip, value))
      result = fi.federated_map(clip, inner_out.result)
      measurements = collections.OrderedDict(modclip=inner_out.measurements)
      if self._estimate_stddev:
        measurements["estimated_stddev"] = fi.federated_map(estimate, result)
      return MeasuredProcessOutput(state=inner_out.state, result=result,
                                   measurements=fi.federated_zip(measurements))

    return AggregationProcess(inner.initialize, next_fn)


def modular_clip_by_value(x: Any, lower: int, upper: int) -> Any:
  """`lower + (x - lower) mod (upper - lower)` for an integer array, without overflow.

  Example:
    >>> from federax.aggregators.modular_clipping import modular_clip_by_value
    >>> modular_clip_by_value(jnp.array([20, 5, -15, 10]), -5, 10)
    Array([ 5,  5,  0, -5], dtype=int32)
  """
  dtype = x.dtype
  if dtype.itemsize < 4:  # The range's width may not fit in int8 or int16.
    x = x.astype(jnp.int32)
  width = upper - lower
  remainder, offset = jnp.mod(x, width), lower % width  # Both in [0, width).
  # `remainder - offset` taken mod width without leaving [0, width): no overflow (and no
  # unsigned wrap-around), and `lower + wrapped` lies in [lower, upper).
  wrapped = jnp.where(remainder >= offset, remainder - offset, remainder + (width - offset))
  return (lower + wrapped).astype(dtype)


def estimate_wrapped_gaussian_stddev(values: Any, clip_lower: int, clip_upper: int):
  """The standard deviation of `values` taken as a normal sample wrapped into the range.

  TFF's estimator (arXiv:1912.00131): each element `v` becomes the angle
  `2 pi v / (upper - lower)`; with `r` the length of the angles' mean unit vector, the
  stddev is `sqrt(-2 log r) / (2 pi) * (upper - lower)`. `values`: integer arrays, taken
  together.

  Example:
    >>> from federax.aggregators.modular_clipping import estimate_wrapped_gaussian_stddev
    >>> estimate_wrapped_gaussian_stddev([jnp.array([0, 0, 0])], -50, 50)
    Array(0., dtype=float32)
  """
  flat = jnp.concatenate([jnp.reshape(v, [-1]) for v in values])
  width = clip_upper - clip_lower
  # The statistic ignores a common shift: values taken from `lower` keep float32's precision.
  shifted = modular_clip_by_value(flat, clip_lower, clip_upper) - clip_lower
  angles = shifted.astype(jnp.float32) * jnp.float32(2 * math.pi / width)
  r = jnp.hypot(jnp.mean(jnp.cos(angles)), jnp.mean(jnp.sin(angles)))
  # log(1 / r), not -log(r): +0 for r = 1; r is at most 1 but for rounding.
  stddev = jnp.sqrt(2.0 * jnp.log(1.0 / jnp.minimum(r, 1.0)))
  return stddev / jnp.float32(2 * math.pi) * jnp.float32(width)
