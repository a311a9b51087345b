"""`UnweightedReservoirSamplingFactory`: a uniform sample of the client values at the server,
by reservoir sampling in one `federated_aggregate` (TFF's)."""

from __future__ import annotations

import collections
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import make_container
from federax.templates.measured_process import MeasuredProcessOutput
from federax.templates._naming import named
from federax.aggregators.factory import AggregationProcess, UnweightedAggregationFactory

_NAME = "UnweightedReservoirSamplingFactory"
EMPTY = -1  # The random value of a reservoir slot no client filled (clients draw >= 0).


class UnweightedReservoirSamplingFactory(UnweightedAggregationFactory):
  """A uniform random sample, without replacement, of at most `sample_size` client values.

  Every client draws a random int32 priority in [0, 2**31 - 1] from its own PRNG key; the
  `sample_size` clients with the largest priorities are kept (reservoir sampling as a
  `federated_aggregate`: accumulate and merge each keep the top `sample_size`), so every
  subset of that size is equally likely.

  The result is the values stacked on a leading axis of `sample_size` (`{V}@CLIENTS ->
  V'@SERVER`, every tensor `[sample_size, ...]`), ordered by decreasing priority (a random
  order). With fewer than `sample_size` clients, all `n` are sampled: rows `[0, n)` hold them
  and the remaining rows are zeros (with `return_sampling_metadata`, their `random_values` are
  -1). TFF's result has an unknown leading dimension instead (`float32[?]`) and fewer rows.

  State: the PRNG key (`uint32[2]@SERVER`), split every round, so each round draws afresh and
  a run is reproducible from the runtime's seed (TFF keeps `<>` and seeds from the clock).
  Measurements: for each tensor of `V`, the int32 number of clients whose tensor has a NaN or
  infinite entry (TFF's, in int64 there).

  Args:
    sample_size: the most values kept (an int > 0).
    return_sampling_metadata: if True, the result is `<random_seed=uint32[2],
      random_values=int32[sample_size],samples=V'>`: the round's key, the kept priorities
      (-1 for empty rows), the samples.

  Example:
    >>> process = fx.aggregators.UnweightedReservoirSamplingFactory(2).create(
    ...     fx.TensorType(np.float32))
    >>> output = process.next(process.initialize(), [1.0, 2.0, 3.0])
    >>> sample = output.result
    >>> sample.shape, set(sample.tolist()) <= {1.0, 2.0, 3.0}, len(set(sample.tolist()))
    ((2,), True, 2)
  """

  def __init__(self, sample_size: int, return_sampling_metadata: bool = False):
    if isinstance(sample_size, bool) or not isinstance(sample_size, (int, np.integer)):
      raise error(TypeError, _NAME, "sample_size must be an int.", actual=repr(sample_size))
    if sample_size <= 0:
      raise error(ValueError, _NAME, "sample_size must be positive.", expected="an int > 0",
                  actual=repr(sample_size))
    if not isinstance(return_sampling_metadata, bool):
      raise error(TypeError, _NAME, "return_sampling_metadata must be a bool.",
                  actual=repr(return_sampling_metadata))
    self._sample_size = int(sample_size)
    self._return_sampling_metadata = return_sampling_metadata

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    if not (t.is_numeric(value_type) and _fully_defined(value_type)):
      raise error(TypeError, f"{_NAME}.create", "the values must be numeric tensors of known "
                  "shapes (or structures of them).", actual=f"value_type {value_type}")
    k = self._sample_size
    metadata = self._return_sampling_metadata

    @computation
    def initial_key(key):
      return key

    @computation(fi.KEY_TYPE)
    def split(key):
      state_key, round_key = jax.random.split(key)
      return state_key, round_key

    @computation(fi.KEY_TYPE)
    def priority(key):
      # 31 random bits: every client's value is >= 0, so EMPTY marks unfilled slots.
      return (jax.random.bits(key, (), jnp.uint32) >> 1).astype(jnp.int32)

    @computation(value_type)
    def non_finite(value):
      def leaf(x):
        if not jnp.issubdtype(x.dtype, jnp.inexact):
          return jnp.int32(0)
        return jnp.logical_not(jnp.all(jnp.isfinite(x))).astype(jnp.int32)

      return jax.tree_util.tree_map(leaf, value)

    def keep_top(random_values, samples):
      """The `k` largest random values and their samples, largest first."""
      top, index = jax.lax.top_k(random_values, k)
      return collections.OrderedDict(
          random_values=top,
          samples=jax.tree_util.tree_map(lambda s: jnp.take(s, index, axis=0), samples))

    def accumulate(reservoir, element):
      random_value, value = element
      return keep_top(
          jnp.concatenate([reservoir["random_values"], random_value[None]]),
          jax.tree_util.tree_map(lambda s, v: jnp.concatenate([s, v[None]]),
                                 reservoir["samples"], value))

    def merge(a, b):
      return keep_top(
          jnp.concatenate([a["random_values"], b["random_values"]]),
          jax.tree_util.tree_map(lambda x, y: jnp.concatenate([x, y]), a["samples"],
                                 b["samples"]))

    def report(reservoir):
      return reservoir if metadata else reservoir["samples"]

    zero = collections.OrderedDict(
        random_values=np.full([k], EMPTY, np.int32),
        samples=_stacked_zeros(value_type, k))

    @computation(fi.KEY_TYPE, _reservoir_type(value_type, k))
    def with_key(key, reservoir):
      return collections.OrderedDict(random_seed=key, random_values=reservoir["random_values"],
                                     samples=reservoir["samples"])

    @federated_computation
    @named(f"{_NAME}.create(value_type).initialize")
    def initialize():
      # The runtime's seed-derived key: runs repeat, rounds differ (the state advances it).
      return fi.federated_eval(initial_key, SERVER)

    @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS))
    @named(f"{_NAME}.create(value_type).next")
    def next_fn(state, value):
      keys = fi.federated_map(split, state)
      state_key, round_key = keys[0], keys[1]
      priorities = fi.federated_map(priority, fi.federated_client_keys(round_key))
      sampled = fi.federated_aggregate(fi.federated_zip((priorities, value)), zero,
                                       accumulate, merge, report)
      return MeasuredProcessOutput(
          state=state_key,
          result=fi.federated_map(with_key, (round_key, sampled)) if metadata else sampled,
          measurements=fi.federated_sum(fi.federated_map(non_finite, value)))

    return AggregationProcess(initialize, next_fn)


def _fully_defined(value_type: t.Type) -> bool:
  if isinstance(value_type, t.TensorType):
    return value_type.is_fully_defined
  return isinstance(value_type, t.StructType) and all(
      _fully_defined(element) for element in value_type)


def _stacked_zeros(value_type: t.Type, k: int):
  """Zeros of `value_type` with every tensor given a leading axis of `k`, in its containers."""
  if isinstance(value_type, t.TensorType):
    return np.zeros((k, *value_type.shape), value_type.dtype)
  return make_container(tuple(_stacked_zeros(e, k) for e in value_type), value_type)


def _stacked_type(value_type: t.Type, k: int) -> t.Type:
  if isinstance(value_type, t.TensorType):
    return t.TensorType(value_type.dtype, (k, *value_type.shape))
  return t.StructType([(name, _stacked_type(e, k)) for name, e in value_type.items()],
                      value_type.container_type)


def _reservoir_type(value_type: t.Type, k: int) -> t.Type:
  """The accumulator's type: the kept random values and their samples."""
  return t.StructType([("random_values", t.TensorType(np.int32, [k])),
                       ("samples", _stacked_type(value_type, k))], collections.OrderedDict)
