"""`ModelWeights`: a model's trainable and non-trainable weights, as one pytree."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from federax.learning.models._common import error


class ModelWeights(NamedTuple):
  """A model's weights: the `trainable` ones and the `non_trainable` ones (TFF's name).

  A pytree, so it passes through `jax.jit`, `jax.vmap`, `jax.grad` and federated operators.
  For a Keras model both parts are lists of arrays in the order of `model.trainable_variables`
  and `model.non_trainable_weights` (batch-norm statistics; never random-seed state). For
  Flax, nested dicts of arrays. A part with no weights is an empty pytree (`[]`, `()`, `{}`).

  Attributes:
    trainable: pytree of arrays the optimizer updates.
    non_trainable: pytree of arrays it does not (batch-norm statistics, ...).

  Example:
    >>> w = ModelWeights(trainable=[jnp.zeros((784, 10)), jnp.zeros(10)], non_trainable=[])
    >>> [a.shape for a in w.trainable]
    [(784, 10), (10,)]
  """
  trainable: Any
  non_trainable: Any

  @classmethod
  def from_model(cls, model: Any) -> ModelWeights:
    """The weights of a `FunctionalModel` (its initial weights) or a Keras model (its current
    variable values).

    Args:
      model: a `FunctionalModel`, or a built Keras 3 model on the JAX backend.

    Returns:
      A `ModelWeights` of JAX arrays.

    Raises:
      TypeError: if `model` is neither.

    Example:
      >>> import keras  # with KERAS_BACKEND=jax
      >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
      >>> [a.shape for a in ModelWeights.from_model(model).trainable]
      [(3, 2), (2,)]
    """
    from federax.learning.models import _keras  # Cycle: the wrappers build ModelWeights.
    from federax.learning.models._functional import FunctionalModel

    if isinstance(model, FunctionalModel):
      return model.initial_weights
    if _keras.is_keras_model(model):
      return _keras.weights_of(model)
    raise error(TypeError, "ModelWeights.from_model", "cannot read weights from this model.",
                expected="a FunctionalModel or a Keras model",
                actual=f"a {type(model).__name__}",
                hint="wrap Flax modules with from_nnx_module / from_linen_module and use the "
                "result's initial_weights")

  def assign_weights_to(self, keras_model: Any) -> None:
    """Writes these weights into a Keras model's variables (TFF's name).

    Args:
      keras_model: a built Keras 3 model with the same architecture.

    Raises:
      TypeError: if `keras_model` is not a Keras model.
      ValueError: if the number or the shapes of the weights differ from the model's.

    Example:
      >>> import keras  # with KERAS_BACKEND=jax
      >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
      >>> ModelWeights([jnp.ones((3, 2)), jnp.ones(2)], []).assign_weights_to(model)
      >>> np.asarray(model.trainable_variables[1].value).tolist()
      [1.0, 1.0]
    """
    from federax.learning.models import _keras

    operator = "ModelWeights.assign_weights_to"
    if not _keras.is_keras_model(keras_model):
      raise error(TypeError, operator, "the target is not a Keras model.",
                  expected="a keras.Model", actual=f"a {type(keras_model).__name__}")
    trainable_vars, non_trainable_vars = _keras.weight_variables(keras_model)
    for part, variables, values in (("trainable", trainable_vars, self.trainable),
                                    ("non_trainable", non_trainable_vars, self.non_trainable)):
      values = list(values) if values is not None else []
      if len(values) != len(variables):
        raise error(ValueError, operator, f"the model has {len(variables)} {part} weights, "
                    f"these weights have {len(values)}.",
                    expected=[v.path for v in variables], actual=f"{len(values)} arrays",
                    hint="are the weights from a model with the same layers?")
      for i, (variable, value) in enumerate(zip(variables, values)):
        if tuple(np.shape(value)) != tuple(variable.shape):
          raise error(ValueError, operator, f"{part}[{i}] ({variable.path}) has another shape.",
                      expected=tuple(variable.shape), actual=tuple(np.shape(value)))
    for variables, values in ((trainable_vars, self.trainable),
                              (non_trainable_vars, self.non_trainable or [])):
      for variable, value in zip(variables, values):
        # A copy: Keras trains by donating its variables' buffers, which would delete ours.
        variable.assign(jnp.array(value, variable.dtype, copy=True))
