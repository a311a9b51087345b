"""`build_fed_kmeans` against a NumPy re-computation of TFF's mini-batch k-means rounds."""

import numpy as np
import pytest

import federax as fx


def reference_round(centroids, weights, clients):
  """TFF's round in NumPy: assign every point to its nearest centroid, sum per cluster over all
  clients, then c <- (w c + s) / (w + n) for clusters with n > 0, w <- w + n."""
  k = centroids.shape[0]
  sums = np.zeros_like(centroids, np.float64)
  counts = np.zeros(k)
  for points in clients:
    for p in points:
      i = np.argmin(((centroids - p) ** 2).reshape(k, -1).sum(1))
      sums[i] += p
      counts[i] += 1
  total = weights + counts
  new = centroids.copy()
  moved = counts > 0
  new[moved] = (weights[moved, None] * centroids[moved] + sums[moved]) / total[moved, None]
  return new, total, counts.sum()


def test_rounds_match_numpy_reference(runtime):
  rng = np.random.default_rng(0)
  clients = [rng.normal(size=(n, 2)).astype(np.float32) + off
             for n, off in ((5, 0.0), (3, 4.0), (7, -3.0), (1, 4.0))]
  process = fx.learning.algorithms.build_fed_kmeans(4, (2,), random_seed=(3, 4))
  state = process.initialize()
  start = np.array([[0., 0.], [4., 4.], [-3., -3.], [50., 50.]], np.float32)  # last: never hit
  state = process.set_model_weights(state, start)
  centroids, weights = start.astype(np.float64), np.ones(4)
  for _ in range(3):
    state, metrics = process.next(state, clients)
    centroids, weights, n = reference_round(centroids, weights, clients)
    np.testing.assert_allclose(process.get_model_weights(state), centroids, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state.finalizer, weights)
    assert float(metrics["client_work"]["num_examples"]) == n == 16
  assert weights[3] == 1 and np.all(process.get_model_weights(state)[3] == 50)
  assert set(metrics) == {"distributor", "client_work", "aggregator", "finalizer"}


def test_initial_state_is_seeded_and_laid_out_as_tff():
  process = fx.learning.algorithms.build_fed_kmeans(3, (2, 2), random_seed=(1, 2))
  a, b = process.initialize(), process.initialize()
  centroids = process.get_model_weights(a)
  assert centroids.shape == (3, 2, 2) and centroids.dtype == np.float32
  np.testing.assert_array_equal(centroids, process.get_model_weights(b))
  np.testing.assert_array_equal(a.finalizer, np.ones(3, np.float32))
  assert a.distributor == () and a.client_work == () and a.aggregator == ()
  other = fx.learning.algorithms.build_fed_kmeans(3, (2, 2), random_seed=(1, 3)).initialize()
  assert not np.array_equal(centroids, other.global_model_weights)


def test_multidimensional_points(runtime):
  # A point of shape (2, 2): distances sum over all its axes, as TFF's.
  clients = [np.array([[[0, 0], [0, 1]], [[9, 9], [9, 8]]], np.float32)]
  process = fx.learning.algorithms.build_fed_kmeans(2, (2, 2), random_seed=(0, 0))
  state = process.set_model_weights(process.initialize(), np.stack(
      [np.zeros((2, 2)), np.full((2, 2), 9.0)]).astype(np.float32))
  state, _ = process.next(state, clients)
  expected, _, _ = reference_round(np.stack([np.zeros((2, 2)), np.full((2, 2), 9.0)]),
                                   np.ones(2), clients)
  np.testing.assert_allclose(process.get_model_weights(state), expected, rtol=1e-6)


@pytest.mark.parametrize("kwargs, words", [
    (dict(num_clusters=0, data_shape=(2,)), "num_clusters"),
    (dict(num_clusters=2, data_shape=2), "data_shape"),
    (dict(num_clusters=2, data_shape=(2,), random_seed=1), "random_seed"),
    (dict(num_clusters=2, data_shape=(2,), sum_aggregator="sum"),
     "sum_aggregator"),
])
def test_misuse(kwargs, words):
  with pytest.raises((TypeError, ValueError), match=words):
    fx.learning.algorithms.build_fed_kmeans(**kwargs)
