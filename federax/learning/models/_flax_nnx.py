"""`from_nnx_module`: a Flax NNX module as a `FunctionalModel`.

Flax is an optional extra (`pip install 'federax[flax]'`), imported when the wrapper is called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax

from federax.learning.models import metrics as metrics_lib
from federax.learning.models._common import (
    check_input_spec, error, per_example_loss_fn, raw_key, require_key)
from federax.learning.models._functional import FunctionalModel, PredictOutput
from federax.learning.models._weights import ModelWeights

_OPERATOR = "from_nnx_module"


def _import_nnx() -> Any:
  try:
    from flax import nnx
  except ImportError:
    raise error(ImportError, _OPERATOR, "Flax is not installed.",
                hint="pip install 'federax[flax]'") from None
  return nnx


def _str_keys(tree: Any) -> Any:
  # NNX names list elements 0, 1, ...; federax types (and JAX's key sorting) need str names.
  if isinstance(tree, dict):
    return {str(k): _str_keys(v) for k, v in tree.items()}
  return tree


def from_nnx_module(module: Any, loss: Callable[[Any, Any], jax.Array], input_spec: Any,
                    metrics: Optional[Sequence[metrics_lib.Metric]] = None) -> FunctionalModel:
  """Wraps a Flax NNX module as a `FunctionalModel`.

  The module is split once (`nnx.split`) and merged afresh on every call, so the original is
  never mutated and every function is pure.

  * Weights: `trainable` holds the `nnx.Param`s, `non_trainable` every other variable except
    RNG state (e.g. `nnx.BatchStat`), both as nested dicts of arrays (`nnx.to_pure_dict`,
    list indices as str keys).
  * Training mode: `training=True` runs the module as after `module.train()` (dropout on,
    batch statistics from the batch and updated, padded rows included), `training=False` as
    after `module.eval()`.
  * Randomness: the module's RNG streams (`nnx.Rngs`, e.g. the one a `nnx.Dropout` holds) are
    not weights; in training every stream is reseeded from `forward_pass`'s `key`.

  Args:
    module: an `nnx.Module` with its weights (e.g. `MLP(rngs=nnx.Rngs(0))`).
    loss: `loss(predictions, labels) -> float[B]`, per-example losses, as optax's
      (`optax.softmax_cross_entropy_with_integer_labels`); federax averages over real rows.
    input_spec: the batch structure, with 'x' and 'y' (see `FunctionalModel`).
    metrics: optional `metrics.Metric`s, e.g. `[metrics.sparse_categorical_accuracy()]`.

  Returns:
    A `FunctionalModel` whose initial weights are the module's current ones.

  Raises:
    ImportError: if Flax is not installed.
    TypeError: if `module` is not an `nnx.Module` or `loss` is not callable.

  Example:
    >>> from flax import nnx
    >>> import optax
    >>> from federax.learning.models import metrics
    >>> fm = from_nnx_module(
    ...     nnx.Linear(784, 10, rngs=nnx.Rngs(0)),
    ...     optax.softmax_cross_entropy_with_integer_labels,
    ...     input_spec={'x': (np.float32, [None, 784]), 'y': (np.int32, [None])},
    ...     metrics=[metrics.sparse_categorical_accuracy()])
    >>> sorted(fm.initial_weights.trainable)
    ['bias', 'kernel']
  """
  nnx = _import_nnx()
  if not isinstance(module, nnx.Module):
    raise error(TypeError, _OPERATOR, "module must be a Flax NNX module.",
                expected="an nnx.Module", actual=f"a {type(module).__name__}",
                hint="for a flax.linen module use from_linen_module")
  loss_fn = per_example_loss_fn(loss, _OPERATOR)
  check_input_spec(input_spec, _OPERATOR)
  metrics_fns = metrics_lib.to_metrics_fns(metrics or [])
  to_pure = getattr(nnx, "to_pure_dict", None) or (lambda state: state.to_pure_dict())
  replace = (getattr(nnx, "replace_by_pure_dict", None)
             or (lambda state, pure: state.replace_by_pure_dict(pure)))

  rest = nnx.Not(nnx.Any(nnx.Param, nnx.RngState))
  filters = (nnx.Param, nnx.RngState, rest)
  _, params, rng_state, other = nnx.split(module, *filters)
  # Train and eval differ only in static attributes (deterministic, use_running_average),
  # which live in the graph definition: take one of each from copies of the module.
  definitions = {}
  for training in (True, False):
    copy = nnx.clone(module)
    if training:
      copy.train()
    else:
      copy.eval()
    definitions[training] = nnx.split(copy, *filters)[0]
  streams = [s for _, s in nnx.iter_graph(module) if isinstance(s, nnx.RngStream)]
  stream_tags = sorted({s.key.tag for s in streams})
  has_state = bool(jax.tree.leaves(to_pure(other)))

  def filled(template: Any, pure: Any) -> Any:
    state = jax.tree.map(lambda v: v, template)  # A fresh copy: merging must not alias it.
    replace(state, pure)
    return state

  def predict_on_batch(weights: ModelWeights, x: Any, training: bool,
                       key: Optional[jax.Array]) -> PredictOutput:
    instance = nnx.merge(definitions[training], filled(params, weights.trainable),
                         jax.tree.map(lambda v: v, rng_state),
                         filled(other, weights.non_trainable))
    if training and stream_tags:
      require_key(key, "forward_pass", f"nnx RNG streams {stream_tags}")
      nnx.reseed(instance, **{tag: jax.random.wrap_key_data(jax.random.fold_in(raw_key(key), i))
                              for i, tag in enumerate(stream_tags)})
    predictions = instance(x)
    new_state = _str_keys(to_pure(nnx.state(instance, rest))) if training and has_state else None
    return PredictOutput(predictions, new_state)

  return FunctionalModel(
      initial_weights=ModelWeights(_str_keys(to_pure(params)), _str_keys(to_pure(other))),
      predict_on_batch_fn=predict_on_batch, loss_fn=loss_fn, metrics_fns=metrics_fns,
      input_spec=input_spec)
