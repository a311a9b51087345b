"""Whether padded rows leave a model's results unchanged: what lets a runtime pad a short batch.

A `FunctionalModel` weights every example by the batch's mask (`sample_weight`), so zero rows
padded onto a short batch count in nothing, as long as every reduction over the batch honours
that weight. Three reductions can fail to, and each is read from the model's jaxpr (traced on
abstract values, once per model and mode), not from its name:

* a training pass that updates non-trainable weights from the batch (batch-norm statistics):
  the padded rows would enter the statistics;
* a `loss_fn` that does not read `sample_weight`: the padded rows would count in the loss;
* a metric update that reads the labels or predictions but not `sample_weight`, or cannot
  take it at all (a Keras metric that reshapes its labels).

Predictions are assumed row by row, as `masked_batch` already assumes.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex

from federax.core import types as t
from federax.learning.models._common import BatchOutput
from federax.learning.models._weights import ModelWeights

_ROWS = 3  # The size given to unknown dimensions while tracing.


def why_padding_changes(model: Any, training: bool) -> Optional[tuple[str, str]]:
  """Why padding a batch with masked zero rows would change `model`'s results, or None.

  Args:
    model: a `FunctionalModel`.
    training: whether the batches go through training passes (`forward_pass(training=True)`).

  Returns:
    None, or `(reason, fix)`: a predicate of the computation that hands the model its batches,
    and what would let the model take padded batches.
  """
  spec = model._spec_type  # pylint: disable=protected-access
  x_type, y_type = (spec["x"], spec["y"]) if any(spec.names()) else (spec[0], spec[1])
  x, y = _abstract(x_type), _abstract(y_type)
  weights = model.initial_weights
  key = jax.random.PRNGKey(0) if training else None
  predict = model._predict  # pylint: disable=protected-access
  if training and _updates_non_trainable(predict, weights, x, key):
    return ("hands batches to a model whose training pass updates non-trainable weights from "
            "the batch (batch statistics), which padded rows would change",
            "masked_batch() runs it compiled, its padded rows then in the statistics")
  predictions = jax.eval_shape(lambda w, x: predict(w, x, training, key).predictions, weights, x)
  sample_weight = jax.ShapeDtypeStruct((_batch_size(y),), jnp.float32)
  loss_fn = model._loss_fn  # pylint: disable=protected-access
  if not _reads(lambda p, y, w: loss_fn(p, y, w), (predictions, y, sample_weight), 2):
    return ("hands batches to a model whose loss_fn ignores sample_weight, so padded rows "
            "would count in the loss", "weight the loss by sample_weight "
            "(fx.learning.models.metrics.weighted_mean(losses, sample_weight))")
  initialize, update, _ = model._metrics_fns  # pylint: disable=protected-access
  if model._user_metric_keys:  # pylint: disable=protected-access
    metrics = lambda s, y, p, w: update(s, y, BatchOutput(jnp.float32(0), p, jnp.int32(0)), w)
    args = (jax.eval_shape(initialize), y, predictions, sample_weight)
    try:
      reads_weight = _reads(metrics, args, 3)
    except (ValueError, TypeError) as e:  # A Keras metric that reshapes its labels.
      return ("hands batches to a model whose metrics cannot take one weight per example "
              f"(float32[B]), which padded rows need ({_first_line(e)})",
              "batch(..., drop_remainder=True), so that no batch is short")
    if not reads_weight and (_reads(metrics, args, 1) or _reads(metrics, args, 2)):
      return ("hands batches to a model whose metrics read labels or predictions but ignore "
              "sample_weight, so padded rows would count in them",
              "weight each example's update by sample_weight in metrics_fns' update")
  return None


def _first_line(e: Exception) -> str:
  return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _abstract(type_spec: t.Type) -> Any:
  if isinstance(type_spec, t.TensorType):
    shape = tuple(_ROWS if d is None else d for d in (type_spec.shape or ()))
    return jax.ShapeDtypeStruct(shape, type_spec.dtype)
  return [_abstract(e) for e in type_spec]


def _batch_size(y: Any) -> int:
  leaves = jax.tree_util.tree_leaves(y)
  return leaves[0].shape[0] if leaves and leaves[0].shape else _ROWS


def _updates_non_trainable(predict, weights: ModelWeights, x: Any, key: Any) -> bool:
  """Whether a training pass returns non-trainable weights other than the ones it was given."""
  def new_non_trainable(non_trainable, trainable, x, key):
    return predict(ModelWeights(trainable, non_trainable), x, True, key).non_trainable

  closed = jax.make_jaxpr(new_non_trainable)(weights.non_trainable, weights.trainable, x, key)
  given = closed.jaxpr.invars[:len(jax.tree_util.tree_leaves(weights.non_trainable))]
  returned = closed.jaxpr.outvars
  return bool(returned) and (len(returned) != len(given)
                             or any(r is not g for r, g in zip(returned, given)))


def _reads(fn, args: tuple, index: int) -> bool:
  """Whether `fn`'s jaxpr on `args` uses any array of `args[index]`."""
  closed = jax.make_jaxpr(fn)(*args)
  jaxpr = closed.jaxpr
  counts = [len(jax.tree_util.tree_leaves(a)) for a in args]
  start = int(np.sum(counts[:index]))
  wanted = set(jaxpr.invars[start:start + counts[index]])
  used = {v for eqn in jaxpr.eqns for v in eqn.invars if not isinstance(v, jex.Literal)}
  used |= {v for v in jaxpr.outvars if not isinstance(v, jex.Literal)}
  return bool(wanted & used)
