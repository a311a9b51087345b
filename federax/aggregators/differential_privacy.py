"""`DifferentiallyPrivateFactory`: central differential privacy (TFF's): each client's value
clipped, the sum noised once at the server, divided by the expected number of clients."""

from __future__ import annotations

import abc
import collections
import dataclasses
import math
import numbers
import warnings
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.type_conversions import to_type
from federax.core.placements import SERVER
from federax.templates.measured_process import MeasuredProcessOutput
from federax.templates._naming import named
from federax.aggregators import _compression_utils as cu
from federax.aggregators import _deferred_bounds as db
from federax.aggregators import _gaussian
from federax.aggregators import _tree_aggregation as _tree
from federax.aggregators import quantile_estimation as qe
from federax.aggregators.factory import (AggregationFactory, AggregationProcess,
                                         UnweightedAggregationFactory, check_float_value,
                                         next_computation)
from federax.aggregators.sum_factory import SumFactory

_NAME = "DifferentiallyPrivateFactory"
_PRIVACY_EXTRA = "pip install 'federax[privacy]'"

# Why a DP factory takes no weights: said wherever weights are refused.
WEIGHTS_REFUSED = (
    "central differential privacy needs a bounded sensitivity, and a weighted mean's "
    "sensitivity to one client is unbounded (it grows with the client's weight, while a clipped "
    "value moves the unweighted sum by at most the clip), so no noise level covers it; TFF "
    "forbids it too")
WEIGHTS_HINT = ("aggregate unweighted: create(value_type), in training an unweighted algorithm "
                "(fx.learning.algorithms.build_unweighted_fed_avg)")


# --- Queries: what the factory's process computes, as local functions ----------------------------


class _Query(abc.ABC):
  """A sum query (tfp's `SumAggregationDPQuery`): clip at the clients, noise at the server.

  Its pieces are local functions of pytrees; the factory places them. `record` of every client
  is summed by the record aggregation factory, then `noised_result` runs once at the server.
  """

  @abc.abstractmethod
  def initial_state(self) -> Any:
    """The query's state (TFF's `query_state`), NumPy values: constants of the program."""

  @abc.abstractmethod
  def sample_params(self, state: Any) -> Any:
    """What every client needs this round (e.g. the clip), from the state."""

  @abc.abstractmethod
  def parts_of_norm(self, params: Any, norm: Any) -> tuple[Any, Any]:
    """`(scale, extra)` of a value whose global L2 norm is `norm`: the value clipped is
    `value * scale` (float32), and `extra` is what else the query counts (`()` for nothing)."""

  def record_parts(self, params: Any, value: Any) -> tuple[Any, Any]:
    """`parts_of_norm` of one client's value."""
    return self.parts_of_norm(params, _gaussian.global_norm(value))

  def record_of(self, clipped: Any, extra: Any) -> Any:
    """The record the record aggregation factory sums, from the clipped value and `extra`."""
    del extra
    return clipped

  def record(self, params: Any, value: Any) -> Any:
    """One client's record: its value clipped (and what else the query counts)."""
    scale, extra = self.record_parts(params, value)
    return self.record_of(_gaussian.scaled(value, scale), extra)

  @abc.abstractmethod
  def noised_result(self, summed: Any, state: Any) -> tuple[Any, Any]:
    """`(the aggregate, the next state)` from the summed records, at the server."""

  @abc.abstractmethod
  def metrics(self, state: Any) -> collections.OrderedDict:
    """TFF's `dp_query_metrics` of the state after the round."""

  @abc.abstractmethod
  def dp_event(self) -> Any:
    """The `dp_accounting.DpEvent` one round releases (`dp_accounting` imported by the caller)."""

  def rounds_dp_event(self, rounds: int) -> Any:
    """The `dp_accounting.DpEvent` of the first `rounds` rounds: one round's, composed."""
    import dp_accounting  # pylint: disable=g-import-not-at-top
    return dp_accounting.SelfComposedDpEvent(self.dp_event(), rounds)

  def bind(self, value_type: t.Type) -> _Query:
    """The query for values of `value_type` (a query whose state holds value-shaped tensors
    needs it); `create` calls it."""
    del value_type
    return self


@dataclasses.dataclass(frozen=True)
class _NormalizedGaussianQuery(_Query):
  """tfp's `NormalizedQuery(GaussianSumQuery(clip, noise_multiplier * clip), denominator)`.

  State `<numerator_state=<l2_norm_clip,stddev,noise_key>,denominator>`.
  """

  noise_multiplier: float
  clip: float
  denominator: float
  noise_key: np.ndarray

  def initial_state(self):
    return collections.OrderedDict(
        numerator_state=collections.OrderedDict(
            l2_norm_clip=np.float32(self.clip),
            stddev=np.float32(self.noise_multiplier * self.clip), noise_key=self.noise_key),
        denominator=np.float32(self.denominator))

  def sample_params(self, state):
    return state["numerator_state"]["l2_norm_clip"]

  def parts_of_norm(self, params, norm):
    return _gaussian.scale_of_norm(norm, params), ()

  def noised_result(self, summed, state):
    noised, numerator_state = _gaussian.noised(summed, state["numerator_state"])
    return _divide(noised, state["denominator"]), collections.OrderedDict(
        numerator_state=numerator_state, denominator=state["denominator"])

  def metrics(self, state):
    return collections.OrderedDict()

  def dp_event(self):
    import dp_accounting  # pylint: disable=g-import-not-at-top
    return dp_accounting.GaussianDpEvent(self.noise_multiplier)


@dataclasses.dataclass(frozen=True)
class _NormalizedAdaptiveQuery(_Query):
  """tfp's `NormalizedQuery(QuantileAdaptiveClipSumQuery(...), denominator)`: a Gaussian sum
  whose clip is a noised quantile estimate of the clients' norms (Andrew et al. 2021).

  State `<numerator_state=<noise_multiplier,sum_state=<l2_norm_clip,stddev,noise_key>,
  quantile_estimator_state=<...>>,denominator>`; a record is `<sum_state=clipped value,
  quantile_estimator_state=1[norm <= clip] - 0.5>`.
  """

  value_noise_multiplier: float
  initial_clip: float
  quantile: qe.QuantileEstimatorQuery
  denominator: float
  noise_key: np.ndarray

  def initial_state(self):
    sum_state = collections.OrderedDict(
        l2_norm_clip=np.float32(self.initial_clip),
        stddev=np.float32(self.value_noise_multiplier * self.initial_clip),
        noise_key=self.noise_key)
    return collections.OrderedDict(
        numerator_state=collections.OrderedDict(
            noise_multiplier=np.float32(self.value_noise_multiplier), sum_state=sum_state,
            quantile_estimator_state=qe.initial_state(self.quantile)),
        denominator=np.float32(self.denominator))

  def sample_params(self, state):
    numerator = state["numerator_state"]
    return (numerator["sum_state"]["l2_norm_clip"],
            numerator["quantile_estimator_state"]["current_estimate"])

  def parts_of_norm(self, params, norm):
    clip, estimate = params
    scale = _gaussian.scale_of_norm(norm, clip)
    # The estimator learns from the norms as given (before clipping), as in tfp.
    return scale, qe.below_estimate_record(self.quantile, estimate, norm)

  def record_of(self, clipped, extra):
    return collections.OrderedDict(sum_state=clipped, quantile_estimator_state=extra)

  def noised_result(self, summed, state):
    numerator = state["numerator_state"]
    noised, sum_state = _gaussian.noised(summed["sum_state"], numerator["sum_state"])
    quantile_state = qe.next_state(self.quantile, summed["quantile_estimator_state"],
                                   numerator["quantile_estimator_state"])
    clip = jnp.maximum(quantile_state["current_estimate"], 0.0)
    # The next round clips at the new estimate, and its noise follows the clip.
    sum_state = _gaussian.initial_state(clip, clip * numerator["noise_multiplier"],
                                        sum_state["noise_key"])
    return _divide(noised, state["denominator"]), collections.OrderedDict(
        numerator_state=collections.OrderedDict(
            noise_multiplier=numerator["noise_multiplier"], sum_state=sum_state,
            quantile_estimator_state=quantile_state),
        denominator=state["denominator"])

  def metrics(self, state):
    return collections.OrderedDict(
        clip=state["numerator_state"]["sum_state"]["l2_norm_clip"])

  def dp_event(self):
    import dp_accounting  # pylint: disable=g-import-not-at-top
    count_stddev = float(self.quantile.below_estimate.initial_state["numerator_state"]["stddev"])
    # The count's sensitivity is 0.5 (records are +-0.5): its noise multiplier is stddev / 0.5.
    return dp_accounting.ComposedDpEvent([
        dp_accounting.GaussianDpEvent(self.value_noise_multiplier),
        dp_accounting.GaussianDpEvent(count_stddev / 0.5)])


@dataclasses.dataclass(frozen=True)
class _NormalizedTreeQuery(_Query):
  """tfp's `NormalizedQuery(TreeResidualSumQuery.build_l2_gaussian_query(...), denominator)`:
  each round's noise the residual of a tree's cumulative noise (`_tree_aggregation`).

  State `<numerator_state=<tree_state=<level_buffer=..,step=int32,value_generator_state=
  <noise_key=uint32[2],stddev=float32>>,clip_value=float32,previous_tree_noise=..>,
  denominator=float32>`; with periodic restarts the numerator is tfp's `RestartQuery` state
  `<inner_query_state=<as above>,indicator_state=int32>`.
  """

  noise_multiplier: float
  clip: float
  denominator: float
  noise_key: np.ndarray
  efficient: bool
  restart_period: Optional[int]
  restart_warmup: int
  depth: int
  record_type: Optional[t.Type]  # TFF's record_specs, checked against the value type.
  value_type: Optional[t.Type] = None  # Bound by `create`.

  def bind(self, value_type):
    where = f"{_NAME}.create(value_type)"
    cu.check_tensors(where, value_type, kinds="f", what="floating point")
    shapes = [tuple(ts.shape) for ts in cu.tensor_types(value_type)]
    if self.record_type is not None:
      specs = [tuple(ts.shape) for ts in cu.tensor_types(self.record_type)]
      if specs != shapes:
        raise error(ValueError, where, "the values do not have the shapes of record_specs "
                    "(the tree's noise is drawn in those shapes).",
                    expected=f"tensors of shapes {specs} (record_specs {self.record_type})",
                    actual=f"tensors of shapes {shapes} (value_type {value_type})",
                    hint="pass record_specs=None: federax reads the shapes from the value type")
    return dataclasses.replace(self, value_type=value_type)

  def _zeros(self):
    return cu.unflatten([jnp.zeros(ts.shape, jnp.float32)
                         for ts in cu.tensor_types(self.value_type)], self.value_type)

  def initial_state(self):
    shapes = [tuple(ts.shape) for ts in cu.tensor_types(self.value_type)]
    tree_state = _tree.initial_state(shapes, self.depth, self.noise_multiplier * self.clip,
                                     self.noise_key)
    tree_state["level_buffer"] = cu.unflatten(tree_state["level_buffer"], self.value_type)
    numerator = collections.OrderedDict(tree_state=tree_state,
                                        clip_value=np.float32(self.clip),
                                        previous_tree_noise=self._zeros())
    if self.restart_period is not None:
      numerator = collections.OrderedDict(inner_query_state=numerator,
                                          indicator_state=np.int32(0))
    return collections.OrderedDict(numerator_state=numerator,
                                   denominator=np.float32(self.denominator))

  def _inner(self, state):
    numerator = state["numerator_state"]
    return numerator if self.restart_period is None else numerator["inner_query_state"]

  def sample_params(self, state):
    return self._inner(state)["clip_value"]

  def parts_of_norm(self, params, norm):
    return _gaussian.scale_of_norm(norm, params), ()

  def noised_result(self, summed, state):
    inner = self._inner(state)
    tree_state = dict(inner["tree_state"])
    tree_state["level_buffer"] = cu.flatten(tree_state["level_buffer"], self.value_type)
    cumsum, tree_state = _tree.cumsum_and_update(tree_state, self.efficient)
    previous = cu.flatten(inner["previous_tree_noise"], self.value_type)
    # The round's noise is the change of the cumulative noise: summed over rounds, the
    # released values carry the tree's O(log T) noise, not T rounds' worth.
    noised = [(x.astype(jnp.float32) + (c - p)).astype(x.dtype)
              for x, c, p in zip(cu.flatten(summed, self.value_type), cumsum, previous)]
    # Restart (tfp's `reset_state`: an empty tree, the key stream continued, no previous
    # noise) on the periodic schedule, and whenever the tree is full.
    restart = tree_state["step"] == _tree.max_leaves(self.depth)
    if self.restart_period is not None:
      count = state["numerator_state"]["indicator_state"] + 1
      restart = restart | _tree.restart_flag(count, self.restart_period, self.restart_warmup)
    tree_state["step"] = jnp.where(restart, 0, tree_state["step"])
    tree_state["level_buffer"] = cu.unflatten(tree_state["level_buffer"], self.value_type)
    numerator = collections.OrderedDict(
        tree_state=tree_state, clip_value=inner["clip_value"],
        previous_tree_noise=cu.unflatten([jnp.where(restart, 0.0, c) for c in cumsum],
                                         self.value_type))
    if self.restart_period is not None:
      numerator = collections.OrderedDict(inner_query_state=numerator, indicator_state=count)
    result = _divide(cu.unflatten(noised, self.value_type), state["denominator"])
    return result, collections.OrderedDict(numerator_state=numerator,
                                           denominator=state["denominator"])

  def metrics(self, state):
    return collections.OrderedDict(tree_agg_dpftrl_clip=self._inner(state)["clip_value"])

  def dp_event(self):
    raise error(ValueError, f"{_NAME}.dp_event", "tree aggregation has no per-round event: "
                "its privacy cost grows with the depth of the tree (log2 of the rounds), not "
                "with each round.", expected="dp_event(rounds=T), T the rounds run",
                actual="dp_event() without rounds",
                hint="the privacy accountant composes the run's event, not one per round")

  def rounds_dp_event(self, rounds):
    import dp_accounting  # pylint: disable=g-import-not-at-top
    sizes = _tree.tree_sizes(rounds, self.restart_period, self.restart_warmup, self.depth)
    trees = [dp_accounting.SingleEpochTreeAggregationDpEvent(self.noise_multiplier, size)
             for size in sizes]
    return trees[0] if len(trees) == 1 else dp_accounting.ComposedDpEvent(trees)


def _divide(total, denominator):
  return jax.tree_util.tree_map(lambda x: x / denominator.astype(x.dtype), total)


# --- The factory ---------------------------------------------------------------------------------


class DifferentiallyPrivateFactory(UnweightedAggregationFactory):
  """Central differential privacy for an unweighted mean (TFF's `DifferentiallyPrivateFactory`).

  Every client's value is clipped to a global L2 norm `C` (all its tensors as one vector), the
  clipped values are summed (by `record_aggregation_factory`), Gaussian noise of standard
  deviation `noise_multiplier * C` is added once at the server, and the sum is divided by the
  expected number of clients per round (a fixed denominator, not the realized count: tfp's
  `NormalizedQuery`). One client then moves the sum by at most `C` whatever its value, so each
  round is a Gaussian mechanism with that noise multiplier (McMahan et al. 2018, DP-FedAvg).

  Build it with `gaussian_fixed(...)`, `gaussian_adaptive(...)` or `tree_aggregation(...)`
  (DP-FTRL: the noise correlated across rounds). Only unweighted processes: a weighted mean's
  sensitivity to one client grows with that client's weight. With the default record
  aggregation (a `SumFactory`) and float32 values, the clipped values are summed as
  `sum_i s_i v_i` from each client's clip factor `s_i` (a weighted client mean times the total
  weight), not written out clipped first: the same sum up to float32 rounding, at about the
  cost of a plain mean.

  The noise is drawn from a JAX key kept in the state (split every round; each tensor its own
  stream), so the same `seed` gives bit-identical noise on every runtime. The default seed,
  None, draws one from the operating system: noise anyone can recompute protects nothing.

  State: TFF's `<query_state=..,agg_state=..,is_init_state=bool>` without `dp_event` (strings
  cannot live in a JAX program; `dp_event()` gives it), each Gaussian sum's state with its
  `noise_key=uint32[2]`. Measurements: `<dp_query_metrics=..,dp=<record aggregation's>>`.

  Example:
    >>> factory = fx.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
    ...     noise_multiplier=0.0, clients_per_round=4, clip=1.0)
    >>> process = factory.create(fx.TensorType(np.float32, [2]))
    >>> output = process.next(process.initialize(), [[3.0, 4.0], [0.3, 0.4]])
    >>> [round(float(x), 6) for x in output.result]  # ([0.6, 0.8] + [0.3, 0.4]) / 4
    [0.225, 0.3]
  """

  _no_weights_hint = f"{WEIGHTS_REFUSED}; {WEIGHTS_HINT}"

  def __init__(self, query: Any,
               record_aggregation_factory: Optional[AggregationFactory] = None):
    if not isinstance(query, _Query):
      raise error(TypeError, _NAME, "the query must be one federax builds (a "
                  "tensorflow_privacy DPQuery cannot run on JAX).", actual=repr(query),
                  hint=f"use {_NAME}.gaussian_fixed(...), {_NAME}.gaussian_adaptive(...) or "
                  f"{_NAME}.tree_aggregation(...)")
    self._query = query
    if record_aggregation_factory is None:
      record_aggregation_factory = SumFactory()
    # The factory must sum without raising a record's norm (TFF's assumption, not checkable).
    cu.check_unweighted_inner(_NAME, "record_aggregation_factory", record_aggregation_factory)
    self._record_aggregation_factory = record_aggregation_factory

  def __repr__(self) -> str:
    return f"<{_NAME}({type(self._query).__name__})>"

  @classmethod
  def gaussian_fixed(cls, noise_multiplier: float, clients_per_round: float, clip: float, *,
                     seed: Optional[int] = None) -> DifferentiallyPrivateFactory:
    """Clips to a fixed L2 norm `clip` and adds Gaussian noise of `noise_multiplier * clip`.

    The result is `(sum_i clip_C(v_i) + N(0, (z C)^2 I)) / clients_per_round`.

    Args:
      noise_multiplier: `z` (>= 0); about 1 or more for meaningful privacy.
      clients_per_round: the expected number of clients per round (> 0), the denominator.
      clip: `C` (> 0), the L2 norm bound of one client's value.
      seed: the noise's seed (an int), or None (default) for a secret one from the OS.

    Raises:
      TypeError: an argument that is not a number. ValueError: one out of its range.
    """
    where = f"{_NAME}.gaussian_fixed"
    z = _check(where, "noise_multiplier", noise_multiplier, "nonnegative")
    n = _check(where, "clients_per_round", clients_per_round, "positive")
    c = _check(where, "clip", clip, "positive")
    key = qe.seeded_key(qe.noise_seed(where, seed), "GaussianSumQuery")
    return cls(_NormalizedGaussianQuery(z, c, n, key))

  @classmethod
  def gaussian_adaptive(cls, noise_multiplier: float, clients_per_round: float,
                        initial_l2_norm_clip: float = 0.1, target_unclipped_quantile: float = 0.5,
                        learning_rate: float = 0.2, clipped_count_stddev: Optional[float] = None,
                        *, seed: Optional[int] = None) -> DifferentiallyPrivateFactory:
    """Adaptive clipping at a noised quantile of the clients' norms, and Gaussian noise.

    The clip `C` starts at `initial_l2_norm_clip` and follows, geometrically, the
    `target_unclipped_quantile` of the clients' norms (Andrew et al. 2021): each round the
    count of clients whose norm is at or below `C` gets Gaussian noise of
    `clipped_count_stddev` (`fx.aggregators.QuantileEstimatorQuery`). Both the values and the
    count are released, so the values' noise multiplier is raised so that together they are
    `noise_multiplier`: `z_value = (z^-2 - (2 clipped_count_stddev)^-2)^-1/2` (TFF's). The
    measurement `dp_query_metrics.clip` is the clip of the next round.

    Args:
      noise_multiplier: `z` (>= 0), the total noise multiplier of a round.
      clients_per_round: the expected number of clients per round (> 0).
      initial_l2_norm_clip: the first clip (> 0).
      target_unclipped_quantile: the fraction of clients left unclipped, in [0, 1].
      learning_rate: the clip's geometric rate (>= 0).
      clipped_count_stddev: the count's noise (>= 0); default `0.05 * clients_per_round`
        (0 when `noise_multiplier` is 0). Must exceed `noise_multiplier / 2`.
      seed: the noise's seed (an int), or None (default) for a secret one from the OS.

    Raises:
      TypeError: an argument that is not a number. ValueError: one out of its range, or a
        `clipped_count_stddev` too small for `noise_multiplier`.
    """
    where = f"{_NAME}.gaussian_adaptive"
    z = _check(where, "noise_multiplier", noise_multiplier, "nonnegative")
    n = _check(where, "clients_per_round", clients_per_round, "positive")
    clip = _check(where, "initial_l2_norm_clip", initial_l2_norm_clip, "positive")
    quantile = _check(where, "target_unclipped_quantile", target_unclipped_quantile,
                      "probability")
    rate = _check(where, "learning_rate", learning_rate, "nonnegative")
    if clipped_count_stddev is not None:
      clipped_count_stddev = _check(where, "clipped_count_stddev", clipped_count_stddev,
                                    "nonnegative")
    value_z, count_stddev = adaptive_clip_noise_params(z, n, clipped_count_stddev)
    seed = qe.noise_seed(where, seed)
    estimator = qe.QuantileEstimatorQuery(clip, quantile, rate, count_stddev, n,
                                          geometric_update=True, seed=seed)
    key = qe.seeded_key(seed, "GaussianSumQuery")
    return cls(_NormalizedAdaptiveQuery(value_z, clip, estimator, n, key))

  @classmethod
  def tree_aggregation(cls, noise_multiplier: float, clients_per_round: float,
                       l2_norm_clip: float, record_specs: Any = None,
                       noise_seed: Optional[int] = None, use_efficient: bool = True,
                       record_aggregation_factory: Optional[AggregationFactory] = None, *,
                       restart_frequency: Optional[int] = None,
                       restart_warmup: Optional[int] = None) -> DifferentiallyPrivateFactory:
    """DP-FTRL's tree aggregation: each round's noise is the residual of a binary tree's noise
    for the cumulative sum of the rounds (TFF's; Kairouz et al. 2021, arXiv:2103.00039).

    Values are clipped to `l2_norm_clip` and summed as in `gaussian_fixed`, but the noise
    added in round `t` is `N_t - N_{t-1}`, `N_t` the noise a binary tree over the rounds
    gives the cumulative sum of rounds `0..t` (every node an independent `N(0, (z C)^2)`
    draw; tensorflow_privacy's `TreeResidualSumQuery`). Summed over `T` rounds, as a server
    SGD step sums them (DP-FTRL), the released noise is `N_{T-1}`: the nodes over `T` rounds,
    one per set bit of `T` (variance `popcount(T) (z C)^2`, or with `use_efficient`, Honaker's
    estimator, `sum_d (z C)^2 / (2 - 2^-d)` over those levels `d`), where independent rounds'
    noise would give `T (z C)^2`. Each round alone gets more noise than `gaussian_fixed`'s. The
    result is divided by `clients_per_round`.

    The tree's nodes live in the state (one per level, `bit_length(restart_frequency)` levels,
    16 without restarts: a memory of that many copies of the value), with the noise key.
    Restarts (a federax addition, tfp's `RestartQuery` with `PeriodicRoundRestartIndicator`,
    as TFF's `tree_adaptive`): after round `c` (1-based) with `c % restart_frequency ==
    restart_warmup` (0 when None) the tree starts afresh, its noise key stream continued; a
    full tree (65,535 rounds without restarts) restarts too. A `restart_frequency` at least
    the number of rounds changes nothing but the memory.

    Privacy (`dp_event(rounds=T)`): dp_accounting's `SingleEpochTreeAggregationDpEvent(
    noise_multiplier, rounds in the tree)`, one per tree composed (`ComposedDpEvent`) after
    restarts: a Gaussian mechanism of noise multiplier `z / sqrt(depth)`, `depth =
    ceil(log2(rounds + 1))`, per tree (tfp's `compute_rdp_tree_restart`). It assumes no
    sampling (no amplification: do not wrap it in a sampling event) and that every client
    contributes to at most one round of each tree (one epoch per tree, restarting each epoch);
    RDP accountants only.

    Args:
      noise_multiplier: `z` (>= 0), the noise of a tree node relative to the clip.
      clients_per_round: the expected number of clients per round (> 0), the denominator.
      l2_norm_clip: `C` (> 0), the L2 norm bound of one client's value.
      record_specs: the values' shapes, TFF's argument: None (default) reads them from
        `create(value_type)`; anything `fx.to_type` takes (a type, `(dtype, shape)` pairs,
        `jax.ShapeDtypeStruct`s, structures of them) is checked against the value type.
      noise_seed: the noise's seed (an int), or None (default) for a secret one from the OS.
      use_efficient: Honaker's estimator (True, default) or the plain tree.
      record_aggregation_factory: sums the clipped values (default `SumFactory()`).
      restart_frequency: restart the tree every this many rounds (an int >= 1), or never.
      restart_warmup: the first restart after this many rounds (in [1, restart_frequency)).

    Raises:
      TypeError: an argument of the wrong type. ValueError: one out of its range.

    Example:
      >>> factory = fx.aggregators.DifferentiallyPrivateFactory.tree_aggregation(
      ...     noise_multiplier=0.0, clients_per_round=2, l2_norm_clip=1.0)
      >>> process = factory.create(fx.TensorType(np.float32, [2]))
      >>> output = process.next(process.initialize(), [[3.0, 4.0], [0.3, 0.4]])
      >>> [round(float(x), 6) for x in output.result]  # ([0.6, 0.8] + [0.3, 0.4]) / 2
      [0.45, 0.6]
    """
    where = f"{_NAME}.tree_aggregation"
    z = _check(where, "noise_multiplier", noise_multiplier, "nonnegative")
    n = _check(where, "clients_per_round", clients_per_round, "positive")
    c = _check(where, "l2_norm_clip", l2_norm_clip, "positive")
    record_type = None
    if record_specs is not None:
      try:
        record_type = to_type(record_specs)
      except TypeError as e:
        raise error(TypeError, where, "record_specs must describe the values' tensors.",
                    actual=repr(record_specs),
                    hint="e.g. fx.TensorType(np.float32, [2]), or None") from e
    if not isinstance(use_efficient, (bool, np.bool_)):
      raise error(TypeError, where, "use_efficient must be a bool.", actual=repr(use_efficient))
    period, warmup, depth = _restarts(where, restart_frequency, restart_warmup)
    key = qe.seeded_key(qe.noise_seed(where, noise_seed), "TreeResidualSumQuery")
    return cls(_NormalizedTreeQuery(z, c, n, key, bool(use_efficient), period, warmup, depth,
                                    record_type), record_aggregation_factory)

  def dp_event(self, rounds: Optional[int] = None) -> Any:
    """What one round (or the first `rounds`) releases, for a privacy accountant: a
    `dp_accounting.DpEvent`.

    `GaussianDpEvent(noise_multiplier)` for `gaussian_fixed`; for `gaussian_adaptive`
    `ComposedDpEvent([GaussianDpEvent(value noise multiplier), GaussianDpEvent(2 *
    clipped_count_stddev)])` (TFF's). Per round, without sampling: how clients are sampled
    (e.g. `PoissonSampledDpEvent`) is the training program's to add. With `rounds`, those
    rounds' events composed (`SelfComposedDpEvent`). `tree_aggregation` has no per-round
    event (its cost grows with the tree's depth): it needs `rounds` (see there).

    Raises:
      ImportError: `dp_accounting` is not installed (`pip install 'federax[privacy]'`).
      ValueError: `rounds` < 1, or no `rounds` for tree aggregation.
    """
    try:
      import dp_accounting  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError as e:
      raise ImportError(f"{_NAME}.dp_event needs the dp-accounting package, an optional "
                        f"dependency of federax: {_PRIVACY_EXTRA}") from e
    if rounds is None:
      return self._query.dp_event()
    return self._query.rounds_dp_event(cu.check_int(f"{_NAME}.dp_event", "rounds", rounds, 1))

  def create(self, value_type: Any, weight_type: Any = None) -> AggregationProcess:
    if weight_type is not None:
      raise error(TypeError, f"{_NAME}.create", f"a weighted process cannot be made: "
                  f"{WEIGHTS_REFUSED}.", actual=f"weight_type {weight_type}", hint=WEIGHTS_HINT)
    return super().create(value_type)

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    deferred = self._deferred(value_type, zeroing=False)
    next_fn = next_computation(f"{_NAME}.create(value_type)",
                               deferred.initialize.type_signature.result, value_type, None,
                               lambda state, value: deferred.step(state, value, None))
    return AggregationProcess(deferred.initialize, next_fn)

  def _deferred_create(self, value_type: t.Type, weight_type: Optional[t.Type],
                       clips: bool) -> Optional[db.Deferred]:
    """Values zeroed by a wrapper outside (`_deferred_bounds`): on the fused path, their norms
    come from the values as given, and the zeroing is applied where the sum reads them."""
    if clips or weight_type is not None or not self._fused(value_type):
      return None
    return self._deferred(value_type, zeroing=True)

  def _fused(self, value_type: t.Type) -> bool:
    """A plain sum of float32 values: the clipped values are summed as `sum_i s_i v_i`, a
    weighted client-axis reduction that reads each value once, rather than written out
    clipped (`n` copies of the value) and read again (the cost of clipping)."""
    return (type(self._record_aggregation_factory) is SumFactory
            and all(ts.dtype == np.float32 for ts in cu.tensor_types(value_type)))

  def _deferred(self, value_type: t.Type, zeroing: bool) -> db.Deferred:
    """`initialize`, and `step(state, value, bound)`: `bound` None, or (with `zeroing`, on the
    fused path only) the deferred bounds of a zeroing wrapper outside."""
    check_float_value(_NAME, value_type, hint="cast the values to float32 first (clipping and "
                      "noise are real-valued)")
    query = self._query.bind(value_type)
    where = f"{_NAME}.create(value_type)"

    @computation
    def initial_query_state():
      return query.initial_state()

    query_state_type = initial_query_state.type_signature.result
    params_fn = computation(query_state_type)(query.sample_params)
    record_fn = computation(params_fn.type_signature.result, value_type)(query.record)
    records = self._record_aggregation_factory.create(record_fn.type_signature.result)
    summed_type = records.next.type_signature.result[1].member
    fused = self._fused(value_type)
    parts_fn = computation(params_fn.type_signature.result, value_type)(query.record_parts)
    extra_type = parts_fn.type_signature.result[1]
    if zeroing:
      zeroed_parts_fn, zero_fn, zeroed_record = _zeroed_fused_fns(query, params_fn, value_type,
                                                                  extra_type)

    @computation(parts_fn.type_signature.result[0])
    def one(scale):
      del scale
      return np.int32(1)

    @computation(value_type, t.TensorType(np.float32), t.TensorType(np.int32), extra_type)
    def summed_record(mean, total_scale, count, extra):
      # The weighted mean times the total weight is the weighted sum (without clients, 0).
      total = jax.tree_util.tree_map(
          lambda m: jnp.where(count > 0, m * total_scale.astype(m.dtype), jnp.zeros_like(m)),
          mean)
      return query.record_of(total, extra)

    def fused_sum(params, value, bound):
      if bound is not None:
        return zeroed_fused_sum(params, value, bound)
      scale, extra = fi.federated_map(parts_fn, (params, value))
      return fi.federated_map(summed_record, (
          fi.federated_mean(value, scale), fi.federated_sum(scale),
          fi.federated_sum(fi.federated_map(one, scale)), sum_extra(extra)))

    def sum_extra(extra):
      return (fi.federated_sum(extra) if cu.tensor_types(extra_type)
              else fi.federated_value((), SERVER))

    def zeroed_fused_sum(params, value, bound):
      # Zeroing by a weight of 0 in the weighted mean reads each value once, as given; only a
      # round where a zeroed value has an infinite entry (0 * inf is NaN) writes out zeros.
      scale, weight, kept, has_inf, extra = fi.federated_map(zeroed_parts_fn,
                                                             (params, value, bound))
      any_inf = fi.federated_broadcast(fi.federated_map(_positive, fi.federated_sum(has_inf)))
      value = fi.federated_map(zero_fn, (value, bound, any_inf))
      return fi.federated_map(zeroed_record, (
          fi.federated_mean(value, weight), fi.federated_sum(weight), fi.federated_sum(scale),
          fi.federated_sum(fi.federated_map(one, scale)), fi.federated_sum(kept),
          sum_extra(extra)))

    @computation(summed_type, query_state_type)
    def noised_result(summed, query_state):
      return query.noised_result(summed, query_state)

    metrics_fn = computation(query_state_type)(query.metrics)

    @federated_computation
    @named(f"{where}.initialize")
    def initialize():
      return fi.federated_zip(collections.OrderedDict(
          query_state=fi.federated_eval(initial_query_state, SERVER),
          agg_state=records.initialize(),
          is_init_state=fi.federated_value(np.bool_(True), SERVER)))

    def step(state, value, bound, weight=None):
      del weight  # None: a DP factory takes no weights.
      params = fi.federated_broadcast(fi.federated_map(params_fn, state.query_state))
      if fused:  # SumFactory's state and measurements are empty.
        summed, agg_state = fused_sum(params, value, bound), state.agg_state
        agg_measurements = fi.federated_value((), SERVER)
      else:
        record_out = records.next(state.agg_state, fi.federated_map(record_fn, (params, value)))
        summed, agg_state = record_out.result, record_out.state
        agg_measurements = record_out.measurements
      result, query_state = fi.federated_map(noised_result, (summed, state.query_state))
      return MeasuredProcessOutput(
          state=fi.federated_zip(collections.OrderedDict(
              query_state=query_state, agg_state=agg_state,
              is_init_state=fi.federated_value(np.bool_(False), SERVER))),
          result=result,
          measurements=fi.federated_zip(collections.OrderedDict(
              dp_query_metrics=fi.federated_map(metrics_fn, query_state),
              dp=agg_measurements)))

    return db.Deferred(initialize, step)


@computation(t.TensorType(np.int32))
def _positive(count):
  return count > 0


def _zeroed_fused_fns(query: _Query, params_fn: Any, value_type: t.Type, extra_type: t.Type
                      ) -> tuple:
  """The fused sum's local functions for values zeroed by a wrapper outside (`_deferred_bounds`
  bounds without clipping): `(parts, zero, record)`.

  `parts(params, value, bound)`: the clipping scale (a zeroed value's norm is 0, the others'
  measured on the values as given), the weight in the mean (the scale, times 0 if zeroed),
  1 if kept, 1 if zeroed with an infinite norm (then its entries may be infinite, which a weight
  of 0 does not zero), and the query's extra. `zero(value, bound, any_inf)`: the value as given,
  or zeroed if some client's was infinite (a `cond`: only such a round writes the values out).
  `record(mean, weight sum, scale sum, count, kept, extra)`: the summed record.
  """
  def parts(params, value, bound):
    zeroed, _ = bound
    raw = _gaussian.global_norm(value)
    scale, extra = query.parts_of_norm(params, jnp.where(zeroed, jnp.float32(0.0), raw))
    weight = jnp.where(zeroed, scale * 0, scale)  # A NaN scale stays NaN, as in the mean.
    has_inf = zeroed & ~jnp.isfinite(raw)
    return scale, weight, (~zeroed).astype(jnp.int32), has_inf.astype(jnp.int32), extra

  def zero(value, bound, any_inf):
    return jax.lax.cond(any_inf, lambda v: db.apply(v, bound, False), lambda v: v, value)

  def record(mean, weight_sum, scale_sum, count, kept, extra):
    # The weighted mean times its total weight is the sum; with every value zeroed, the sum of
    # zeros (times the scale sum: NaN if a scale is).
    total = jax.tree_util.tree_map(
        lambda m: jnp.where(count > 0, jnp.where(kept > 0, m * weight_sum.astype(m.dtype),
                                                 jnp.zeros_like(m) * scale_sum.astype(m.dtype)),
                            jnp.zeros_like(m)), mean)
    return query.record_of(total, extra)

  params_type = params_fn.type_signature.result
  parts_fn = computation(params_type, value_type, db.BOUND_TYPE)(parts)
  zero_fn = computation(value_type, db.BOUND_TYPE, t.TensorType(np.bool_))(zero)
  scalar, count = t.TensorType(np.float32), t.TensorType(np.int32)
  record_fn = computation(value_type, scalar, scalar, count, count, extra_type)(record)
  return parts_fn, zero_fn, record_fn


def adaptive_clip_noise_params(noise_multiplier: float, expected_clients_per_round: float,
                               clipped_count_stddev: Optional[float] = None
                               ) -> tuple[float, float]:
  """`(value_noise_multiplier, clipped_count_stddev)` of adaptive clipping (TFF's function).

  Releasing the noised count costs privacy too; the values' noise multiplier is raised so the
  two together make `noise_multiplier`: `(z^-2 - (2 s)^-2)^-1/2` for count noise `s`
  (default `0.05 * expected_clients_per_round`; 0 and 0 without noise).

  Raises:
    ValueError: `noise_multiplier >= 2 * clipped_count_stddev` (no value noise reaches it).
  """
  where = f"{_NAME}.gaussian_adaptive"
  if noise_multiplier <= 0.0:
    return 0.0, 0.0 if clipped_count_stddev is None else clipped_count_stddev
  if clipped_count_stddev is None:
    clipped_count_stddev = 0.05 * expected_clients_per_round
  if noise_multiplier >= 2 * clipped_count_stddev:
    raise error(ValueError, where, "clipped_count_stddev is too low for the requested total "
                "noise_multiplier: the count alone would spend the budget.",
                expected=f"clipped_count_stddev > noise_multiplier / 2 = {noise_multiplier / 2}",
                actual=f"clipped_count_stddev {clipped_count_stddev} (default 0.05 * "
                "clients_per_round)", hint="raise clipped_count_stddev or clients_per_round, "
                "or lower noise_multiplier")
  value_noise_multiplier = (noise_multiplier**-2 - (2 * clipped_count_stddev)**-2)**-0.5
  if value_noise_multiplier / noise_multiplier >= 2:
    warnings.warn(f"{where}: the values get {value_noise_multiplier / noise_multiplier:.2f}x "
                  f"the noise of noise_multiplier {noise_multiplier} to pay for the noised "
                  "clipped count; raise clipped_count_stddev or clients_per_round.",
                  stacklevel=3)
  return value_noise_multiplier, clipped_count_stddev


# Levels of a tree without restarts: 65,535 rounds before it restarts on its own.
_DEFAULT_DEPTH = 16


def _restarts(where: str, frequency: Optional[int], warmup: Optional[int]
              ) -> tuple[Optional[int], int, int]:
  """`(period or None, warmup, tree depth)`, checked as tfp's `PeriodicRoundRestartIndicator`."""
  if frequency is None:
    if warmup is not None:
      raise error(ValueError, where, "restart_warmup needs restart_frequency.",
                  actual=f"restart_warmup {warmup!r}, restart_frequency None",
                  hint="pass restart_frequency too, or neither")
    return None, 0, _DEFAULT_DEPTH
  frequency = cu.check_int(where, "restart_frequency", frequency, 1)
  if warmup is not None:
    warmup = cu.check_int(where, "restart_warmup", warmup, 1, frequency - 1)
  # The longest tree holds `frequency` rounds: enough levels that it is never full first.
  return frequency, warmup or 0, frequency.bit_length()


def _check(where: str, name: str, value: Any, check: str) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise error(TypeError, where, f"{name} must be a number.", actual=repr(value))
  value = float(value)
  valid, expected = {"positive": (value > 0, "a finite float > 0"),
                     "nonnegative": (value >= 0, "a finite float >= 0"),
                     "probability": (0 <= value <= 1, "a float in [0, 1]")}[check]
  if not (valid and math.isfinite(value)):
    raise error(ValueError, where, f"{name} must be {expected}.", expected=expected,
                actual=repr(value))
  return value
