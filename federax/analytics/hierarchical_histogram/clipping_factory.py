"""`HistogramClippingSumFactory` (TFF's): each client's histogram cut down to at most
`max_records_per_user` records by sampling without replacement, then aggregated."""

from __future__ import annotations

import collections
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.aggregators.factory import (AggregationFactory, AggregationProcess,
                                         UnweightedAggregationFactory)
from federax.aggregators.quantile_estimation import noise_seed, seeded_key
from federax.aggregators.sum_factory import SumFactory
from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER
from federax.templates._naming import named
from federax.templates.measured_process import MeasuredProcessOutput

__all__ = ["CLIP_MECHANISMS", "HistogramClippingSumFactory", "distinct_clip", "sub_sample_clip"]

CLIP_MECHANISMS = ["sub-sampling", "distinct"]
_NAME = "HistogramClippingSumFactory"


def sub_sample_clip(histogram: Any, max_records: int, key: Any) -> jax.Array:
  """Keeps `max_records` of a histogram's records, drawn uniformly without replacement.

  `int[num_bins] -> int[num_bins]`: a histogram with at most `max_records` records comes back
  as it is. Otherwise `max_records` distinct record positions are drawn from `[0, total)` by
  Floyd's algorithm (every subset equally likely) and counted back into bins, so the result
  follows the multivariate hypergeometric law TFF's top-k over random keys draws from. Costs
  `O(max_records**2 + num_bins)`; no array grows with the number of records. Use `jax.vmap`
  for many clients.

  Example:
    >>> from federax.analytics.hierarchical_histogram import clipping_factory
    >>> clipped = clipping_factory.sub_sample_clip(np.array([1, 2, 3, 5]), 5,
    ...                                            jax.random.PRNGKey(0))
    >>> int(clipped.sum()), bool(np.all(np.asarray(clipped) <= [1, 2, 3, 5]))
    (5, True)
  """
  histogram = jnp.asarray(histogram)
  total = jnp.sum(histogram)
  # Floyd's step i draws t uniformly in [0, j], j = total - k + i; all k draws at once.
  last = total - max_records + jnp.arange(max_records, dtype=total.dtype)
  picks = _uniform_below(key, jnp.maximum(last, 0) + 1).astype(total.dtype)

  def draw(i, positions):
    # Position j joins if t is already taken, else t does: every k-subset equally likely.
    pick = picks[i]
    return positions.at[i].set(jnp.where(jnp.any(positions == pick), last[i], pick))

  positions = jax.lax.fori_loop(0, max_records, draw,
                                jnp.full([max_records], -1, total.dtype))
  bins = jnp.searchsorted(jnp.cumsum(histogram), positions, side="right")
  sampled = jnp.zeros_like(histogram).at[bins].add(1, mode="drop")
  return jnp.where(total > max_records, sampled, histogram)


def _uniform_below(key: jax.Array, span: jax.Array) -> jax.Array:
  """Integers uniform in `[0, span)`, one per entry of `span` (positive int32): two random
  32-bit words reduced modulo `span` exactly as `jax.random.randint` reduces them (uniform for
  spans below 2**16, nearly so above), drawn in one call of the generator instead of
  randint's three, which halves the compile time of a vmapped clip."""
  span = span.astype(jnp.uint32)
  higher, lower = jax.random.bits(key, (2, *span.shape), jnp.uint32)
  multiplier = jnp.uint32(2**16) % span
  multiplier = (multiplier * multiplier) % span  # 2**32 mod span.
  return ((higher % span) * multiplier + lower % span) % span


def distinct_clip(histogram: Any, max_records: int, key: Any) -> jax.Array:
  """Keeps at most `max_records` distinct bins, each counted once: the bins a client has
  records in, uniformly sampled without replacement when there are more (TFF's 'distinct').

  Example:
    >>> from federax.analytics.hierarchical_histogram import clipping_factory
    >>> clipping_factory.distinct_clip(np.array([0, 2, 3, 0]), 5,
    ...                                jax.random.PRNGKey(0)).tolist()
    [0, 1, 1, 0]
  """
  return sub_sample_clip(jnp.minimum(jnp.asarray(histogram), 1), max_records, key)


class HistogramClippingSumFactory(UnweightedAggregationFactory):
  """Bounds each client's contribution to a histogram, then aggregates (TFF's).

  - `'sub-sampling'`: a client with more than `max_records_per_user` records keeps that many,
    sampled uniformly without replacement (`sub_sample_clip`): `[1, 2, 3, 5]` with 5 kept may
    become `[1, 2, 1, 1]` or `[0, 0, 0, 5]`.
  - `'distinct'`: each bin counts once (`[0, 2, 3, 5]` -> `[0, 1, 1, 1]`), and at most
    `max_records_per_user` such bins are kept, sampled uniformly (`distinct_clip`).

  The clipped histograms (cast to float32 with `cast_to_float`) go to `inner_agg_factory`
  (default `fx.aggregators.SumFactory()`), whose result and measurements the process returns.

  Each client samples with its own key: the state's key is split every round and
  `fx.federated_client_keys` derives the clients' keys from it, so runs repeat for a `seed`
  and every round samples afresh (TFF seeds from the clock instead). State:
  `<sampling_key=uint32[2],inner_agg_process=...>`.

  Args:
    clip_mechanism: `'sub-sampling'` (default) or `'distinct'`.
    max_records_per_user: the most records a client contributes (an int >= 1).
    inner_agg_factory: the aggregation of the clipped histograms.
    cast_to_float: cast the clipped histograms to float32 before `inner_agg_factory`.
    seed: the sampling's seed (a federax addition); None draws a secret one from the OS.

  Raises:
    ValueError: an unknown `clip_mechanism` or `max_records_per_user < 1`. From `create`:
      TypeError, if the value is not an integer tensor.

  Example:
    >>> factory = fx.analytics.hierarchical_histogram.HistogramClippingSumFactory(
    ...     'distinct', max_records_per_user=2, seed=0)
    >>> process = factory.create(fx.TensorType(np.int32, [4]))
    >>> result = process.next(process.initialize(), [[0, 3, 0, 1], [0, 4, 0, 0]]).result
    >>> result.tolist()  # [0, 1, 0, 1] + [0, 1, 0, 0]
    [0, 2, 0, 1]
  """

  def __init__(self, clip_mechanism: str = "sub-sampling", max_records_per_user: int = 10,
               inner_agg_factory: Optional[AggregationFactory] = None,
               cast_to_float: bool = False, *, seed: Optional[int] = None):
    check_membership(_NAME, "clip_mechanism", clip_mechanism, CLIP_MECHANISMS)
    check_int(_NAME, "max_records_per_user", max_records_per_user, 1)
    self._clip_mechanism = clip_mechanism
    self._max_records_per_user = int(max_records_per_user)
    self._inner_agg_factory = SumFactory() if inner_agg_factory is None else inner_agg_factory
    self._cast_to_float = bool(cast_to_float)
    self._key = seeded_key(noise_seed(_NAME, seed), _NAME)

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    if not (isinstance(value_type, t.TensorType) and value_type.dtype.kind in "iu"
            and value_type.shape is not None and len(value_type.shape) == 1
            and value_type.is_fully_defined):
      raise error(TypeError, f"{_NAME}.create", "the value must be a histogram: a vector of "
                  "integer counts.", expected="an integer vector, e.g. int32[num_bins]",
                  actual=f"value_type {value_type}")
    clip = sub_sample_clip if self._clip_mechanism == "sub-sampling" else distinct_clip
    k = self._max_records_per_user
    inner_type = t.TensorType(np.float32 if self._cast_to_float else value_type.dtype,
                              value_type.shape)
    inner = self._inner_agg_factory.create(inner_type)
    key = self._key
    where = f"{_NAME}.create(value_type)"

    @computation
    def initial_key():
      return key

    @computation(fi.KEY_TYPE)
    def split(state_key):
      next_key, round_key = jax.random.split(state_key)
      return next_key, round_key

    @computation(value_type, fi.KEY_TYPE)
    def clip_fn(histogram, client_key):
      return clip(histogram, k, client_key).astype(inner_type.dtype)

    @federated_computation
    @named(f"{where}.initialize")
    def initialize():
      return fi.federated_zip(collections.OrderedDict(
          sampling_key=fi.federated_eval(initial_key, SERVER),
          inner_agg_process=inner.initialize()))

    @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS))
    @named(f"{where}.next")
    def next_fn(state, value):
      keys = fi.federated_map(split, state.sampling_key)
      clipped = fi.federated_map(clip_fn, (value, fi.federated_client_keys(keys[1])))
      output = inner.next(state.inner_agg_process, clipped)
      return MeasuredProcessOutput(
          state=fi.federated_zip(collections.OrderedDict(
              sampling_key=keys[0], inner_agg_process=output.state)),
          result=output.result, measurements=output.measurements)

    return AggregationProcess(initialize, next_fn)


def check_membership(where: str, name: str, value: Any, valid: list) -> None:
  if value not in valid:
    raise error(ValueError, where, f"unknown {name}.", expected=f"one of {valid}",
                actual=repr(value))


def check_int(where: str, name: str, value: Any, low: int, high: Optional[int] = None) -> None:
  """Raises unless `value` is an int in `[low, high]` (TypeError for a non-int)."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise error(TypeError, where, f"{name} must be an int.", actual=repr(value))
  if value < low or (high is not None and value > high):
    bound = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"
    raise error(ValueError, where, f"{name} must be {bound}.", expected=bound, actual=value)
