"""`functional_model_from_keras`: TFF's other Keras converter, on federax's Keras wrapper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

from federax.learning.models._common import error
from federax.learning.models._functional import FunctionalModel
from federax.learning.models._keras import import_keras, keras_metric, wrap

_OPERATOR = "functional_model_from_keras"


def functional_model_from_keras(keras_model: Any, loss_fn: Any, input_spec: Any,
                                metrics_constructor: Optional[Union[Callable, Mapping]] = None
                                ) -> FunctionalModel:
  """A Keras 3 model (JAX backend) as a `FunctionalModel` (TFF's `functional_model_from_keras`).

  TFF's arguments, on the same wrapper as `from_keras_model` (see it for how weights, batch
  norm, randomness and padded rows are handled). Unlike TFF's, the model may have batch
  normalization and other non-trainable weights, and may be used outside a computation.

  Args:
    keras_model: a built `keras.Model`, or a no-argument function returning one (TFF's
      way around models that share layers). The initial weights are its current ones.
    loss_fn: a `keras.losses.Loss`.
    input_spec: the batch structure: `(x, y)` or `{'x': ..., 'y': ...}`.
    metrics_constructor: as TFF's `create_functional_metric_fns` takes it: a function
      returning a Keras metric (e.g. the class `keras.metrics.SparseCategoricalAccuracy`),
      a function returning an `OrderedDict` of name -> metric, or an `OrderedDict` of name ->
      such a function. A metric is reported under its key, else its Keras name.

  Returns:
    A `FunctionalModel`; it reports the metrics built here, plus federax's 'loss',
    'num_examples' and 'num_batches'.

  Raises:
    TypeError: if `keras_model`, `loss_fn` or `metrics_constructor` is of the wrong kind.
    ValueError: if the model is not built.

  Example (TFF's building_your_own_federated_learning_algorithm tutorial):
    >>> import collections, keras  # with KERAS_BACKEND=jax
    >>> keras_model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10),
    ...                                 keras.layers.Softmax()])
    >>> tff_model = functional_model_from_keras(
    ...     keras_model, loss_fn=keras.losses.SparseCategoricalCrossentropy(),
    ...     input_spec=((np.float32, [None, 784]), (np.int32, [None, 1])),
    ...     metrics_constructor=collections.OrderedDict(
    ...         accuracy=keras.metrics.SparseCategoricalAccuracy))
    >>> trainable_weights, _ = tff_model.initial_weights
    >>> 'accuracy' in tff_model.metric_names
    True
  """
  keras = import_keras(_OPERATOR)
  if not isinstance(keras_model, keras.Model):
    if not callable(keras_model):
      raise error(TypeError, _OPERATOR, "keras_model must be a Keras model or a function "
                  "returning one.", expected="a keras.Model, or a no-argument function "
                  "returning one", actual=f"a {type(keras_model).__name__}")
    keras_model = keras_model()
  metrics = [keras_metric(keras, metric, _OPERATOR, name)
             for name, metric in _named_metrics(keras, metrics_constructor)]
  return wrap(keras, keras_model, loss_fn, input_spec, metrics, None, _OPERATOR)


def _named_metrics(keras: Any, constructor: Any) -> list[tuple[Optional[str], Any]]:
  """`(name or None, metric or constructor)` for each metric `constructor` builds."""
  if constructor is None:
    return []
  if isinstance(constructor, Mapping):
    return list(constructor.items())
  if callable(constructor) and not isinstance(constructor, keras.metrics.Metric):
    built = constructor()
    if isinstance(built, keras.metrics.Metric):
      return [(None, built)]
    if isinstance(built, Mapping):
      return list(built.items())
    constructor = built
  raise error(TypeError, _OPERATOR, "metrics_constructor must build Keras metrics.",
              expected="a function returning a keras.metrics.Metric (or an OrderedDict of "
              "them), or an OrderedDict of such functions",
              actual=f"a {type(constructor).__name__}",
              hint="e.g. collections.OrderedDict(accuracy=keras.metrics."
              "SparseCategoricalAccuracy)")
