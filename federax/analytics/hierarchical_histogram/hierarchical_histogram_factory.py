"""The aggregation of hierarchical histograms (TFF's `hierarchical_histogram_factory`): clip each
client's histogram, build its tree, sum the trees (securely or not), add the DP mechanism's noise.

TFF composes `HistogramClippingSumFactory(DifferentiallyPrivateFactory(TreeRangeSumQuery,
sum))`; federax composes `HistogramClippingSumFactory(TreeRangeSumFactory(sum))`, where
`TreeRangeSumFactory` does the query's work on JAX: the tree at the clients, discrete Gaussian
noise at the clients ('distributed-discrete-gaussian') or Gaussian noise at the server
('central-gaussian'), each drawn from a key in the state.
"""

from __future__ import annotations

import collections
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.aggregators import _discrete_gaussian, secure
from federax.aggregators.factory import (AggregationFactory, AggregationProcess,
                                         UnweightedAggregationFactory)
from federax.aggregators.quantile_estimation import noise_seed, seeded_key
from federax.aggregators.sum_factory import SumFactory
from federax.analytics.hierarchical_histogram import build_tree_from_leaf as trees
from federax.analytics.hierarchical_histogram import clipping_factory
from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER
from federax.templates._naming import named
from federax.templates.measured_process import MeasuredProcessOutput

__all__ = ["CENTRAL_DP_MECHANISMS", "DISTRIBUTED_DP_MECHANISMS", "DP_MECHANISMS",
           "NO_NOISE_MECHANISMS", "TreeRangeSumFactory",
           "create_hierarchical_histogram_aggregation_factory", "l2_norm_bound"]

NO_NOISE_MECHANISMS = ["no-noise"]
CENTRAL_DP_MECHANISMS = ["central-gaussian"]
DISTRIBUTED_DP_MECHANISMS = ["distributed-discrete-gaussian"]
DP_MECHANISMS = CENTRAL_DP_MECHANISMS + DISTRIBUTED_DP_MECHANISMS + NO_NOISE_MECHANISMS
MAX_BITS = 22  # TFF's: a larger field could overflow inside secure aggregation.
_PROCESS = "build_hierarchical_histogram_process"  # What the user called, in errors.


def l2_norm_bound(num_bins: int, arity: int, clip_mechanism: str,
                  max_records_per_user: int) -> float:
  """The largest L2 norm of one client's clipped tree: the DP mechanisms' sensitivity (TFF's).

  Every layer of a tree sums to at most `k = max_records_per_user`. 'sub-sampling': a layer's
  norm is at most `k`, so `k * sqrt(depth)`. 'distinct': the leaves are 0/1, so the bottom
  layer's squared norm is at most `k`, the next at most `arity * k`, ..., each also at most
  `k**2`.

  Example:
    >>> from federax.analytics.hierarchical_histogram import hierarchical_histogram_factory
    >>> hierarchical_histogram_factory.l2_norm_bound(8, 2, 'sub-sampling', 3)  # 3 * sqrt(4)
    6.0
  """
  depth = trees.tree_depth(num_bins, arity)
  if clip_mechanism == "sub-sampling":
    return max_records_per_user * math.sqrt(depth)
  square, layer_square = 0.0, float(max_records_per_user)
  for _ in range(depth):
    square += min(max_records_per_user**2, layer_square)
    layer_square *= arity
  return math.sqrt(square)


def create_hierarchical_histogram_aggregation_factory(
    num_bins: int, arity: int = 2, clip_mechanism: str = "sub-sampling",
    max_records_per_user: int = 10, dp_mechanism: str = "no-noise",
    noise_multiplier: float = 0.0, expected_clients_per_round: int = 10, bits: int = 22,
    enable_secure_sum: bool = True, *, seed: Optional[int] = None) -> AggregationFactory:
  """The factory that aggregates `{int32[num_bins]}@CLIENTS` histograms into a noised tree.

  From the outside in (TFF's composition): `HistogramClippingSumFactory` clips each histogram
  to `max_records_per_user` records (cast to float32 for 'central-gaussian');
  `TreeRangeSumFactory` builds each client's tree and adds the mechanism's noise; the sum is
  `fx.aggregators.SumFactory`, or with `enable_secure_sum` `SecureSumFactory(k)` ('no-noise'),
  `SecureSumFactory(float(k))` ('central-gaussian') or `SecureModularSumFactory(2**(bits - 1),
  symmetric_range=True)` ('distributed-discrete-gaussian').

  The noise is calibrated to `l2_norm_bound(...)`, `C`: 'central-gaussian' adds
  `N(0, (noise_multiplier * C)**2)` to every node at the server; 'distributed-discrete-gaussian'
  has every client add discrete Gaussian noise of scale
  `ceil(noise_multiplier * C / sqrt(expected_clients_per_round))` to every node (TFF rounds
  the scale up), so the sum of `n` clients' noise has standard deviation about
  `sqrt(n) * scale`.

  Args are those of `build_hierarchical_histogram_process`.

  Raises:
    TypeError: an argument of the wrong type. ValueError: one out of its range, or `bits` too
      small for the distributed mechanism's sums (TFF's checks).
  """
  check_arguments(num_bins, arity, clip_mechanism, max_records_per_user, dp_mechanism,
                  noise_multiplier, expected_clients_per_round, bits, enable_secure_sum)
  bound = l2_norm_bound(num_bins, arity, clip_mechanism, max_records_per_user)
  if not enable_secure_sum:
    inner: AggregationFactory = SumFactory()
  elif dp_mechanism == "no-noise":
    inner = secure.SecureSumFactory(max_records_per_user)
  elif dp_mechanism == "central-gaussian":
    inner = secure.SecureSumFactory(float(max_records_per_user))
  else:
    needed = math.log2(4 * math.sqrt(expected_clients_per_round) * noise_multiplier * bound
                       + expected_clients_per_round * max_records_per_user) + 1
    if bits < needed:
      raise error(ValueError, _PROCESS, f"bits={bits} is too "
                  "small for the sums of the distributed mechanism: they would wrap around the "
                  "field and ruin the result.", expected=f"bits >= {math.ceil(needed)} (log2(4 "
                  "sqrt(expected_clients_per_round) noise_multiplier l2_norm_bound + "
                  "expected_clients_per_round max_records_per_user) + 1)", actual=bits,
                  hint="raise bits (at most 22), or lower expected_clients_per_round, "
                  "max_records_per_user or noise_multiplier")
    inner = secure.SecureModularSumFactory(2**(bits - 1), symmetric_range=True)
  seed = noise_seed(_PROCESS, seed)
  if dp_mechanism == "central-gaussian":
    stddev = noise_multiplier * bound
  elif dp_mechanism == "distributed-discrete-gaussian":
    stddev = noise_multiplier * bound / math.sqrt(expected_clients_per_round)
  else:
    stddev = 0.0
  tree = TreeRangeSumFactory(arity, dp_mechanism, stddev, inner, seed=seed)
  return clipping_factory.HistogramClippingSumFactory(
      clip_mechanism, max_records_per_user, tree,
      cast_to_float=dp_mechanism == "central-gaussian", seed=seed)


def check_arguments(num_bins, arity, clip_mechanism, max_records_per_user, dp_mechanism,
                    noise_multiplier, expected_clients_per_round, bits,
                    enable_secure_sum) -> None:
  """TFF's checks of the histogram's parameters, each a clear error (named as the process)."""
  check_int = clipping_factory.check_int
  check_int(_PROCESS, "num_bins", num_bins, 1)
  check_int(_PROCESS, "arity", arity, 2)
  clipping_factory.check_membership(_PROCESS, "clip_mechanism", clip_mechanism,
                                    clipping_factory.CLIP_MECHANISMS)
  check_int(_PROCESS, "max_records_per_user", max_records_per_user, 1)
  clipping_factory.check_membership(_PROCESS, "dp_mechanism", dp_mechanism, DP_MECHANISMS)
  if (isinstance(noise_multiplier, bool)
      or not isinstance(noise_multiplier, (int, float, np.integer, np.floating))):
    raise error(TypeError, _PROCESS, "noise_multiplier must be a number.",
                actual=repr(noise_multiplier))
  if not (noise_multiplier >= 0 and math.isfinite(noise_multiplier)):
    raise error(ValueError, _PROCESS, "noise_multiplier must be non-negative and finite.",
                expected="a float >= 0", actual=noise_multiplier)
  check_int(_PROCESS, "expected_clients_per_round", expected_clients_per_round, 1)
  check_int(_PROCESS, "bits", bits, 1, MAX_BITS)
  if bits < math.log2(expected_clients_per_round):
    raise error(ValueError, _PROCESS, "bits must be at least log2(expected_clients_per_round): "
                "the secure sums of that many clients would overflow.",
                expected=f"bits >= {math.ceil(math.log2(expected_clients_per_round))}",
                actual=f"bits={bits}, expected_clients_per_round={expected_clients_per_round}")
  if not isinstance(enable_secure_sum, (bool, np.bool_)):
    raise error(TypeError, _PROCESS, "enable_secure_sum must be a bool.",
                actual=repr(enable_secure_sum))
  if not enable_secure_sum and dp_mechanism in DISTRIBUTED_DP_MECHANISMS:
    raise error(ValueError, _PROCESS, f"dp_mechanism {dp_mechanism!r} needs secure sums: "
                "without them the server sees every client's noised tree, and the distributed "
                "noise alone does not protect it.", expected="enable_secure_sum=True",
                actual="enable_secure_sum=False")


class TreeRangeSumFactory(UnweightedAggregationFactory):
  """Sums the clients' histogram trees, with a mechanism's noise (tfp's `TreeRangeSumQuery`).

  `{T[num_bins]}@CLIENTS -> T[num_nodes]@SERVER`: each client's histogram becomes its flat
  tree (`build_tree_from_leaf.build_tree`), the trees are summed by `record_aggregation_factory`
  and noised by `dp_mechanism`:
  - 'no-noise': nothing added.
  - 'central-gaussian': `N(0, stddev**2)` on every node of the sum, at the server (float `T`).
  - 'distributed-discrete-gaussian': each client adds discrete Gaussian noise of scale
    `ceil(stddev)` to every node of its tree before the sum (integer `T`).

  The noise key lives in the state (`<query_state=<noise_key=uint32[2]>,agg_state=...>`; no
  key without noise), split every round; clients' keys come from `fx.federated_client_keys`.
  In simulation the server could recompute the clients' noise from its key: a deployment
  draws it on the devices. Measurements: `<dp_query_metrics=<>,dp=the sum's>` (TFF's).

  Args:
    arity: the tree's branching factor (>= 2).
    dp_mechanism: one of `DP_MECHANISMS`.
    stddev: the noise's standard deviation (central) or per-client scale (distributed).
    record_aggregation_factory: sums the trees (default `fx.aggregators.SumFactory()`).
    seed: the noise's seed; None draws a secret one from the OS.
  """

  def __init__(self, arity: int, dp_mechanism: str, stddev: float = 0.0,
               record_aggregation_factory: Optional[AggregationFactory] = None, *,
               seed: Optional[int] = None):
    name = "TreeRangeSumFactory"
    clipping_factory.check_int(name, "arity", arity, 2)
    clipping_factory.check_membership(name, "dp_mechanism", dp_mechanism, DP_MECHANISMS)
    self._arity = int(arity)
    self._mechanism = dp_mechanism
    self._stddev = float(stddev)
    self._inner = SumFactory() if record_aggregation_factory is None else (
        record_aggregation_factory)
    self._key = seeded_key(noise_seed(name, seed), name)

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    name = "TreeRangeSumFactory.create"
    float_needed = self._mechanism == "central-gaussian"
    if not (isinstance(value_type, t.TensorType) and value_type.shape is not None
            and len(value_type.shape) == 1 and value_type.is_fully_defined
            and value_type.dtype.kind in ("f" if float_needed else "iu")):
      kind = "float" if float_needed else "integer"
      raise error(TypeError, name, f"the value must be a histogram of {kind} counts.",
                  expected=f"a {kind} vector, e.g. {'float32' if float_needed else 'int32'}"
                  "[num_bins]", actual=f"value_type {value_type}")
    arity, mechanism, stddev, key = self._arity, self._mechanism, self._stddev, self._key
    size = trees.num_nodes(value_type.shape[0], arity)
    tree_type = t.TensorType(value_type.dtype, [size])
    records = self._inner.create(tree_type)
    noisy = mechanism != "no-noise"
    where = "TreeRangeSumFactory.create(value_type)"

    @computation
    def initial_query_state():
      return collections.OrderedDict(noise_key=key) if noisy else ()

    @computation(fi.KEY_TYPE)
    def split(state_key):
      next_key, round_key = jax.random.split(state_key)
      return next_key, round_key

    @computation(value_type)
    def tree(histogram):
      return trees.build_tree(histogram, arity)

    def noised_tree(histogram, client_key):
      return trees.build_tree(histogram, arity) + _discrete_noise(client_key, size, stddev)

    def add_gaussian(total, round_key):
      noise = jax.random.normal(round_key, total.shape, jnp.float32) * jnp.float32(stddev)
      return total + noise.astype(total.dtype)

    @federated_computation
    @named(f"{where}.initialize")
    def initialize():
      return fi.federated_zip(collections.OrderedDict(
          query_state=fi.federated_eval(initial_query_state, SERVER),
          agg_state=records.initialize()))

    @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS))
    @named(f"{where}.next")
    def next_fn(state, value):
      query_state = state.query_state
      if noisy:
        keys = fi.federated_map(split, query_state.noise_key)
        query_state = fi.federated_zip(collections.OrderedDict(noise_key=keys[0]))
      if mechanism == "distributed-discrete-gaussian":
        record = fi.federated_map(computation(value_type, fi.KEY_TYPE)(noised_tree),
                                  (value, fi.federated_client_keys(keys[1])))
      else:
        record = fi.federated_map(tree, value)
      output = records.next(state.agg_state, record)
      result = output.result
      if mechanism == "central-gaussian":
        result = fi.federated_map(computation(tree_type, fi.KEY_TYPE)(add_gaussian),
                                  (result, keys[1]))
      return MeasuredProcessOutput(
          state=fi.federated_zip(collections.OrderedDict(query_state=query_state,
                                                         agg_state=output.state)),
          result=result,
          measurements=fi.federated_zip(collections.OrderedDict(
              dp_query_metrics=fi.federated_value((), SERVER), dp=output.measurements)))

    return AggregationProcess(initialize, next_fn)


def _discrete_noise(key: jax.Array, size: int, scale: float) -> jax.Array:
  """int32 discrete Gaussian noise of scale `ceil(scale)` (tfp rounds it up), or zeros."""
  scale = math.ceil(scale)
  if scale == 0:
    return jnp.zeros([size], jnp.int32)
  return _discrete_gaussian.sample(key, (size,), scale).astype(jnp.int32)
