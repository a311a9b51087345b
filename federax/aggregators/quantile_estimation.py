"""`PrivateQuantileEstimationProcess`: an `EstimationProcess` tracking a quantile of the clients'
values (Andrew et al. 2021's adaptive clipping norm), TFF's."""

from __future__ import annotations

import collections
import dataclasses
import math
import numbers
from typing import Any, Callable, Optional

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
from federax.aggregators.factory import AggregationFactory, AggregationProcess
from federax.aggregators.factory import UnweightedAggregationFactory
from federax.aggregators.sum_factory import SumFactory

_NAME = "PrivateQuantileEstimationProcess"


@dataclasses.dataclass(frozen=True)
class _BelowEstimate:
  """How the fraction of clients whose value is at or below the estimate is found: TFF's
  below-estimate query (tensorflow_privacy), without or (later) with noise.

  Attributes:
    initial_state: the query's own state (TFF's `below_estimate_state`); `()` without noise
      (a noised query keeps e.g. a PRNG key here).
    record: `(below: bool[]) -> record`, one client's contribution (a pytree of tensors).
    sum_factory: the unweighted factory summing the records (plain or secure).
    fraction: `(summed record, state) -> (fraction, new state)`, at the server: normalizes
      (and would add noise); the result is clamped to [0, 1] afterwards.
  """

  initial_state: Any
  record: Callable[[Any], Any]
  sum_factory: AggregationFactory
  fraction: Callable[[Any, Any], tuple]


@dataclasses.dataclass(frozen=True)
class _QuantileQuery:
  """TFF's `QuantileEstimatorQuery`: the estimate's update rule and its below-estimate query."""

  initial_estimate: float
  target_quantile: float
  learning_rate: float
  geometric_update: bool
  below_estimate: _BelowEstimate


class PrivateQuantileEstimationProcess(EstimationProcess):
  """Estimates a quantile of the clients' float32 values, one update per round (TFF's).

  `next(state, {float32}@CLIENTS)` finds the fraction `b` of clients whose value is `<=` the
  current estimate `C` and updates `C <- C * exp(-learning_rate * (b - target_quantile))`
  (geometric; Andrew, Thakkar et al. 2021, "Differentially Private Learning with Adaptive
  Clipping"); `report(state)` is `C`. With no clients `b` is 0/0 and the estimate becomes NaN,
  as in TFF. State: `<<current_estimate=float32,target_quantile=float32,learning_rate=float32,
  below_estimate_state=<>>,<sum state>>@SERVER` (TFF's structure).

  Build it with `no_noise(...)`; the differentially private (noised) form, TFF's
  `PrivateQuantileEstimationProcess(quantile_estimator_query)`, is not available yet.
  """

  def __init__(self, quantile_estimator_query: Any,
               record_aggregation_factory: Optional[AggregationFactory] = None):
    if not isinstance(quantile_estimator_query, _QuantileQuery):
      raise error(TypeError, _NAME, "building it from a quantile estimator query (the "
                  "differentially private, noised form) is not available in federax yet.",
                  actual=repr(quantile_estimator_query),
                  hint="use fx.aggregators.PrivateQuantileEstimationProcess.no_noise(...)")
    query = quantile_estimator_query
    below = query.below_estimate
    sums = (record_aggregation_factory or below.sum_factory).create(
        computation(t.TensorType(np.bool_))(below.record).type_signature.result)

    @computation
    def initial_query_state():
      return collections.OrderedDict(
          current_estimate=np.float32(query.initial_estimate),
          target_quantile=np.float32(query.target_quantile),
          learning_rate=np.float32(query.learning_rate),
          below_estimate_state=below.initial_state)

    @federated_computation
    @named(f"{_NAME}.initialize")
    def initialize():
      return fi.federated_zip((fi.federated_eval(initial_query_state, SERVER), sums.initialize()))

    query_state_type = initialize.type_signature.result.member[0]

    @computation(t.TensorType(np.float32), t.TensorType(np.float32))
    def client_record(estimate, value):
      return below.record(value <= estimate)  # TFF's comparison: at or below counts

    @computation(sums.next.type_signature.result[1].member, query_state_type)
    def update(summed, query_state):
      fraction, below_state = below.fraction(summed, query_state["below_estimate_state"])
      fraction = jnp.clip(jnp.asarray(fraction, jnp.float32), 0.0, 1.0)  # noise may leave [0,1]
      step = query_state["learning_rate"] * (fraction - query_state["target_quantile"])
      estimate = query_state["current_estimate"]
      estimate = estimate * jnp.exp(-step) if query.geometric_update else estimate - step
      return collections.OrderedDict(
          current_estimate=estimate.astype(jnp.float32),
          target_quantile=query_state["target_quantile"],
          learning_rate=query_state["learning_rate"], below_estimate_state=below_state)

    @federated_computation(initialize.type_signature.result,
                           t.FederatedType(np.float32, CLIENTS))
    @named(f"{_NAME}.next")
    def next_fn(state, value):
      query_state, sum_state = state[0], state[1]
      estimate = fi.federated_broadcast(query_state.current_estimate)
      summed = sums.next(sum_state, fi.federated_map(client_record, (estimate, value)))
      return fi.federated_zip((fi.federated_map(update, (summed.result, query_state)),
                               summed.state))

    @federated_computation(initialize.type_signature.result)
    @named(f"{_NAME}.report")
    def report(state):
      return state[0].current_estimate

    super().__init__(initialize, next_fn, report)

  @classmethod
  def no_noise(cls, initial_estimate: float, target_quantile: float, learning_rate: float,
               multiplier: float = 1.0, increment: float = 0.0,
               secure_estimation: bool = False) -> EstimationProcess:
    """The estimator without noise, reporting `multiplier * C + increment` (TFF's).

    Not differentially private: the server learns the exact count of clients below the
    estimate (summed securely if `secure_estimation`, each client's indicator then never seen
    alone). Useful for adaptive clipping and zeroing norms where privacy is not required.

    Args:
      initial_estimate: the initial `C` (> 0).
      target_quantile: the quantile `q` in [0, 1] that `C` adapts to.
      learning_rate: the update's rate (> 0); Andrew et al. recommend 0.2.
      multiplier: `r` (> 0) of the reported `r * C + i`.
      increment: `i` (>= 0) of the reported `r * C + i`.
      secure_estimation: sum the per-client indicators with `fx.federated_secure_sum_bitwidth`
        instead of `fx.federated_sum`.

    Returns:
      A `PrivateQuantileEstimationProcess`, or, with a multiplier or increment, the
      `EstimationProcess` its `map` gives (as in TFF).

    Raises:
      TypeError: an argument that is not a number. ValueError: one out of its range.

    Example:
      >>> process = fx.aggregators.PrivateQuantileEstimationProcess.no_noise(
      ...     initial_estimate=1.0, target_quantile=0.5, learning_rate=float(np.log(2.0)))
      >>> state = process.next(process.initialize(), [2.0, 3.0, 4.0, 5.0])
      >>> round(float(process.report(state)), 6)  # none at or below 1: C * exp(0.5 ln 2)
      1.414214
    """
    values = {}
    for name, value, check in (("initial_estimate", initial_estimate, "positive"),
                               ("target_quantile", target_quantile, "probability"),
                               ("learning_rate", learning_rate, "positive"),
                               ("multiplier", multiplier, "positive"),
                               ("increment", increment, "nonnegative")):
      values[name] = _checked_float(name, value, check)
    if not isinstance(secure_estimation, bool):
      raise error(TypeError, f"{_NAME}.no_noise", "secure_estimation must be a bool.",
                  actual=repr(secure_estimation))
    query = _QuantileQuery(values["initial_estimate"], values["target_quantile"],
                           values["learning_rate"], geometric_update=True,
                           below_estimate=_exact_fraction(secure_estimation))
    process = cls(query)
    if values["multiplier"] == 1.0 and values["increment"] == 0.0:
      return process
    return process.map(_affine(values["multiplier"], values["increment"]))


def _checked_float(name: str, value: Any, check: str) -> float:
  where = f"{_NAME}.no_noise"
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise error(TypeError, where, f"{name} must be a float.", actual=repr(value))
  value = float(value)
  valid = {"positive": (value > 0, "a float > 0"),
           "nonnegative": (value >= 0, "a float >= 0"),
           "probability": (0 <= value <= 1, "a float in [0, 1]")}[check]
  if not valid[0] or math.isinf(value):
    raise error(ValueError, where, f"{name} must be {valid[1]}.", expected=valid[1],
                actual=repr(value))
  return value


def _exact_fraction(secure: bool) -> _BelowEstimate:
  """The no-noise query: `(below, 1)` per client summed, the fraction `below / count`."""
  def record(below):
    return (below.astype(jnp.int32), jnp.int32(1))

  def fraction(summed, state):
    below, count = summed
    return below.astype(jnp.float32) / count.astype(jnp.float32), state

  return _BelowEstimate(initial_state=(), record=record,
                        sum_factory=_SecureBitSum() if secure else SumFactory(),
                        fraction=fraction)


class _SecureBitSum(UnweightedAggregationFactory):
  """Sums 0/1 integers with `federated_secure_sum_bitwidth` (1 bit each): empty state and
  measurements, as TFF's `SecureSumFactory(1.0)` has for the same records."""

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    @federated_computation
    def initialize():
      return fi.federated_value((), SERVER)

    @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS))
    def next_fn(state, value):
      return MeasuredProcessOutput(state, fi.federated_secure_sum_bitwidth(value, 1),
                                   fi.federated_value((), SERVER))

    return AggregationProcess(initialize, next_fn)


def _affine(multiplier: float, increment: float):
  """`(float32@SERVER -> float32@SERVER)`: `multiplier * x + increment` (TFF's `.map`)."""
  @computation(np.float32)
  def transform(x):
    return np.float32(multiplier) * x + np.float32(increment)

  return federated_computation(lambda estimate: fi.federated_map(transform, estimate),
                               t.FederatedType(np.float32, SERVER))
