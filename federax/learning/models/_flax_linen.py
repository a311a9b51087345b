"""`from_linen_module`: a Flax linen module and its variables as a `FunctionalModel`.

Flax is an optional extra (`pip install 'federax[flax]'`), imported when the wrapper is called.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax

from federax.learning.models import metrics as metrics_lib
from federax.learning.models._common import (
    check_input_spec, error, example_input, per_example_loss_fn, raw_key)
from federax.learning.models._functional import FunctionalModel, PredictOutput
from federax.learning.models._weights import ModelWeights

_OPERATOR = "from_linen_module"
_AUTO = "auto"
# Call arguments Flax code uses for the mode, and whether they mean "training" or its opposite.
_MODE_ARGS = {"train": False, "training": False, "is_training": False, "deterministic": True}


def _import_linen() -> Any:
  try:
    import flax.core
    import flax.linen
  except ImportError:
    raise error(ImportError, _OPERATOR, "Flax is not installed.",
                hint="pip install 'federax[flax]'") from None
  return flax


def _mode_arg(module: Any, train_arg: Optional[str]) -> Optional[str]:
  """The keyword of `module.__call__` that switches training on, found by name if 'auto'."""
  if train_arg != _AUTO:
    return train_arg
  try:
    names = inspect.signature(module.__call__).parameters
  except (TypeError, ValueError):
    return None
  return next((name for name in _MODE_ARGS if name in names), None)


def from_linen_module(module: Any, loss: Callable[[Any, Any], jax.Array], input_spec: Any,
                      metrics: Optional[Sequence[metrics_lib.Metric]] = None, *,
                      variables: Any = None, init_key: Optional[jax.Array] = None,
                      train_arg: Optional[str] = _AUTO,
                      rng_collections: Sequence[str] = ("dropout",)) -> FunctionalModel:
  """Wraps a Flax linen module (`init`/`apply`) as a `FunctionalModel`.

  * Weights: `trainable` is the 'params' collection; `non_trainable` every other collection
    (e.g. `{'batch_stats': ...}`), `{}` when there is none. A training pass applies the module
    with those collections mutable and returns their update in `BatchOutput.non_trainable`
    (batch statistics include a padded batch's zero rows; an all-padding batch changes
    nothing).
  * Training mode: passed through the module's call argument `train_arg`. By default it is
    found by name: `train`, `training` or `is_training` get `training`, `deterministic` gets
    `not training`; a module without any is called without one.
  * Randomness: in training the rng collections `rng_collections` ('dropout') get
    `jax.random.fold_in(key, i)` from `forward_pass`'s `key`. Without a key none is passed,
    and a module that needs one raises Flax's own `InvalidRngError`.

  Args:
    module: a `flax.linen.Module`.
    loss: `loss(predictions, labels) -> float[B]`, per-example losses, as optax's
      (`optax.softmax_cross_entropy_with_integer_labels`); federax averages over real rows.
    input_spec: the batch structure, with 'x' and 'y' (see `FunctionalModel`).
    metrics: optional `metrics.Metric`s, e.g. `[metrics.sparse_categorical_accuracy()]`.
    variables: the module's variables (`module.init(...)`'s result). If None, the module is
      initialized with `init_key` on zeros shaped like the input_spec's 'x' (unknown
      dimensions as 1), in eval mode.
    init_key: the 'params' key when `variables` is None; default `jax.random.PRNGKey(0)`.
    train_arg: the call keyword for the mode, None for none, or 'auto' (see above).
    rng_collections: the rng names the module draws from in training.

  Returns:
    A `FunctionalModel` whose initial weights are `variables`.

  Raises:
    ImportError: if Flax is not installed.
    TypeError: if `module` is not a linen module or `loss` is not callable.
    ValueError: if `variables` has no 'params' collection.

  Example:
    >>> import flax.linen as nn
    >>> import optax
    >>> fm = from_linen_module(
    ...     nn.Dense(10), optax.softmax_cross_entropy_with_integer_labels,
    ...     input_spec={'x': (np.float32, [None, 784]), 'y': (np.int32, [None])})
    >>> jax.tree.map(jnp.shape, fm.initial_weights.trainable)
    {'bias': (10,), 'kernel': (784, 10)}
  """
  flax = _import_linen()
  if not isinstance(module, flax.linen.Module):
    raise error(TypeError, _OPERATOR, "module must be a Flax linen module.",
                expected="a flax.linen.Module", actual=f"a {type(module).__name__}",
                hint="for a flax.nnx module use from_nnx_module")
  loss_fn = per_example_loss_fn(loss, _OPERATOR)
  spec_type = check_input_spec(input_spec, _OPERATOR)
  metrics_fns = metrics_lib.to_metrics_fns(metrics or [])
  mode_arg = _mode_arg(module, train_arg)
  rng_collections = tuple(rng_collections)

  def mode_kwargs(training: bool) -> dict:
    if mode_arg is None:
      return {}
    return {mode_arg: (not training) if _MODE_ARGS.get(mode_arg) else training}

  if variables is None:
    key = jax.random.PRNGKey(0) if init_key is None else raw_key(init_key)
    variables = module.init({"params": key}, example_input(spec_type), **mode_kwargs(False))
  variables = flax.core.unfreeze(variables)
  if "params" not in variables:
    raise error(ValueError, _OPERATOR, "variables has no 'params' collection.",
                expected="{'params': ..., other collections ...}",
                actual=f"collections {sorted(variables)}",
                hint="pass module.init(key, x) as it returns it")
  state_collections = sorted(k for k in variables if k != "params")

  def predict_on_batch(weights: ModelWeights, x: Any, training: bool,
                       key: Optional[jax.Array]) -> PredictOutput:
    all_variables = {"params": weights.trainable, **weights.non_trainable}
    if not training:
      return PredictOutput(module.apply(all_variables, x, **mode_kwargs(False)))
    rngs = {} if key is None else {
        name: jax.random.fold_in(raw_key(key), i) for i, name in enumerate(rng_collections)}
    if not state_collections:
      return PredictOutput(module.apply(all_variables, x, rngs=rngs, **mode_kwargs(True)))
    predictions, updates = module.apply(all_variables, x, rngs=rngs, mutable=state_collections,
                                        **mode_kwargs(True))
    return PredictOutput(predictions, {**weights.non_trainable, **flax.core.unfreeze(updates)})

  return FunctionalModel(
      initial_weights=ModelWeights(variables["params"],
                                   {k: variables[k] for k in state_collections}),
      predict_on_batch_fn=predict_on_batch, loss_fn=loss_fn, metrics_fns=metrics_fns,
      input_spec=input_spec)
