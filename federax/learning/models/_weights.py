"""`ModelWeights`: a model's trainable and non-trainable weights, as one pytree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

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
    for accepts, read in _READERS:
      if accepts(model):
        return read(model)
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
    for accepts, write in _WRITERS:
      if accepts(keras_model):
        write(self, keras_model)
        return
    raise error(TypeError, "ModelWeights.assign_weights_to", "the target is not a Keras model.",
                expected="a keras.Model", actual=f"a {type(keras_model).__name__}")


# How to read weights from a kind of model and write them into one, registered by the module
# that knows that kind (`_functional`, `_keras`): ModelWeights needs neither them nor Keras,
# and the wrappers that build ModelWeights can import this module without a cycle.
_READERS: list[tuple[Callable[[Any], bool], Callable[[Any], ModelWeights]]] = []
_WRITERS: list[tuple[Callable[[Any], bool], Callable[[ModelWeights, Any], None]]] = []


def register_reader(accepts: Callable[[Any], bool],
                    read: Callable[[Any], ModelWeights]) -> None:
  """Makes `ModelWeights.from_model(m)` return `read(m)` for models `m` with `accepts(m)`."""
  _READERS.append((accepts, read))


def register_writer(accepts: Callable[[Any], bool],
                    write: Callable[[ModelWeights, Any], None]) -> None:
  """Makes `weights.assign_weights_to(m)` call `write(weights, m)` for `m` with `accepts(m)`."""
  _WRITERS.append((accepts, write))
