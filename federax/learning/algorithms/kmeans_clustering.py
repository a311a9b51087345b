"""Federated mini-batch k-means (Sculley 2010, "Web-Scale K-Means Clustering"), TFF's
`build_fed_kmeans`: clients assign their points, the server moves the centroids."""

from __future__ import annotations

import collections
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.aggregators import AggregationFactory, SumFactory
from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type
from federax.learning.templates import (ClientResult, ClientWorkProcess, DistributionProcess,
                                        FinalizerProcess, LearningProcess, build_broadcast_process,
                                        compose_learning_process)
from federax.templates.measured_process import MeasuredProcessOutput

_NAME = "build_fed_kmeans"
_POINT = np.float32
_WEIGHT = np.float32


def _closest(centroids, point):
  """The index (int32) of the centroid nearest to `point` in squared Euclidean distance."""
  diff = (centroids - point).reshape(centroids.shape[0], -1)
  return jnp.argmin(jnp.sum(diff * diff, axis=1)).astype(jnp.int32)


def _client_work(centroids_type: t.Type, data_type: t.Type, num_clusters: int):
  """Each client: per-cluster sums of its points and counts; measurements `<num_examples>`."""
  # The accumulator carries the centroids along (a reduction step sees only acc and element).
  acc_type = to_type((centroids_type, centroids_type, t.TensorType(_WEIGHT, (num_clusters,)),
                        t.TensorType(_WEIGHT)))

  @computation(acc_type, data_type.element)
  def step(acc, point):
    centers, sums, weights, count = acc
    index = _closest(centers, point)
    return centers, sums.at[index].add(point), weights.at[index].add(1.0), count + 1.0

  @computation(centroids_type)
  def begin(centers):
    return (centers, jnp.zeros_like(centers), jnp.zeros((num_clusters,), _WEIGHT),
            jnp.zeros((), _WEIGHT))

  @computation(acc_type)
  def finish(acc):
    _, sums, weights, count = acc
    return (ClientResult(update=(sums, weights), update_weight=()),
            collections.OrderedDict(num_examples=count))

  @federated_computation(centroids_type, data_type)
  def client_update(centroids, data):
    return finish(fi.sequence_reduce(data, begin(centroids), step))

  @federated_computation
  def initialize():
    return fi.federated_value((), SERVER)

  @federated_computation(initialize.type_signature.result, t.FederatedType(centroids_type, CLIENTS),
                         t.FederatedType(data_type, CLIENTS))
  def next_fn(state, centroids, client_data):
    result, stats = fi.federated_map(client_update, (centroids, client_data))
    return MeasuredProcessOutput(state, result, fi.federated_sum(stats))

  return ClientWorkProcess(initialize, next_fn)


def update_centroids(centroids, weights, new_sums, new_weights):
  """TFF's server step: a cluster's centroid becomes the weighted mean of its current centroid
  (weight `weights`, the points it has absorbed so far) and the new points (sum `new_sums`,
  count `new_weights`); a cluster that got no new point stays. Returns `(centroids, weights)`."""
  total = weights + new_weights
  safe = jnp.where(total == 0, 1.0, total)
  current_scale = jnp.where(total == 0, 0.0, weights / safe)
  new_scale = jnp.where((new_weights > 0) & (total != 0), 1.0 / safe, 0.0)
  shape = (centroids.shape[0],) + (1,) * (centroids.ndim - 1)
  return (current_scale.reshape(shape) * centroids + new_scale.reshape(shape) * new_sums, total)


def _finalizer(centroids_type: t.Type, num_clusters: int) -> FinalizerProcess:
  """State: the clusters' weights, float32[num_clusters], starting at 1 (TFF's pseudo-count)."""
  @computation
  def initial_weights():
    return jnp.ones((num_clusters,), _WEIGHT)

  weights_type = initial_weights.type_signature.result

  @federated_computation
  def initialize():
    return fi.federated_eval(initial_weights, SERVER)

  update = computation(centroids_type, weights_type, centroids_type, weights_type)(
      update_centroids)

  @federated_computation(initialize.type_signature.result,
                         t.FederatedType(centroids_type, SERVER),
                         t.FederatedType(to_type((centroids_type, weights_type)), SERVER))
  def next_fn(state, centroids, summed):
    new_sums, new_weights = summed
    new_centroids, new_state = fi.federated_map(update, (centroids, state, new_sums, new_weights))
    return MeasuredProcessOutput(new_state, new_centroids, fi.federated_value((), SERVER))

  return FinalizerProcess(initialize, next_fn)


def build_fed_kmeans(num_clusters: int, data_shape: tuple[int, ...],
                     random_seed: Optional[tuple[int, int]] = None,
                     distributor: Optional[DistributionProcess] = None,
                     sum_aggregator: Optional[AggregationFactory] = None
                     ) -> LearningProcess:
  """Federated mini-batch k-means: a `LearningProcess` whose model is the centroids.

  Each round the centroids `float32[num_clusters, *data_shape]` are broadcast; every client
  assigns each of its points to the nearest centroid and returns per-cluster sums of points and
  counts; `sum_aggregator` sums them; the server sets each centroid that got new points to
  `(w * c + new_sum) / (w + new_count)` and adds `new_count` to its weight `w` (the
  finalizer's state, starting at 1 for every cluster as TFF's pseudo-count).

  Args:
    num_clusters: the number of clusters `k` >= 1.
    data_shape: the shape of one (unbatched) point, e.g. `(2,)`.
    random_seed: two ints seeding the initial centroids (standard normal); None seeds from
      the clock as TFF does.
    distributor: a `DistributionProcess` for the centroids; default broadcast.
    sum_aggregator: an unweighted aggregation factory summing `(sums, counts)`; default
      `fx.aggregators.SumFactory()`.

  Returns:
    A `LearningProcess`; `next(state, client_data)` takes one sequence of points per client
    (e.g. a `float32[n, *data_shape]` array) and returns metrics `<distributor=<>,
    client_work=<num_examples=float32>, aggregator=<>, finalizer=<>>`; `state.finalizer`
    holds the clusters' weights; `get_model_weights(state)` the centroids.

  Example:
    >>> process = fx.learning.algorithms.build_fed_kmeans(2, (1,), random_seed=(0, 1))
    >>> state = process.initialize()
    >>> data = [np.array([[0.], [0.2]], np.float32), np.array([[5.], [5.2]], np.float32)]
    >>> for _ in range(5):
    ...   state, metrics = process.next(state, data)
    >>> float(metrics['client_work']['num_examples'])
    4.0
    >>> [round(float(c), 1) for c in np.sort(process.get_model_weights(state).ravel())]
    [0.1, 3.9]
  """
  if isinstance(num_clusters, bool) or not isinstance(num_clusters, (int, np.integer)) or (
      num_clusters < 1):
    raise error(ValueError, _NAME, "num_clusters must be an int >= 1.", actual=repr(num_clusters))
  if not (isinstance(data_shape, (tuple, list)) and all(
      isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
      for d in data_shape)):
    raise error(ValueError, _NAME, "data_shape must be a tuple of positive ints (one point's "
                "shape, unbatched).", expected="e.g. (2,)", actual=repr(data_shape))
  data_shape = tuple(int(d) for d in data_shape)
  if random_seed is None:
    random_seed = (int(time.time() * 100000.0), 0)  # TFF's clock seed.
  if not (isinstance(random_seed, (tuple, list)) and len(random_seed) == 2 and all(
      isinstance(s, (int, np.integer)) for s in random_seed)):
    raise error(ValueError, _NAME, "random_seed must be two ints or None.",
                actual=repr(random_seed))
  if sum_aggregator is None:
    sum_aggregator = SumFactory()
  if not isinstance(sum_aggregator, AggregationFactory):
    raise error(TypeError, _NAME, "sum_aggregator must be an aggregation factory (unweighted).",
                expected="e.g. fx.aggregators.SumFactory()", actual=repr(sum_aggregator))
  centroids_shape = (int(num_clusters),) + data_shape
  centroids_type = t.TensorType(_POINT, centroids_shape)
  weights_type = t.TensorType(_WEIGHT, (int(num_clusters),))
  data_type = t.SequenceType(t.TensorType(_POINT, data_shape))
  # JAX's threefry stream, not TF's: same distribution, different draws (a departure).
  seed = np.array(random_seed, np.int64) % (2 ** 32)
  key = jax.random.wrap_key_data(seed.astype(np.uint32))

  @computation
  def initialize_centers():
    return jax.random.normal(key, centroids_shape, _POINT)

  if distributor is None:
    distributor = build_broadcast_process(centroids_type)
  aggregator = sum_aggregator.create(to_type((centroids_type, weights_type)))
  return compose_learning_process(initialize_centers, distributor,
                                  _client_work(centroids_type, data_type, int(num_clusters)),
                                  aggregator, _finalizer(centroids_type, int(num_clusters)))
