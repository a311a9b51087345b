"""`clipping_factory` and `zeroing_factory`: bound each client's value by a norm before an inner
aggregation (TFF's robust aggregators)."""

from __future__ import annotations

import collections
import math
import numbers
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER
from federax.templates.estimation_process import EstimationProcess
from federax.templates.measured_process import MeasuredProcessOutput
from federax.templates._naming import named
from federax.aggregators.factory import (AggregationFactory, AggregationProcess,
                                         UnweightedAggregationFactory,
                                         WeightedAggregationFactory, next_computation)
from federax.aggregators import _deferred_bounds as db, _one_pass
from federax.aggregators.sum_factory import SumFactory

NORM_TYPE = t.TensorType(np.float32)  # TFF's NORM_TF_TYPE: norms and thresholds
COUNT_TYPE = t.TensorType(np.int32)  # TFF's COUNT_TF_TYPE: clipped / zeroed counts

Norm = Union[float, EstimationProcess]


def clipping_factory(clipping_norm: Norm, inner_agg_factory: AggregationFactory,
                     clipped_count_sum_factory: Optional[AggregationFactory] = None
                     ) -> AggregationFactory:
  """A factory projecting each client's value onto an L2 ball, then aggregating by an inner one.

  A client's value whose global L2 norm (over all its tensors) exceeds the norm is scaled by
  `norm / global_norm`; others pass unchanged. A fixed norm is a positive float; an adaptive
  one an `fx.templates.EstimationProcess`: `report(state)` is this round's norm and
  `next(state, {float32}@CLIENTS)` is fed every client's global L2 norm (before clipping),
  e.g. `fx.aggregators.PrivateQuantileEstimationProcess.no_noise(...)` to clip at a quantile.
  A client whose norm is NaN is not clipped (NaN > norm is false), as in TFF.

  State `<clipping_norm=<norm process state>,inner_agg=..,clipped_count_agg=..>`; measurements
  `<clipping=<inner measurements>,clipping_norm=float32,clipped_count=int32>` (TFF's names).
  The factory is weighted exactly when `inner_agg_factory` is.

  Args:
    clipping_norm: a positive float, or an `EstimationProcess` reporting a float32 norm.
    inner_agg_factory: the factory aggregating the clipped values.
    clipped_count_sum_factory: an unweighted factory summing the int32 clipped indicators
      (default `SumFactory()`).

  Raises:
    TypeError: a norm that is neither, a norm process of the wrong type, or an inner factory
      that is not a factory. ValueError: a norm that is not positive.

  Example:
    >>> factory = fx.aggregators.clipping_factory(1.0, fx.aggregators.SumFactory())
    >>> process = factory.create(fx.TensorType(np.float32, [2]))
    >>> output = process.next(process.initialize(), [[3.0, 4.0], [0.3, 0.4]])
    >>> output.result, int(output.measurements["clipped_count"])
    (array([0.90000004, 1.2       ], dtype=float32), 1)
  """
  name = "clipping_factory"
  return _robust_factory(name, "clipp", clipping_norm, "clipping_norm", inner_agg_factory,
                         clipped_count_sum_factory, "clipped_count_sum_factory", "clip", 2.0)


def zeroing_factory(zeroing_norm: Norm, inner_agg_factory: AggregationFactory,
                    norm_order: float = math.inf,
                    zeroed_count_sum_factory: Optional[AggregationFactory] = None
                    ) -> AggregationFactory:
  """A factory replacing by zeros each client's value whose norm exceeds a threshold.

  The norm of a client's value is its global L1, L2 or L-infinity norm over all its tensors
  (`norm_order` 1.0, 2.0 or `math.inf`). A zeroed client's weight is kept, so a zeroed mean is
  pulled toward zero (TFF's choice, the same weighted and unweighted). The threshold is fixed
  (a positive float) or adaptive (an `fx.templates.EstimationProcess` fed every client's norm
  of that order). A client whose norm is NaN is not zeroed (NaN > threshold is false): its NaN
  reaches the aggregate, as in TFF; a client with an infinite entry is zeroed.

  State `<zeroing_norm=..,inner_agg=..,zeroed_count_agg=..>`; measurements
  `<zeroing=<inner measurements>,zeroing_norm=float32,zeroed_count=int32>` (TFF's names).
  The factory is weighted exactly when `inner_agg_factory` is.

  Args:
    zeroing_norm: a positive float, or an `EstimationProcess` reporting a float32 threshold.
    inner_agg_factory: the factory aggregating the (possibly zeroed) values.
    norm_order: 1.0, 2.0 or `math.inf` (default).
    zeroed_count_sum_factory: an unweighted factory summing the int32 zeroed indicators.

  Raises:
    TypeError / ValueError: as `clipping_factory`; ValueError for another `norm_order`.

  Example:
    >>> factory = fx.aggregators.zeroing_factory(10.0, fx.aggregators.MeanFactory())
    >>> process = factory.create(fx.TensorType(np.float32), fx.TensorType(np.float32))
    >>> output = process.next(process.initialize(), [1.0, 100.0, 3.0], [1.0, 1.0, 2.0])
    >>> float(output.result), int(output.measurements["zeroed_count"])
    (1.75, 1)
  """
  name = "zeroing_factory"
  if (isinstance(norm_order, bool) or not isinstance(norm_order, numbers.Real)
      or not (norm_order in (1.0, 2.0) or math.isinf(norm_order) and norm_order > 0)):
    raise error(ValueError, name, "norm_order must be 1.0, 2.0 or math.inf.",
                expected="1.0, 2.0 or math.inf", actual=repr(norm_order))
  order = float(norm_order)
  return _robust_factory(name, "zero", zeroing_norm, "zeroing_norm", inner_agg_factory,
                         zeroed_count_sum_factory, "zeroed_count_sum_factory", "zero", order)


# --- The wrapper factory -------------------------------------------------------------------------


class _RobustFactory(AggregationFactory):
  """Bounds each client's value by the norm process's report, then aggregates.

  `kind` is "clip" (project onto the L2 ball) or "zero" (zero a value whose norm of `order`
  exceeds it). The bound is deferred (`_deferred_bounds`): the inner factory gets each value
  as given with a per-client bound when it takes one, the bounded values otherwise.
  """

  def __init__(self, name: str, prefix: str, norm_process: EstimationProcess,
               inner: AggregationFactory, count_sum: AggregationFactory, kind: str,
               order: float):
    self._name = name
    self._prefix = prefix
    self._norm_process = norm_process
    self._inner = inner
    self._count_sum = count_sum
    self._kind = kind
    self._order = order
    # Why weights are refused, when the inner factory refuses them for a reason (e.g. DP).
    self._no_weights_hint = inner._no_weights_hint

  def __repr__(self) -> str:
    return f"<{self._name}(..., {type(self._inner).__name__})>"

  def create(self, value_type: Any, weight_type: Any = None) -> AggregationProcess:
    if weight_type is not None and not self.weighted:
      # An inner factory that refuses weights for a reason (e.g. differential privacy) says so.
      hint = self._no_weights_hint
      if hint == AggregationFactory._no_weights_hint:
        hint = "wrap a weighted factory, e.g. fx.aggregators.MeanFactory()"
      raise error(TypeError, f"{self._name}(...).create", "the inner factory "
                  f"({type(self._inner).__name__}) takes no weights, so neither does this one.",
                  actual=f"weight_type {weight_type}", hint=hint)
    return super().create(value_type, weight_type)

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    deferred = self._deferred(value_type, weight_type, None)
    signature = "value_type, weight_type" if weight_type is not None else "value_type"
    next_fn = next_computation(
        f"{self._name}(...).create({signature})", deferred.initialize.type_signature.result,
        value_type, weight_type,
        lambda state, value, weight=None: deferred.step(state, value, None, weight))
    return AggregationProcess(deferred.initialize, next_fn)

  def _deferred_create(self, value_type: t.Type, weight_type: Optional[t.Type],
                       clips: bool) -> db.Deferred:
    return self._deferred(value_type, weight_type, clips)

  def _deferred(self, value_type: t.Type, weight_type: Optional[t.Type],
                incoming: Optional[bool]) -> db.Deferred:
    """This wrapper's aggregation of values bounded by an outer wrapper (`incoming`: None
    for none, else whether its bounds clip)."""
    if not t.has_dtype_kind(value_type, "f"):
      raise error(TypeError, f"{self._name}(...).create", "the values must be floating point "
                  "(their norms are bounded by scaling).", expected="floating-point tensors",
                  actual=f"value_type {value_type}", hint="cast the values to float32 first")
    weighted = weight_type is not None
    # Two clips in a row would divide twice: the outer one is applied first (x / d1 / d2 is
    # not x / (d1 d2) to the last bit).
    materialize = incoming is True and self._kind == "clip"
    if materialize:
      incoming = None
    clips = self._kind == "clip" or bool(incoming)
    inner_deferred = db.deferred_create(self._inner, value_type, weight_type, clips)
    inner = None
    if inner_deferred is None:
      inner = (self._inner.create(value_type, weight_type) if weighted
               else self._inner.create(value_type))
    counts = self._count_sum.create(COUNT_TYPE)
    norm_process = self._norm_process
    # A wrapper inside that measures its norm on the values as given has it computed here, in
    # this wrapper's map: one pass over each client's value for both norms.
    inner_order = None if inner_deferred is None else inner_deferred.raw_norm
    bound_fn = _bound_fn(value_type, self._kind, self._order, incoming, inner_order)
    # This wrapper's norm is of the values as given unless they are clipped first.
    raw_norm = None if materialize or incoming else self._order
    from_norm_fn = None if raw_norm is None else _bound_from_norm_fn(self._kind, incoming)
    apply_fn = None if inner is None else computation(value_type, db.BOUND_TYPE)(
        lambda value, bound: db.apply(value, bound, clips))  # Bounded values for `inner`.
    norm_key, count_key = self._prefix + "ing_norm", self._prefix + "ed_count"
    signature = "value_type, weight_type" if weighted else "value_type"
    where = f"{self._name}(...).create({signature})"
    inner_initialize = (inner_deferred or inner).initialize
    outer_apply_fn = (computation(value_type, db.BOUND_TYPE)(
        lambda value, bound: db.apply(value, bound, True)) if materialize else None)

    @federated_computation
    @named(f"{where}.initialize")
    def initialize():
      return fi.federated_zip(collections.OrderedDict([
          (norm_key, norm_process.initialize()), ("inner_agg", inner_initialize()),
          (count_key + "_agg", counts.initialize())]))

    def step(state, value, bound, weight=None, given_norm=None):
      if materialize:
        value, bound = fi.federated_map(outer_apply_fn, (value, bound)), None
      norm = norm_process.report(state[norm_key])
      threshold = fi.federated_broadcast(norm)
      inner_norm = None
      if given_norm is not None:  # Computed by a wrapper outside, from the same values.
        args = (given_norm, threshold) if bound is None else (given_norm, bound, threshold)
        bound, client_norms, was_bounded = fi.federated_map(from_norm_fn, args)
      else:
        args = (value, threshold) if bound is None else (value, bound, threshold)
        if inner_order is None:
          bound, client_norms, was_bounded = fi.federated_map(bound_fn, args)
        else:
          bound, client_norms, was_bounded, inner_norm = fi.federated_map(bound_fn, args)
      # The norm process learns from the norms of the values as given (before bounding).
      norm_state = norm_process.next(state[norm_key], client_norms)
      if inner_deferred is not None:
        inner_out = (inner_deferred.step(state["inner_agg"], value, bound, weight)
                     if inner_norm is None else
                     inner_deferred.step(state["inner_agg"], value, bound, weight, inner_norm))
      else:
        bounded = fi.federated_map(apply_fn, (value, bound))
        inner_out = (inner.next(state["inner_agg"], bounded) if weight is None
                     else inner.next(state["inner_agg"], bounded, weight))
      count_out = counts.next(state[count_key + "_agg"], was_bounded)
      return MeasuredProcessOutput(
          state=fi.federated_zip(collections.OrderedDict([
              (norm_key, norm_state), ("inner_agg", inner_out.state),
              (count_key + "_agg", count_out.state)])),
          result=inner_out.result,
          measurements=fi.federated_zip(collections.OrderedDict([
              (self._prefix + "ing", inner_out.measurements), (norm_key, norm),
              (count_key, count_out.result)])))

    return db.Deferred(initialize, step, raw_norm)


class _UnweightedRobustFactory(_RobustFactory, UnweightedAggregationFactory):
  weighted = False


class _WeightedRobustFactory(_RobustFactory, WeightedAggregationFactory):
  weighted = True


def _robust_factory(name: str, prefix: str, norm: Any, norm_arg: str,
                    inner: Any, count_sum: Any, count_arg: str, kind: str,
                    order: float) -> AggregationFactory:
  for arg, factory in (("inner_agg_factory", inner), (count_arg, count_sum)):
    if factory is not None and not isinstance(factory, AggregationFactory):
      raise error(TypeError, name, f"{arg} must be an aggregation factory.",
                  actual=repr(factory), hint="e.g. fx.aggregators.MeanFactory()")
  if inner is None:
    raise error(TypeError, name, "inner_agg_factory must be an aggregation factory.",
                actual="None", hint="e.g. fx.aggregators.MeanFactory()")
  norm_process = _norm_process(name, norm_arg, norm)
  cls = _WeightedRobustFactory if inner.weighted else _UnweightedRobustFactory
  return cls(name, prefix, norm_process, inner, count_sum or SumFactory(), kind, order)


# --- Norm processes ------------------------------------------------------------------------------


def _norm_process(name: str, arg: str, norm: Any) -> EstimationProcess:
  """The norm as an `EstimationProcess`: a constant one for a float, else checked (TFF's)."""
  if isinstance(norm, EstimationProcess):
    _check_norm_process(name, arg, norm)
    return norm
  if isinstance(norm, bool) or not isinstance(norm, numbers.Real):
    raise error(TypeError, name, f"{arg} must be a positive float or an "
                "fx.templates.EstimationProcess.", expected="a float > 0, or an "
                "EstimationProcess reporting float32@SERVER", actual=repr(norm))
  if not norm > 0:
    raise error(ValueError, name, f"{arg} must be positive.", expected="a float > 0",
                actual=repr(norm))
  return _constant_process(float(norm))


def _constant_process(norm: float) -> EstimationProcess:
  """An `EstimationProcess` with empty state that always reports `norm` (TFF's)."""
  @computation
  def constant():
    return np.float32(norm)

  @federated_computation
  def initialize():
    return fi.federated_value((), SERVER)

  @federated_computation(initialize.type_signature.result, t.FederatedType(NORM_TYPE, CLIENTS))
  def next_fn(state, value):
    del value  # A constant norm learns nothing from the clients' norms.
    return state

  @federated_computation(initialize.type_signature.result)
  def report(state):
    del state
    return fi.federated_eval(constant, SERVER)

  return EstimationProcess(initialize, next_fn, report)


def _check_norm_process(name: str, arg: str, process: EstimationProcess) -> None:
  """A norm process's `next` takes `(state, {float32}@CLIENTS)` and returns the state only;
  its `report` returns `float32@SERVER`."""
  signature = process.next.type_signature
  parameter = signature.parameter
  at_clients = t.FederatedType(NORM_TYPE, CLIENTS)
  if not (isinstance(parameter, t.StructType) and len(parameter) == 2
          and parameter[1].is_assignable_from(at_clients)):
    raise error(TypeError, name, f"{arg}.next must take (state, norms) with the norms "
                f"{at_clients}.", expected=f"(<S@SERVER,{at_clients}> -> S@SERVER)",
                actual=signature)
  if not process.state_type.is_assignable_from(signature.result):
    raise error(TypeError, name, f"{arg}.next must return the state only.",
                expected=process.state_type, actual=signature.result)
  reported = process.report.type_signature.result
  if not t.FederatedType(NORM_TYPE, SERVER).is_assignable_from(reported):
    raise error(TypeError, name, f"{arg}.report must return a float32 norm at the server.",
                expected="float32@SERVER", actual=reported,
                hint="map the estimate to float32 with process.map(...)")


# --- Per-client bounding (local computations on one client's value) ------------------------------


def _global_norm(value, order: float) -> jax.Array:
  """The norm of all of `value`'s tensors as one vector, in float32 (TFF's global norms)."""
  return _global_norms(value, (order,))[0]


def _global_norms(value, orders: tuple) -> tuple:
  """`_global_norm` of `value` for each of `orders`, all from one read of each tensor
  (`_one_pass`: as two reductions they took 1.6 to 3 times as long).

  The L-inf norm is a max over the bits of |x| as int32, ordered as the floats are with NaNs
  above inf: a NaN entry gives a NaN norm (which bounds nothing, see above), where XLA:CPU's
  vectorized float max over a wide tensor may skip a NaN (5000 entries holding NaN and 100.0
  gave 100.0). An L1 or L2 norm is NaN through its sum.
  """
  inf = math.inf
  totals = [jnp.int32(0) if order == inf else jnp.float32(0.0) for order in orders]
  for x in jax.tree_util.tree_leaves(value):
    x = jnp.asarray(x).astype(jnp.float32)
    parts = _one_pass.reduce(
        [_norm_operand(x, order) for order in orders], [0] * len(orders),
        [jnp.maximum if order == inf else jnp.add for order in orders])
    totals = [jnp.maximum(total, part) if order == inf else total + part
              for order, total, part in zip(orders, totals, parts)]
  return tuple(jax.lax.bitcast_convert_type(total, jnp.float32) if order == inf
               else jnp.sqrt(total) if order == 2.0 else total
               for order, total in zip(orders, totals))


def _norm_operand(x: jax.Array, order: float) -> jax.Array:
  """What a norm of `order` reduces: |x| (summed), x**2 (summed), or |x|'s bits (maximum)."""
  if order == 1.0:
    return jnp.abs(x)
  if order == 2.0:
    return jnp.square(x)
  return jax.lax.bitcast_convert_type(x, jnp.int32) & jnp.int32(0x7FFFFFFF)


def _bound(kind: str, norm: jax.Array, bound: Any, threshold: jax.Array) -> tuple:
  """(the bound with this wrapper's, `norm`, int32 1 if bounded) for one client whose value
  has `norm`: a clip by `norm / threshold` when the norm exceeds it, or zeroing. A NaN norm
  bounds nothing (NaN > threshold is false)."""
  exceeds = norm > threshold
  zeroed, divisor = (jnp.bool_(False), jnp.float32(1.0)) if bound is None else bound
  if kind == "clip":
    divisor = jnp.where(exceeds, norm / threshold, divisor)
  else:
    zeroed = zeroed | exceeds
  return (zeroed, divisor), norm, exceeds.astype(jnp.int32)


def _bound_fn(value_type: t.Type, kind: str, order: float, incoming: Optional[bool],
              inner_order: Optional[float] = None):
  """`(value[, incoming bound], threshold) -> (bound, norm, int32 1 if bounded)` for one
  client: its norm (of `order`, of the value as given: bounded by `incoming`, if not None), and
  the bound with this wrapper's (`_bound`). With `inner_order`, the value's norm of that order
  too (for the wrapper inside, `_bound_from_norm_fn`): computed in the same map, the client's
  value is read once for both."""
  clips = bool(incoming)

  def bound_fn(value, bound, threshold):
    if inner_order is None:
      return _bound(kind, db.norm_of(value, bound, clips, lambda v: _global_norm(v, order)),
                    bound, threshold)
    if clips:  # This wrapper's norm is of the clipped value, the inner one's of the value.
      norm = db.norm_of(value, bound, clips, lambda v: _global_norm(v, order))
      inner_norm = _global_norm(value, inner_order)
    else:  # Both of the value as given, from one read of it (a zeroed value's norm is 0).
      norm, inner_norm = _global_norms(value, (order, inner_order))
      norm = norm if bound is None else jnp.where(bound[0], jnp.float32(0.0), norm)
    return _bound(kind, norm, bound, threshold) + (inner_norm,)

  if incoming is None:
    return computation(value_type, NORM_TYPE)(
        lambda value, threshold: bound_fn(value, None, threshold))
  return computation(value_type, db.BOUND_TYPE, NORM_TYPE)(bound_fn)


def _bound_from_norm_fn(kind: str, incoming: Optional[bool]):
  """`_bound_fn`'s computation for a client whose value's norm was computed outside (by the
  wrapper outside, `inner_order`): `(norm[, incoming bound], threshold) -> ...`. An incoming
  bound only zeroes here (a clipping one would change the norm): a zeroed value's norm is 0,
  as `_deferred_bounds.norm_of` has it."""
  assert not incoming, "a clipped value's norm is measured on the clipped value"

  def from_norm(norm, bound, threshold):
    if bound is not None:
      norm = jnp.where(bound[0], jnp.float32(0.0), norm)
    return _bound(kind, norm, bound, threshold)

  if incoming is None:
    return computation(NORM_TYPE, NORM_TYPE)(
        lambda norm, threshold: from_norm(norm, None, threshold))
  return computation(NORM_TYPE, db.BOUND_TYPE, NORM_TYPE)(from_norm)
