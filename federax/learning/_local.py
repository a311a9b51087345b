"""Pure per-client pieces shared by the client works: one batch of training, gradient sums, weights.

Each works on an accumulator `OrderedDict(weights, optimizer_state, metrics, num_examples,
key[, gradient_sum])` threaded through `fx.sequence_reduce` over the client's batches.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import numpy as np

from federax.learning._weighting import ClientWeighting

Weighting = Union[ClientWeighting, Callable[[Any], Any]]


def check_weighting(where: str, client_weighting: Any) -> None:
  if not (isinstance(client_weighting, ClientWeighting) or callable(client_weighting)):
    raise TypeError(f"{where}: client_weighting must be a fx.learning.ClientWeighting or a "
                    f"function of the client's unfinalized metrics; got {client_weighting!r}.")


def loss_and_output(model, weights, batch, key):
  """`grad_fn(trainable) -> (loss, BatchOutput)` of a training-mode forward pass."""
  def loss(trainable):
    output = model.forward_pass(weights._replace(trainable=trainable), batch, True, key)
    return output.loss, output
  return loss


def train_on_batch(model, optimizer, acc, batch, initial, proximal_strength=0.0,
                   optimizer_state=None):
  """One optimizer step on `batch`, updating weights, optimizer state, metrics and counts.

  With `optimizer_state` given (Mime Lite), steps use that fixed state and the accumulator's
  optimizer state is left alone. `initial` is the round's starting weights (for FedProx).
  """
  key, step_key = jax.random.split(acc["key"])
  weights = acc["weights"]
  grads, output = jax.grad(loss_and_output(model, weights, batch, step_key),
                           has_aux=True)(weights.trainable)
  if proximal_strength > 0:
    grads = jax.tree_util.tree_map(lambda g, w, w0: g + proximal_strength * (w - w0),
                                   grads, weights.trainable, initial.trainable)
  if optimizer_state is None:
    new_optimizer_state, trainable = optimizer.next(acc["optimizer_state"], weights.trainable,
                                                    grads)
  else:
    new_optimizer_state = acc["optimizer_state"]
    _, trainable = optimizer.next(optimizer_state, weights.trainable, grads)
  non_trainable = weights.non_trainable if output.non_trainable is None else output.non_trainable
  new = collections.OrderedDict(acc)
  new.update(weights=weights._replace(trainable=trainable, non_trainable=non_trainable),
             optimizer_state=new_optimizer_state,
             metrics=model.update_metrics_state(acc["metrics"], batch, output),
             num_examples=acc["num_examples"] + jnp.asarray(output.num_examples, jnp.int32),
             key=key)
  return new


def add_batch_gradient(model, acc, batch, update_metrics: bool = True):
  """Adds `num_examples * gradient` at the (fixed) weights to `acc['gradient_sum']`."""
  key, step_key = jax.random.split(acc["key"])
  weights = acc["weights"]
  grads, output = jax.grad(loss_and_output(model, weights, batch, step_key),
                           has_aux=True)(weights.trainable)
  count = jnp.asarray(output.num_examples, jnp.int32)
  new = collections.OrderedDict(acc)
  new.update(gradient_sum=jax.tree_util.tree_map(lambda s, g: s + g * count.astype(g.dtype),
                                                 acc["gradient_sum"], grads),
             num_examples=acc["num_examples"] + count, key=key)
  if update_metrics:
    new["metrics"] = model.update_metrics_state(acc["metrics"], batch, output)
  return new


def mean_gradient(acc):
  """The example-weighted mean gradient (0 for a client without examples)."""
  count = acc["num_examples"]
  return jax.tree_util.tree_map(
      lambda s: jnp.where(count > 0, s / jnp.maximum(count, 1).astype(s.dtype), 0),
      acc["gradient_sum"])


def client_weight(client_weighting: Weighting, num_examples, metrics) -> jax.Array:
  if client_weighting is ClientWeighting.EXAMPLES:
    return jnp.asarray(num_examples, jnp.float32)
  if client_weighting is ClientWeighting.UNIFORM:
    return jnp.float32(1.0)
  return jnp.asarray(client_weighting(metrics), jnp.float32)


def all_finite(tree: Any) -> jax.Array:
  """Whether every element of every floating-point leaf is finite (True for no leaves)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def zero_if_non_finite(update, weight):
  """TFF's rule: an update with any NaN or Inf becomes zeros with weight 0."""
  finite = all_finite(update)
  update = jax.tree_util.tree_map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), update)
  return update, jnp.where(finite, weight, jnp.float32(0.0))


def model_delta(acc, initial, client_weighting: Weighting):
  """`(initial - trained trainable weights, client weight)`, zeroed if not finite."""
  delta = jax.tree_util.tree_map(jnp.subtract, initial.trainable, acc["weights"].trainable)
  weight = client_weight(client_weighting, acc["num_examples"], acc["metrics"])
  return zero_if_non_finite(delta, weight)


def zeros_like_tree(tree):
  return jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), tree)


INITIAL_COUNT = np.int32(0)
