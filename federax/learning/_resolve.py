"""Turns what users pass for a model or an optimizer into the one form the algorithms use."""

from __future__ import annotations

from typing import Any


def resolve_model(model_fn: Any, where: str):
  """A `FunctionalModel` from itself or from a no-argument function returning one (TFF style)."""
  from federax.learning.models import FunctionalModel
  model = model_fn
  if not isinstance(model, FunctionalModel) and callable(model):
    model = model()
  if not isinstance(model, FunctionalModel):
    raise TypeError(
        f"{where}: model_fn must be a fx.learning.models.FunctionalModel or a no-argument "
        f"function returning one; got {model_fn!r}"
        + (f", which returned {model!r}." if model is not model_fn else ".")
        + " Wrap Keras models with fx.learning.models.from_keras_model(...).")
  return model


def resolve_optimizer(optimizer_fn: Any, where: str, argument: str):
  """An `Optimizer` from an Optimizer, an Optax transform, or a no-argument function of either."""
  from federax.learning.optimizers import as_optimizer
  optimizer = optimizer_fn
  if callable(optimizer) and not isinstance(optimizer, tuple):
    optimizer = optimizer()
  try:
    return as_optimizer(optimizer)
  except TypeError as e:
    raise TypeError(f"{where}: {argument} must be a fx.learning.optimizers optimizer (e.g. "
                    f"build_sgdm(0.02)), an Optax GradientTransformation, or a no-argument "
                    f"function returning one; got {optimizer_fn!r}.") from e
