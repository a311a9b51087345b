"""`PrivateQuantileEstimationProcess`: an `EstimationProcess` tracking a quantile of the clients'
values (Andrew et al. 2021's adaptive clipping norm), TFF's."""

from __future__ import annotations

import collections
import dataclasses
import math
import numbers
import secrets
import zlib
from typing import Any, Callable, Optional

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
from federax.aggregators import _gaussian
from federax.aggregators.factory import AggregationFactory, AggregationProcess
from federax.aggregators.factory import UnweightedAggregationFactory
from federax.aggregators.sum_factory import SumFactory

_NAME = "PrivateQuantileEstimationProcess"


@dataclasses.dataclass(frozen=True)
class _BelowEstimate:
  """How the fraction of clients whose value is at or below the estimate is found: TFF's
  below-estimate query (tensorflow_privacy), without noise (`_exact_fraction`) or with
  (`noised_fraction`).

  Attributes:
    initial_state: the query's own state (TFF's `below_estimate_state`); `()` without noise,
      the Gaussian sum's state (with its PRNG key) and the denominator with.
    record: `(below: bool[]) -> record`, one client's contribution (a pytree of tensors).
    sum_factory: the unweighted factory summing the records (plain or secure).
    fraction: `(summed record, state) -> (fraction, new state)`, at the server: normalizes
      (and adds noise); the result is clamped to [0, 1] afterwards.
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

  Build it with `no_noise(...)`, or differentially private as TFF does, from a query:
  `PrivateQuantileEstimationProcess(fx.aggregators.QuantileEstimatorQuery(...))` (tfp's
  `QuantileEstimatorQuery`'s arguments): the count below the estimate then gets Gaussian noise
  and `below_estimate_state` is `<numerator_state=<l2_norm_clip=float32,stddev=float32,
  noise_key=uint32[2]>,denominator=float32>` (TFF's, with the noise's key added).

  Example:
    >>> query = fx.aggregators.QuantileEstimatorQuery(
    ...     initial_estimate=1.0, target_quantile=0.5, learning_rate=float(np.log(2.0)),
    ...     below_estimate_stddev=0.0, expected_num_records=4, geometric_update=True)
    >>> process = fx.aggregators.PrivateQuantileEstimationProcess(query)
    >>> state = process.next(process.initialize(), [2.0, 3.0, 4.0, 5.0])
    >>> round(float(process.report(state)), 6)  # none at or below 1, no noise: C * sqrt(2)
    1.414214
  """

  def __init__(self, quantile_estimator_query: Any,
               record_aggregation_factory: Optional[AggregationFactory] = None):
    if not isinstance(quantile_estimator_query, _QuantileQuery):
      raise error(TypeError, _NAME, "the query must be a federax quantile estimator query "
                  "(a tensorflow_privacy query cannot run on JAX).",
                  expected="fx.aggregators.QuantileEstimatorQuery(...)",
                  actual=repr(quantile_estimator_query),
                  hint="use fx.aggregators.QuantileEstimatorQuery(...) (tfp's arguments), or "
                  "fx.aggregators.PrivateQuantileEstimationProcess.no_noise(...)")
    if (record_aggregation_factory is not None
        and not isinstance(record_aggregation_factory, AggregationFactory)):
      raise error(TypeError, _NAME, "record_aggregation_factory must be an aggregation factory.",
                  actual=repr(record_aggregation_factory), hint="e.g. fx.aggregators.SumFactory()")
    query = quantile_estimator_query
    below = query.below_estimate
    sums = (record_aggregation_factory or below.sum_factory).create(
        computation(t.TensorType(np.bool_))(below.record).type_signature.result)

    @computation
    def initial_query_state():
      return initial_state(query)

    @federated_computation
    @named(f"{_NAME}.initialize")
    def initialize():
      return fi.federated_zip((fi.federated_eval(initial_query_state, SERVER), sums.initialize()))

    query_state_type = initialize.type_signature.result.member[0]

    @computation(t.TensorType(np.float32), t.TensorType(np.float32))
    def client_record(estimate, value):
      return below_estimate_record(query, estimate, value)

    @computation(sums.next.type_signature.result[1].member, query_state_type)
    def update(summed, query_state):
      return next_state(query, summed, query_state)

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


def _checked_float(name: str, value: Any, check: str, where: str = f"{_NAME}.no_noise"
                   ) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise error(TypeError, where, f"{name} must be a float.", actual=repr(value))
  value = float(value)
  valid = {"any": (True, "a finite float"), "positive": (value > 0, "a float > 0"),
           "nonnegative": (value >= 0, "a float >= 0"),
           "probability": (0 <= value <= 1, "a float in [0, 1]")}[check]
  if not valid[0] or not math.isfinite(value):
    raise error(ValueError, where, f"{name} must be {valid[1]}.", expected=valid[1],
                actual=repr(value))
  return value


def initial_state(query: _QuantileQuery) -> collections.OrderedDict:
  """tfp's `QuantileEstimatorQuery` state: `<current_estimate,target_quantile,learning_rate,
  below_estimate_state>` (a local value; the estimate and rates in float32)."""
  return collections.OrderedDict(
      current_estimate=np.float32(query.initial_estimate),
      target_quantile=np.float32(query.target_quantile),
      learning_rate=np.float32(query.learning_rate),
      below_estimate_state=query.below_estimate.initial_state)


def below_estimate_record(query: _QuantileQuery, estimate: Any, value: Any) -> Any:
  """One client's record: whether its value is at or below the estimate (TFF's `<=`)."""
  return query.below_estimate.record(value <= estimate)


def next_state(query: _QuantileQuery, summed: Any, query_state: Any) -> collections.OrderedDict:
  """The state after a round whose summed records are `summed` (a local computation): the
  fraction below (clamped to [0, 1], noise may leave it), then the estimate's update."""
  fraction, below_state = query.below_estimate.fraction(summed,
                                                        query_state["below_estimate_state"])
  fraction = jnp.clip(jnp.asarray(fraction, jnp.float32), 0.0, 1.0)
  step = query_state["learning_rate"] * (fraction - query_state["target_quantile"])
  estimate = query_state["current_estimate"]
  estimate = estimate * jnp.exp(-step) if query.geometric_update else estimate - step
  return collections.OrderedDict(
      current_estimate=estimate.astype(jnp.float32),
      target_quantile=query_state["target_quantile"],
      learning_rate=query_state["learning_rate"], below_estimate_state=below_state)


class QuantileEstimatorQuery(_QuantileQuery):
  """tfp's `QuantileEstimatorQuery` (Andrew et al. 2021): the differentially private quantile
  estimator that `PrivateQuantileEstimationProcess(query)` runs.

  Each client contributes `1[value <= estimate] - 0.5` (so one client changes the sum by at most
  0.5: the count's L2 sensitivity); the server adds Gaussian noise of `below_estimate_stddev`
  to the sum, divides by `expected_num_records` (not the realized count) and adds 0.5: the
  noised fraction below. The noise is drawn from a key in the state, first from `seed`, split
  every round. As a Gaussian mechanism its noise multiplier is `below_estimate_stddev / 0.5`.

  Args:
    initial_estimate: the initial estimate (> 0 with `geometric_update`).
    target_quantile: the quantile in [0, 1] the estimate adapts to.
    learning_rate: the update's rate (>= 0).
    below_estimate_stddev: the noise's standard deviation (>= 0); Andrew et al. recommend
      `expected_num_records / 20`.
    expected_num_records: the expected number of clients per round (> 0).
    geometric_update: `C <- C * exp(-rate * (b - q))` if True, else `C <- C - rate * (b - q)`
      (tfp's default False).
    seed: an int seeding the noise's key (a federax addition); None (the default) draws one
      from the operating system, so the noise is secret and a run does not repeat (as tfp's).
      Give a seed for reproducible runs only where the seed stays as private as the data.

  Raises:
    TypeError: an argument that is not a number. ValueError: one out of its range.
  """

  def __init__(self, initial_estimate: float, target_quantile: float, learning_rate: float,
               below_estimate_stddev: float, expected_num_records: float,
               geometric_update: bool = False, *, seed: Optional[int] = None):
    where = "QuantileEstimatorQuery"
    checks = (("initial_estimate", initial_estimate, "positive" if geometric_update else "any"),
              ("target_quantile", target_quantile, "probability"),
              ("learning_rate", learning_rate, "nonnegative"),
              ("below_estimate_stddev", below_estimate_stddev, "nonnegative"),
              ("expected_num_records", expected_num_records, "positive"))
    values = {name: _checked_float(name, value, check, where) for name, value, check in checks}
    if not isinstance(geometric_update, bool):
      raise error(TypeError, where, "geometric_update must be a bool.",
                  actual=repr(geometric_update))
    below = noised_fraction(values["below_estimate_stddev"], values["expected_num_records"],
                            noise_seed(where, seed))
    super().__init__(values["initial_estimate"], values["target_quantile"],
                     values["learning_rate"], geometric_update, below)


def noise_seed(where: str, seed: Optional[int]) -> int:
  """`seed`, checked; a fresh 31-bit seed from the operating system when None."""
  if seed is None:
    return secrets.randbits(31)
  if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
    raise error(TypeError, where, "seed must be an int or None.", actual=repr(seed),
                hint="None (the default) draws a secret seed from the operating system")
  if not -2**31 <= int(seed) < 2**31:
    raise error(ValueError, where, "seed must fit in 32 bits.",
                expected="an int in [-2**31, 2**31)", actual=int(seed))
  return int(seed)


def noised_fraction(stddev: float, expected_num_records: float, seed: int) -> _BelowEstimate:
  """tfp's noised below-estimate query: `(sum of (below - 0.5) + N(0, stddev^2)) / expected
  + 0.5`, the noise from the key in `below_estimate_state.numerator_state`."""
  key = seeded_key(seed, "QuantileEstimatorQuery")

  def record(below):
    return below.astype(jnp.float32) - jnp.float32(0.5)

  def fraction(summed, state):
    noised, numerator_state = _gaussian.noised(summed, state["numerator_state"])
    below = noised / state["denominator"] + jnp.float32(0.5)
    return below, collections.OrderedDict(numerator_state=numerator_state,
                                          denominator=state["denominator"])

  initial = collections.OrderedDict(
      numerator_state=collections.OrderedDict(l2_norm_clip=np.float32(0.5),
                                              stddev=np.float32(stddev), noise_key=key),
      denominator=np.float32(expected_num_records))
  return _BelowEstimate(initial_state=initial, record=record, sum_factory=SumFactory(),
                        fraction=fraction)


def seeded_key(seed: int, salt: str) -> np.ndarray:
  """`fold_in(PRNGKey(seed), crc32(salt))`: each noise source its own stream from one seed."""
  with jax.ensure_compile_time_eval():  # A constant even when built while a program is traced.
    return np.asarray(jax.random.fold_in(jax.random.PRNGKey(seed),
                                         zlib.crc32(salt.encode()) & 0x7FFFFFFF), np.uint32)


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
