"""Pure per-client pieces shared by the client works: one batch of training, gradient sums, weights.

Each works on an accumulator `OrderedDict(weights, optimizer_state, metrics, num_examples,
key[, finite][, carry][, gradient_sum])` threaded through `fx.sequence_reduce` over the client's
batches; `carry` (see `carry_of`) is a stateful model's state from batch to batch; `finite`
(see `loss_check`) stays True while every batch's training loss is finite,
and `drop_if_non_finite` turns a client whose loss, result or metrics were not finite into one
that counts nowhere but in `num_non_finite_clients`.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import numpy as np

from federax.core.errors import error
from federax.learning._weighting import ClientWeighting

Weighting = Union[ClientWeighting, Callable[[Any], Any]]

NUM_NON_FINITE_CLIENTS = "num_non_finite_clients"
"""The count of dropped clients in the unfinalized (and finalized) training metrics: TFF's
name (`model_delta_client_work.NUM_NON_FINITE_CLIENTS_KEY`, after 0.89)."""



def loss_check(initial_metrics: Any) -> dict:
  """`{'finite': True}` for the accumulator of a model whose metrics do not sum its loss, else
  `{}`.

  A label outside the model's classes gives a NaN loss but a finite update (an out-of-range
  gather has no gradient). A 'loss' metric sums the batch losses, so the NaN shows there at no
  cost per batch; without one, each batch's loss is checked as it is computed (a few percent
  of a linear model's step on CPU, where every op in the loop costs).
  """
  return {} if "loss" in initial_metrics else {"finite": np.bool_(True)}


def carry_of(model: Any) -> dict:
  """`{'carry': model.initial_carry}` for the accumulator of a model that carries state from
  batch to batch (a Keras stateful RNN), else `{}`.

  The carry starts afresh in every client's pass, as TFF builds a client's Keras model (and
  its RNN state variables, zeros) anew in each round's client computation.
  """
  carry = getattr(model, "initial_carry", None)
  return {} if carry is None else {"carry": carry}


def check_weighting(where: str, client_weighting: Any) -> None:
  if not (isinstance(client_weighting, ClientWeighting) or callable(client_weighting)):
    raise TypeError(f"{where}: client_weighting must be a fx.learning.ClientWeighting or a "
                    f"function of the client's unfinalized metrics; got {client_weighting!r}.")


def loss_and_output(model, weights, batch, key, carry=None):
  """`grad_fn(trainable) -> (loss, BatchOutput)` of a training-mode forward pass (from the
  accumulator's `carry`, for a model that has one)."""
  kwargs = {} if carry is None else {"carry": carry}

  def loss(trainable):
    output = model.forward_pass(weights._replace(trainable=trainable), batch, True, key,
                                **kwargs)
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
  grads, output = jax.grad(loss_and_output(model, weights, batch, step_key, acc.get("carry")),
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
  if "finite" in acc:
    new["finite"] = acc["finite"] & jnp.isfinite(output.loss)
  if "carry" in acc:
    new["carry"] = output.carry
  return new


def add_batch_gradient(model, acc, batch, update_metrics: bool = True):
  """Adds `num_examples * gradient` at the (fixed) weights to `acc['gradient_sum']`."""
  key, step_key = jax.random.split(acc["key"])
  weights = acc["weights"]
  grads, output = jax.grad(loss_and_output(model, weights, batch, step_key, acc.get("carry")),
                           has_aux=True)(weights.trainable)
  count = jnp.asarray(output.num_examples, jnp.int32)
  new = collections.OrderedDict(acc)
  new.update(gradient_sum=jax.tree_util.tree_map(lambda s, g: s + g * count.astype(g.dtype),
                                                 acc["gradient_sum"], grads),
             num_examples=acc["num_examples"] + count, key=key)
  if "finite" in acc:
    new["finite"] = acc["finite"] & jnp.isfinite(output.loss)
  if "carry" in acc:
    new["carry"] = output.carry
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
  """Whether every element of every floating-point leaf is finite (True for no leaves).

  One sum over every leaf's `x * 0`: 0 where `x` is finite, NaN where it is an Inf or a NaN.
  An `all` per leaf is up to three XLA:CPU kernels for each leaf of a model (a large `all` is
  split in two reductions); one sum compiles W2's round program in 0.94x the CPU
  (`python -m benchmarks.round_compile`), and the round runs as fast.
  """
  zeros = []
  for x in jax.tree_util.tree_leaves(tree):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
      zero = jnp.ravel(x) * 0  # In its own dtype: a float64 beyond float32's range stays 0.
      if jnp.issubdtype(x.dtype, jnp.complexfloating):
        zero = jnp.real(zero) + jnp.imag(zero)
      zeros.append(zero.astype(jnp.float32))
  if not zeros:
    return jnp.asarray(True)
  return jnp.isfinite(jnp.sum(jnp.concatenate(zeros)))


def drop_if_non_finite(acc, result, weight, initial_metrics, also=()):
  """TFF's rule, widened to losses and metrics: a client whose `result` (its update),
  training losses (`loss_check`) or unfinalized metrics hold a NaN or Inf sends zeros with
  weight 0, and its metrics are reset (as TFF does), so the round's metrics cover the clients
  that counted.

  Inputs are checked where data is read (`ClientData`): a check of every input inside the
  training loop would cost a quarter to a half of a linear model's step on CPU.

  Returns:
    `(result, weight, unfinalized metrics + {num_non_finite_clients: int32 0 or 1}, also)`,
    with the trees in `also` (e.g. Mime Lite's full gradient) checked and zeroed alike.
  """
  finite = all_finite((result, also, acc["metrics"])) & acc.get("finite", True)
  zero = lambda tree: jax.tree_util.tree_map(
      lambda u: jnp.where(finite, u, jnp.zeros_like(u)), tree)
  metrics = jax.tree_util.tree_map(lambda m, m0: jnp.where(finite, m, m0), acc["metrics"],
                                   initial_metrics)
  metrics = collections.OrderedDict(metrics)
  metrics[NUM_NON_FINITE_CLIENTS] = jnp.where(finite, 0, 1).astype(jnp.int32)
  return zero(result), jnp.where(finite, weight, jnp.float32(0.0)), metrics, zero(also)


def model_delta(acc, initial):
  """`initial - trained` trainable weights."""
  return jax.tree_util.tree_map(jnp.subtract, initial.trainable, acc["weights"].trainable)


def with_non_finite_count(where: str, finalize: Callable[[Any], Any], initial_metrics: Any):
  """`(finalize, unfinalized metrics)` extended with `num_non_finite_clients`, which sums over
  the clients and is reported as it is (TFF's `augment_metric_finalizers`).

  Raises:
    ValueError: if the model has a metric of that name.
  """
  if NUM_NON_FINITE_CLIENTS in initial_metrics:
    raise error(ValueError, where, f"the model has a metric named {NUM_NON_FINITE_CLIENTS!r}, "
                "which the client work reports itself (the clients dropped for a NaN or Inf).",
                actual=f"metrics {list(initial_metrics)}", hint="rename the model's metric")

  def augmented(unfinalized):
    model_metrics = collections.OrderedDict(
        (k, v) for k, v in unfinalized.items() if k != NUM_NON_FINITE_CLIENTS)
    finalized = collections.OrderedDict(finalize(model_metrics))
    finalized[NUM_NON_FINITE_CLIENTS] = unfinalized[NUM_NON_FINITE_CLIENTS]
    return finalized

  extended = collections.OrderedDict(initial_metrics)
  extended[NUM_NON_FINITE_CLIENTS] = np.int32(0)
  return augmented, extended


def zeros_like_tree(tree):
  return jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), tree)


INITIAL_COUNT = np.int32(0)
