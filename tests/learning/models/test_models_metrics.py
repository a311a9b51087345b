"""The metric helpers against NumPy, on masked batches, and summed across clients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from federax.learning.models import BatchOutput, metrics


def run(metric_list, batches):
  """Finalized metrics of each batch list (one per client), after summing the states."""
  fns = metrics.to_metrics_fns(metric_list)
  states = []
  for client in batches:
    state = fns.initialize()
    for labels, predictions, mask in client:
      out = BatchOutput(jnp.float32(0), predictions, jnp.sum(mask, dtype=jnp.int32))
      state = jax.jit(fns.update)(state, labels, out, jnp.asarray(mask, jnp.float32))
    states.append(state)
  return fns.finalize(jax.tree.map(lambda *a: sum(a), *states))


def test_accuracies_over_real_examples_of_two_clients():
  rng = np.random.default_rng(0)

  def batch(rows, real, classes=4):
    p = rng.random((rows, classes)).astype(np.float32)
    return rng.integers(0, classes, rows), p, np.arange(rows) < real

  clients = [[batch(5, 5), batch(5, 2)], [batch(5, 3)]]
  result = run([metrics.sparse_categorical_accuracy(),
                metrics.mean_metric("mean_top", lambda p, y: p.max(-1))], clients)
  y, p, m = (np.concatenate(parts) for parts in zip(*[b for c in clients for b in c]))
  np.testing.assert_allclose(result["sparse_categorical_accuracy"],
                             (p.argmax(1) == y)[m].mean(), rtol=1e-6)
  np.testing.assert_allclose(result["mean_top"], p.max(1)[m].mean(), rtol=1e-6)
  one_hot = run([metrics.categorical_accuracy()],
                [[(np.eye(4)[yb], pb, mb) for yb, pb, mb in c] for c in clients])
  np.testing.assert_allclose(one_hot["categorical_accuracy"], (p.argmax(1) == y)[m].mean(),
                             rtol=1e-6)


def test_binary_accuracy_and_labels_with_a_trailing_axis():
  p = np.array([[0.9], [0.2], [0.6], [0.4]], np.float32)
  y = np.array([[1], [1], [0], [0]])
  mask = np.array([True, True, True, False])
  result = run([metrics.binary_accuracy(), metrics.binary_accuracy("strict", threshold=0.7),
                metrics.sparse_categorical_accuracy()],
               [[(y, p, mask)]])
  np.testing.assert_allclose(result["binary_accuracy"], 1 / 3, rtol=1e-6)
  np.testing.assert_allclose(result["strict"], 2 / 3, rtol=1e-6)


def test_loss_examples_and_batches_ignore_padding():
  fns = metrics.to_metrics_fns([metrics.mean_loss(), metrics.num_examples(),
                                metrics.num_batches()])
  state = fns.initialize()
  for loss, n in ((2.0, 3), (5.0, 1), (100.0, 0)):  # The last batch is all padding.
    state = fns.update(state, None, BatchOutput(jnp.float32(loss), None, jnp.int32(n)), None)
  result = fns.finalize(state)
  np.testing.assert_allclose(result["loss"], (2.0 * 3 + 5.0) / 4)
  assert int(result["num_examples"]) == 4 and int(result["num_batches"]) == 2
  assert fns.finalize(fns.initialize())["loss"] == 0.0  # No examples: 0, not NaN.


def test_weighted_mean_broadcasts_over_trailing_axes():
  values = jnp.array([[1.0, 3.0], [5.0, 7.0], [100.0, 100.0]])
  np.testing.assert_allclose(metrics.weighted_mean(values, jnp.array([1.0, 1.0, 0.0])), 4.0)
  assert float(metrics.weighted_mean(values, jnp.zeros(3))) == 0.0


def test_to_metrics_fns_errors():
  with pytest.raises(TypeError) as info:
    metrics.to_metrics_fns([lambda p, y: p])
  assert "to_metrics_fns: every metric must be a metrics.Metric." in str(info.value)
  with pytest.raises(ValueError) as info:
    metrics.to_metrics_fns([metrics.binary_accuracy(), metrics.binary_accuracy()])
  assert "metric names must be unique; ['binary_accuracy'] appear more than once." in str(
      info.value)
