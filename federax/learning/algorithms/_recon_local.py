"""Federated Reconstruction's per-client pieces: loss and metrics, the two stages' batch steps.

A client's work is two folds over its batches (`fx.sequence_reduce`), each repeated for its
epochs: reconstruction (local weights from their initial values, global ones frozen), then
post-reconstruction training (global weights, local ones frozen) or evaluation. Which batches
count and how many steps are taken follows the `DatasetSplitFn`, as masks inside the fold
(`position` parity, `steps` against the step limit), so the whole client stays one array
program and vectorizes over the cohort.
"""

from __future__ import annotations

import collections
import inspect
import sys
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core.errors import error
from federax.learning.models import metrics as metrics_lib
from federax.learning.models._common import masked_mean

LOSS = "loss"


def _no_arguments(fn: Callable) -> bool:
  try:
    params = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):
    return False
  return not [p for p in params if p.default is p.empty
              and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _keras():
  return sys.modules.get("keras")


def per_example_loss(loss_fn: Any, where: str) -> Callable[[Any, Any], jax.Array]:
  """`(y_true, y_pred) -> float[B]` from TFF's `loss_fn` (a no-argument function returning a
  Keras loss), a Keras loss, or a function `(y_true, y_pred) -> per-example losses`."""
  keras = _keras()
  if keras is not None and isinstance(loss_fn, keras.losses.Loss):
    return lambda y, p: loss_fn.call(y, p)
  if callable(loss_fn) and _no_arguments(loss_fn):
    return per_example_loss(loss_fn(), where)
  if callable(loss_fn):
    return loss_fn
  raise error(TypeError, where, "loss_fn must build a loss.",
              expected="a no-argument function returning a keras.losses.Loss (TFF's form), or "
              "a function (y_true, y_pred) -> per-example losses",
              actual=f"{loss_fn!r} (a {type(loss_fn).__name__})")


def batch_loss(loss: Callable, output: Any) -> jax.Array:
  """The mean loss over the batch's real examples."""
  values = jnp.asarray(loss(output.labels, output.predictions), jnp.float32)
  return masked_mean(values, output.sample_weight)


def loss_metric() -> metrics_lib.Metric:
  """TFF's `MeanMetricWrapper(loss_fn(), name='loss')`: Keras reduces each batch's loss to a
  scalar before the mean metric sees it, so this is the mean over batches of the batch loss."""
  def update(state, labels, out, sample_weight):
    has = (jnp.asarray(out.num_examples) > 0).astype(jnp.float32)
    total, count = state
    return [total + has * out.loss, count + has]
  return metrics_lib.Metric(LOSS, lambda: [jnp.float32(0.0), jnp.float32(0.0)], update,
                            lambda state: state[0] / jnp.where(state[1] > 0, state[1], 1.0))


def model_metrics(metrics_fn: Optional[Callable], where: str) -> list[metrics_lib.Metric]:
  """`metrics_fn()`'s metrics (Keras or `fx.learning.models.metrics.Metric`), then 'loss'.

  Raises:
    TypeError: if a metric is neither kind.
    ValueError: if two metrics share a name (TFF's check).
  """
  made = [] if metrics_fn is None else list(metrics_fn() if callable(metrics_fn) else metrics_fn)
  result = []
  keras = _keras()
  for metric in made:
    if isinstance(metric, metrics_lib.Metric):
      result.append(metric)
    elif keras is not None and isinstance(metric, keras.metrics.Metric):
      from federax.learning.models._keras import keras_metric  # pylint: disable=g-import-not-at-top
      result.append(keras_metric(keras, metric, where))
    else:
      raise error(TypeError, where, "metrics_fn must return a list of metrics.",
                  expected="Keras metrics or fx.learning.models.metrics.Metric",
                  actual=f"{metric!r} (a {type(metric).__name__})")
  result.append(loss_metric())
  names = [m.name for m in result]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise error(ValueError, where, f"duplicate metric name {repeated[0]!r}.",
                actual=f"metrics {names}", hint="'loss' is added by the algorithm")
  return result


class MetricOps:
  """The metrics' `initialize`, `update(state, output)`, `finalize` over OrderedDicts."""

  def __init__(self, metrics: list[metrics_lib.Metric]):
    self._metrics = metrics

  def initialize(self) -> collections.OrderedDict:
    return collections.OrderedDict((m.name, m.initialize()) for m in self._metrics)

  def update(self, state, output) -> collections.OrderedDict:
    return collections.OrderedDict(
        (m.name, m.update(state[m.name], output.labels, output, output.sample_weight))
        for m in self._metrics)

  def finalize(self, state) -> collections.OrderedDict:
    return collections.OrderedDict((m.name, m.finalize(state[m.name])) for m in self._metrics)


class BatchOutput(collections.namedtuple(
    "BatchOutput", ["loss", "predictions", "labels", "num_examples", "sample_weight"])):
  """A batch's loss with the model's output (what metrics' `update` reads)."""


def active(acc, steps_max: Optional[int], parity: Optional[int]) -> jax.Array:
  """Whether this batch is a step of the stage: its index's parity (split datasets) and the
  step limit."""
  ok = jnp.asarray(True)
  if parity is not None:
    ok = ok & (acc["position"] % 2 == parity)
  if steps_max is not None:
    ok = ok & (acc["steps"] < steps_max)
  return ok


def advance(new, old, is_active):
  """`new` where this batch is a step, else `old`; positions always move on."""
  out = jax.tree.map(lambda a, b: jnp.where(is_active, a, b), new, old)
  out["position"] = old["position"] + 1
  out["steps"] = old["steps"] + is_active.astype(jnp.int32)
  return out


def forward(model, loss, global_weights, local_weights, batch, training: bool) -> BatchOutput:
  out = model.forward_pass(global_weights, local_weights, batch, training)
  return BatchOutput(batch_loss(loss, out), out.predictions, out.labels, out.num_examples,
                     out.sample_weight)


def reconstruct_step(model, loss, optimizer, acc, batch, global_weights, steps_max, parity):
  """One reconstruction step: the local trainable weights move, the global ones do not."""
  local = acc["local"]

  def local_loss(trainable):
    return forward(model, loss, global_weights, local._replace(trainable=trainable), batch,
                   True).loss

  grads = jax.grad(local_loss)(local.trainable)
  opt_state, trainable = optimizer.next(acc["optimizer_state"], local.trainable, grads)
  new = collections.OrderedDict(acc)
  new.update(local=local._replace(trainable=trainable), optimizer_state=opt_state)
  return advance(new, acc, active(acc, steps_max, parity))


def train_step(model, loss, metric_ops, optimizer, acc, batch, steps_max, parity):
  """One post-reconstruction step: the global trainable weights move, the local ones do not."""
  weights = acc["weights"]

  def global_loss(trainable):
    out = forward(model, loss, weights._replace(trainable=trainable), acc["local"], batch, True)
    return out.loss, out

  grads, out = jax.grad(global_loss, has_aux=True)(weights.trainable)
  opt_state, trainable = optimizer.next(acc["optimizer_state"], weights.trainable, grads)
  new = collections.OrderedDict(acc)
  new.update(weights=weights._replace(trainable=trainable), optimizer_state=opt_state,
             metrics=metric_ops.update(acc["metrics"], out),
             num_examples=acc["num_examples"] + jnp.asarray(out.num_examples, jnp.int32))
  return advance(new, acc, active(acc, steps_max, parity))


def eval_step(model, loss, metric_ops, acc, batch, global_weights, steps_max, parity):
  """One evaluation batch with the reconstructed local weights (inference mode)."""
  out = forward(model, loss, global_weights, acc["local"], batch, False)
  new = collections.OrderedDict(acc)
  new.update(metrics=metric_ops.update(acc["metrics"], out))
  return advance(new, acc, active(acc, steps_max, parity))


def recon_start(model, optimizer):
  """The reconstruction fold's start: the model's initial local weights, a fresh optimizer."""
  local = model.local_weights
  return collections.OrderedDict(local=local, optimizer_state=optimizer.initialize(
      local.trainable), position=np.int32(0), steps=np.int32(0))


def new_epoch(acc):
  """The same fold, from the first batch again (positions restart; steps do not)."""
  new = collections.OrderedDict(acc)
  new["position"] = jnp.int32(0)
  return new


def parities(split_dataset: bool) -> tuple[Optional[int], Optional[int]]:
  """The batch-index parity of (reconstruction, post-reconstruction) batches."""
  return (0, 1) if split_dataset else (None, None)
