"""Model metrics in TFF's functional form: `initialize`, `update`, `finalize` over summable state.

A metric's unfinalized state is a pytree of float32/int32 arrays that add up across clients
(sums and counts, never ratios), so a server can sum the states of many clients and finalize
once, as TFF's `sum_then_finalize` does. Every update weights each example by `sample_weight`
(the batch mask), so padded rows count for nothing.

    >>> import jax.numpy as jnp
    >>> from federax.learning.models import BatchOutput, metrics
    >>> fns = metrics.to_metrics_fns([metrics.sparse_categorical_accuracy()])
    >>> out = BatchOutput(jnp.float32(0.5), jnp.eye(3), jnp.int32(2))
    >>> state = fns.update(fns.initialize(), jnp.array([0, 2, 2]), out, jnp.array([1., 1., 0.]))
    >>> {k: float(v) for k, v in fns.finalize(state).items()}
    {'sparse_categorical_accuracy': 0.5}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from federax.learning.models._common import error, masked_mean

__all__ = [
    "Metric", "MetricsFns", "weighted_mean", "mean_loss", "num_examples", "num_batches",
    "mean_metric", "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy",
    "to_metrics_fns",
]

def weighted_mean(values: jax.Array, sample_weight: jax.Array) -> jax.Array:
  """The mean of `values` weighted by `sample_weight` (0 when all weights are 0).

  `sample_weight` (float[B]) is broadcast over `values`' trailing axes, so per-element losses
  of shape [B, T] average over the real examples' elements. Use it in a hand-written
  `loss_fn` so padded rows do not count.

  Example:
    >>> float(weighted_mean(jnp.array([1., 3., 100.]), jnp.array([1., 1., 0.])))
    2.0
  """
  return masked_mean(values, sample_weight)


class Metric(NamedTuple):
  """One named metric as pure functions over an unfinalized, summable state.

  Attributes:
    name: the finalized metric's name.
    initialize: `() -> state`, the state before any batch.
    update: `(state, labels, batch_output, sample_weight) -> state`; `batch_output` is the
      model's `BatchOutput` and `sample_weight` is float32[B] (the batch mask), or None for
      a batch without a mask when the model's metrics_fns are a `NoneWhenUnmasked` (Keras
      metrics under `from_keras_model`).
    finalize: `(state) -> scalar`; it must accept states summed elementwise across clients.
  """
  name: str
  initialize: Callable[[], Any]
  update: Callable[[Any, Any, Any, jax.Array], Any]
  finalize: Callable[[Any], jax.Array]


class MetricsFns(NamedTuple):
  """TFF's `metrics_fns` triple, over a dict of metric name -> unfinalized state."""
  initialize: Callable[[], dict]
  update: Callable[[dict, Any, Any, jax.Array], dict]
  finalize: Callable[[dict], dict]


class NoneWhenUnmasked(MetricsFns):
  """A `MetricsFns` whose `update` takes `sample_weight=None` for a batch without a mask.

  `FunctionalModel` then passes None for such a batch (every row real), as TFF calls Keras
  metrics: a Keras metric that reshapes its labels (the text-generation tutorial's
  `FlattenedCategoricalAccuracy`) cannot take one weight per example. A batch with a mask
  (padded rows) still gets the float32[B] weights.
  """
  __slots__ = ()


# Metric states start as NumPy zeros: a model's metrics are initialized eagerly when a process
# is built, where each `jnp.zeros` would compile an XLA program of its own.
def _zero_mean_state() -> list:
  return [np.zeros([], np.float32), np.zeros([], np.float32)]


def _add_to_mean(state: list, values: jax.Array, sample_weight: jax.Array) -> list:
  """`[total, count]` plus the weighted values (weights broadcast over trailing axes)."""
  values = jnp.asarray(values, jnp.float32)
  w = jnp.asarray(sample_weight, jnp.float32)
  w = jnp.broadcast_to(w.reshape(w.shape + (1,) * (values.ndim - w.ndim)), values.shape)
  total, count = state
  return [total + jnp.sum(jnp.where(w > 0, values * w, 0.0)), count + jnp.sum(w)]


def _finalize_mean(state: list) -> jax.Array:
  total, count = state
  return total / jnp.where(count > 0, count, 1.0)


def mean_metric(name: str, fn: Callable[[Any, Any], jax.Array]) -> Metric:
  """The example-weighted mean of a per-example value `fn(predictions, labels) -> float[B]`.

  State: `[total, count]` (float32 scalars).

  Example:
    >>> mae = mean_metric('mae', lambda p, y: jnp.abs(p[:, 0] - y))
  """
  return Metric(
      name, _zero_mean_state,
      lambda state, labels, out, w: _add_to_mean(state, fn(out.predictions, labels), w),
      _finalize_mean)


def mean_loss(name: str = "loss") -> Metric:
  """The mean of `batch_output.loss` weighted by each batch's real examples.

  State: `[sum of loss * num_examples, sum of num_examples]` (float32 scalars).
  """
  def update(state, labels, out, sample_weight):
    n = jnp.asarray(out.num_examples, jnp.float32)
    total, count = state
    return [total + jnp.asarray(out.loss, jnp.float32) * n, count + n]
  return Metric(name, _zero_mean_state, update, _finalize_mean)


def num_examples(name: str = "num_examples") -> Metric:
  """The number of real (unpadded) examples seen: an int32 sum."""
  return Metric(name, lambda: np.zeros([], np.int32),
                lambda state, labels, out, w: state + jnp.asarray(out.num_examples, jnp.int32),
                lambda state: state)


def num_batches(name: str = "num_batches") -> Metric:
  """The number of batches with at least one real example: an int32 sum.

  A batch that is all padding (the vectorized runtime pads clients to a common number of
  batches) is not counted.
  """
  return Metric(name, lambda: np.zeros([], np.int32),
                lambda state, labels, out, w: state + (out.num_examples > 0).astype(jnp.int32),
                lambda state: state)


def sparse_categorical_accuracy(name: str = "sparse_categorical_accuracy") -> Metric:
  """How often `argmax(predictions, -1)` equals the integer label (labels [B] or [B, 1])."""
  def correct(predictions, labels):
    predicted = jnp.argmax(predictions, axis=-1)
    return predicted == jnp.reshape(labels, predicted.shape).astype(predicted.dtype)
  return mean_metric(name, correct)


def categorical_accuracy(name: str = "categorical_accuracy") -> Metric:
  """How often `argmax(predictions, -1)` equals `argmax(labels, -1)` (one-hot labels)."""
  return mean_metric(
      name, lambda p, y: jnp.argmax(p, axis=-1) == jnp.argmax(jnp.reshape(y, p.shape), axis=-1))


def binary_accuracy(name: str = "binary_accuracy", threshold: float = 0.5) -> Metric:
  """How often `predictions > threshold` matches the 0/1 labels, averaged over elements.

  As Keras's `BinaryAccuracy`: predictions are probabilities (apply a sigmoid to logits, or
  pass `threshold=0.0`).
  """
  def correct(predictions, labels):
    predicted = predictions > threshold
    return predicted == (jnp.reshape(labels, predicted.shape) > 0.5)
  return mean_metric(name, correct)


def to_metrics_fns(metrics: Sequence[Metric]) -> MetricsFns:
  """Combines named metrics into TFF's `(initialize, update, finalize)` triple.

  The state is a dict of metric name -> that metric's unfinalized state.

  Args:
    metrics: `Metric`s with distinct names.

  Returns:
    A `MetricsFns` to pass as `FunctionalModel(metrics_fns=...)`.

  Raises:
    TypeError: if an element is not a `Metric`.
    ValueError: if two metrics share a name.

  Example:
    >>> fns = to_metrics_fns([categorical_accuracy(), binary_accuracy()])
    >>> sorted(fns.initialize())
    ['binary_accuracy', 'categorical_accuracy']
  """
  metrics = list(metrics)
  for m in metrics:
    if not isinstance(m, Metric):
      raise error(TypeError, "to_metrics_fns", "every metric must be a metrics.Metric.",
                  expected="Metric(name, initialize, update, finalize)",
                  actual=f"{m!r} (a {type(m).__name__})",
                  hint="build one with metrics.mean_metric(name, fn) or a helper such as "
                  "metrics.sparse_categorical_accuracy()")
  names = [m.name for m in metrics]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise error(ValueError, "to_metrics_fns", f"metric names must be unique; {duplicates} "
                "appear more than once.", hint="pass name= to tell them apart")

  def initialize() -> dict:
    return {m.name: m.initialize() for m in metrics}

  def update(state: dict, labels: Any, batch_output: Any, sample_weight: jax.Array) -> dict:
    return {m.name: m.update(state[m.name], labels, batch_output, sample_weight)
            for m in metrics}

  def finalize(state: dict) -> dict:
    return {m.name: m.finalize(state[m.name]) for m in metrics}

  return MetricsFns(initialize, update, finalize)
