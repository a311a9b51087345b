"""`from_keras_model`: a Keras 3 model (JAX backend) as a `FunctionalModel`.

Keras is an optional extra (`pip install 'federax[keras]'`): it is imported when a wrapper is
called, never when federax is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.learning.models import metrics as metrics_lib
from federax.learning.models._common import (
    check_input_spec, error, masked_mean, raw_key, require_key)
from federax.learning.models._functional import FunctionalModel, PredictOutput
from federax.learning.models._weights import ModelWeights, register_reader, register_writer

_OPERATOR = "from_keras_model"


def import_keras(operator: str) -> Any:
  try:
    import keras
  except ImportError:
    raise error(ImportError, operator, "Keras is not installed.",
                hint="pip install 'federax[keras]' (Keras 3), and set KERAS_BACKEND=jax") from None
  backend = keras.backend.backend()
  if backend != "jax":
    raise error(RuntimeError, operator, f"Keras runs on the {backend!r} backend; federax "
                "runs Keras models as JAX functions.", expected="'jax'", actual=repr(backend),
                hint="set the environment variable KERAS_BACKEND=jax before keras is first "
                "imported (os.environ['KERAS_BACKEND'] = 'jax' at the top of your program)")
  return keras


def is_keras_model(obj: Any) -> bool:
  """Whether `obj` is a Keras model (without importing Keras when nothing has)."""
  keras = sys.modules.get("keras")
  return keras is not None and isinstance(obj, keras.Model)


def weight_variables(model: Any) -> tuple[list, list]:
  """The model's trainable variables and its non-trainable *weights* (no seed state)."""
  return list(model.trainable_variables), list(model.non_trainable_weights)


def weights_of(model: Any) -> ModelWeights:
  """The current values of a Keras model's weights."""
  trainable, non_trainable = weight_variables(model)
  return ModelWeights([jnp.asarray(v.value) for v in trainable],
                      [jnp.asarray(v.value) for v in non_trainable])


def assign_weights(weights: ModelWeights, keras_model: Any) -> None:
  """Writes `weights` into a Keras model's variables (`ModelWeights.assign_weights_to`).

  Raises:
    ValueError: if the number or the shapes of the weights differ from the model's.
  """
  operator = "ModelWeights.assign_weights_to"
  trainable_vars, non_trainable_vars = weight_variables(keras_model)
  for part, variables, values in (("trainable", trainable_vars, weights.trainable),
                                  ("non_trainable", non_trainable_vars, weights.non_trainable)):
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
  for variables, values in ((trainable_vars, weights.trainable),
                            (non_trainable_vars, weights.non_trainable or [])):
    for variable, value in zip(variables, values):
      # A copy: Keras trains by donating its variables' buffers, which would delete ours.
      variable.assign(jnp.array(value, variable.dtype, copy=True))


register_reader(is_keras_model, weights_of)
register_writer(is_keras_model, assign_weights)


def _is_seed_state(variable: Any) -> bool:
  # A SeedGenerator's state, [seed, counter]: the only non-weight state Keras gives a layer.
  return tuple(variable.shape) == (2,) and np.dtype(variable.dtype) == np.uint32


def _rnn_state_variables(keras: Any, model: Any) -> list:
  """The state variables of the model's stateful RNN layers, in layer order.

  Keras 3 keeps them in `layer.states`, among none of the model's variables (so
  `stateless_call` leaves them alone: every call would start from their current values).
  """
  states = []
  for layer in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
    if (isinstance(layer, keras.layers.RNN) and layer.stateful
        and getattr(layer, "states", None) is not None):
      states.extend(keras.tree.flatten(layer.states))
  return states


def _call_carrying(keras: Any, model: Any, trainable: list, non_trainable: list,
                   rnn_states: list, carry: list, x: Any, training: bool) -> tuple:
  """`model.stateless_call(trainable, non_trainable, x, training=..., return_losses=True)`
  with the stateful RNNs' state variables set to `carry`: `(predictions, non_trainable,
  losses, next carry)`.

  `stateless_call` maps only the model's own variables, in a scope of its own that would hide
  an outer one, so the call is made here, as it makes it, in one scope that maps all three.
  """
  mapping = (list(zip(model.trainable_variables, trainable))
             + list(zip(model.non_trainable_variables, non_trainable))
             + list(zip(rnn_states, carry)))
  with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
    predictions = model.call(x, training=training)
    losses = model.losses
  return (predictions, [scope.get_current_value(v) for v in model.non_trainable_variables],
          losses, [scope.get_current_value(v) for v in rnn_states])


def _check_loss(keras: Any, loss: Any, loss_weights: Any,
                operator: str) -> tuple[list, list, bool]:
  """`(losses, weights, multi_output)` from TFF's `loss` / `loss_weights` arguments."""
  multi = isinstance(loss, (list, tuple))
  losses = list(loss) if multi else [loss]
  for fn in losses:
    if not callable(fn):
      raise error(TypeError, operator, "loss must be a Keras loss (or a list of them, one "
                  "per output).", expected="e.g. keras.losses.SparseCategoricalCrossentropy()",
                  actual=f"{fn!r} (a {type(fn).__name__})")
  if loss_weights is None:
    return losses, [1.0] * len(losses), multi
  if not multi or len(loss_weights) != len(losses):
    raise error(ValueError, operator, "loss_weights needs a list of losses of the same length.",
                expected=f"{len(losses) if multi else 'a list of'} losses and as many weights",
                actual=f"loss={loss!r}, loss_weights={loss_weights!r}")
  return losses, [float(w) for w in loss_weights], multi


def _per_example_loss(keras: Any, fn: Any, y: Any, predictions: Any,
                      operator: str) -> jax.Array:
  # Loss.call skips the reduction, so padded rows can be masked out before averaging.
  values = fn.call(y, predictions) if isinstance(fn, keras.losses.Loss) else fn(y, predictions)
  values = jnp.asarray(values, jnp.float32)
  if values.ndim == 0:
    raise error(ValueError, operator, "the loss returned a scalar; federax needs one value "
                "per example to leave padded rows out.", expected="float[B]", actual="float[]",
                hint="pass a keras.losses.Loss object, or a function returning per-example "
                "losses (e.g. keras.losses.sparse_categorical_crossentropy)")
  valid = _class_labels_valid(keras, fn, y, predictions)
  return values if valid is None else jnp.where(valid.reshape(values.shape), values, jnp.nan)


def _class_labels_valid(keras: Any, fn: Any, y: Any, predictions: Any) -> Optional[jax.Array]:
  """For Keras's sparse categorical cross-entropy, whether each label is one of the classes
  (or its `ignore_class`); None for other losses.

  Keras one-hot encodes a label outside `[0, C)` as zeros: a loss of 0 that trains silently
  (TFF's TensorFlow raises on CPU, and gives garbage on GPU). Its loss becomes NaN here, so
  training drops the client and counts it (`num_non_finite_clients`).
  """
  if isinstance(fn, keras.losses.SparseCategoricalCrossentropy):
    options = getattr(fn, "_fn_kwargs", {})
  elif fn is keras.losses.sparse_categorical_crossentropy:
    options = {}
  else:
    return None
  axis, ignore = options.get("axis", -1), options.get("ignore_class")
  predictions = jnp.asarray(predictions)
  labels = jnp.asarray(y).astype(jnp.int32)  # As Keras casts them.
  if labels.ndim == predictions.ndim and labels.shape[axis] == 1:
    labels = jnp.squeeze(labels, axis=axis)
  valid = (labels >= 0) & (labels < predictions.shape[axis])
  return valid if ignore is None else valid | (labels == ignore)


def keras_metric(keras: Any, metric: Any, operator: str = _OPERATOR,
                 name: Optional[str] = None) -> metrics_lib.Metric:
  """A Keras metric object, run statelessly, as a `metrics.Metric` over its variables.

  It is named `name`, or the Keras metric's own name.
  """
  if not isinstance(metric, keras.metrics.Metric) and callable(metric):
    metric = metric()  # TFF style: a constructor or a zero-argument function.
  if not isinstance(metric, keras.metrics.Metric):
    raise error(TypeError, operator, "metrics must be Keras metrics, or functions that return "
                "one.", expected="e.g. keras.metrics.SparseCategoricalAccuracy()",
                actual=f"{metric!r} (a {type(metric).__name__})")

  def initialize():
    return [jnp.asarray(v) for v in metric.stateless_reset_state()]

  def update(state, labels, batch_output, sample_weight):
    # sample_weight is None for a batch without a mask (NoneWhenUnmasked), as in TFF.
    try:
      new = metric.stateless_update_state(state, labels, batch_output.predictions,
                                          sample_weight=sample_weight)
    except (ValueError, TypeError) as e:
      if sample_weight is None:
        raise
      raise error(ValueError, "update_metrics_state", f"the Keras metric {metric.name!r} "
                  "cannot take one weight per example, which a batch with padded rows (a "
                  "'mask') needs so that they count in nothing.",
                  expected=f"update_state(y_true, y_pred, sample_weight=float32"
                  f"{list(jnp.shape(sample_weight))}) to run",
                  actual=f"{type(e).__name__}: {e}",
                  hint="batch with drop_remainder=True and no 'mask' (the metric then gets "
                  "sample_weight=None, as in TFF), or make update_state accept per-example "
                  "weights (e.g. repeat them over the labels it flattens)") from None
    return [jnp.asarray(v) for v in new]

  def finalize(state):
    return jnp.asarray(metric.stateless_result(state))

  return metrics_lib.Metric(name or metric.name, initialize, update, finalize)


def from_keras_model(keras_model: Any, loss: Any, input_spec: Any,
                     metrics: Optional[Sequence[Any]] = None,
                     loss_weights: Optional[Sequence[float]] = None) -> FunctionalModel:
  """Wraps a Keras 3 model (JAX backend) as a `FunctionalModel` (TFF's `from_keras_model`).

  The model runs through `keras_model.stateless_call`, so the Keras object is never mutated
  and the result is pure: jit-able, `vmap`-able over clients, usable in `lax.scan`.

  * Weights: `ModelWeights(trainable, non_trainable)`, lists in the order of
    `model.trainable_variables` and `model.non_trainable_weights`. Batch-norm statistics are
    non-trainable; a training pass returns their update in `BatchOutput.non_trainable`.
    Keras computes a training batch's statistics over all its rows, so the zero rows of a
    client's padded last batch take part in them; an all-padding batch changes nothing.
  * Randomness: Keras keeps `SeedGenerator` state (dropout seeds) among its non-trainable
    variables; federax leaves it out of the weights and, in training, sets each generator's
    state to `jax.random.fold_in(key, i)`, so dropout follows `forward_pass`'s `key`.
  * Loss: the per-example loss (`Loss.call`) averaged over real examples, plus the model's
    regularization losses (`model.losses`), as TFF's wrapper adds them. For several outputs,
    `loss` is a list (one per output, labels `y` a matching list) and `loss_weights` their
    weights.
  * Metrics: Keras metric objects run statelessly; their unfinalized state is their
    variables (sums and counts such as `[total, count]`), summed across clients and
    finalized with `stateless_result`, under the metric's Keras name. As in TFF, they come
    first, then 'loss', 'num_examples' and 'num_batches' (those two only when no metric of
    that name is given). Their `update_state` gets `sample_weight=None` for a batch without
    a mask, as TFF calls it, and the mask (float32[B]) for a batch with padded rows.
  * Stateful RNNs (`stateful=True`): their state is the model's `initial_carry` (zeros),
    carried from batch to batch of a client's pass and reset for each client and round, as
    TFF does (it builds the Keras model, and so its zero state, anew in each client
    computation). It is not among the weights, as it is not among TFF's.

  Args:
    keras_model: a built `keras.Model` (give it an `Input` or call `build`).
    loss: a `keras.losses.Loss` (or a function `(y_true, y_pred) -> per-example losses`), or
      a list of them for a multi-output model.
    input_spec: the batch structure, with 'x' and 'y' (see `FunctionalModel`).
    metrics: optional Keras metric objects, or functions returning them.
    loss_weights: optional weights of the losses when `loss` is a list.

  Returns:
    A `FunctionalModel` whose initial weights are the model's current ones.

  Raises:
    ImportError: if Keras is not installed.
    RuntimeError: if Keras does not run on the JAX backend.
    TypeError: if the model, the loss or a metric is not a Keras one.
    ValueError: if the model is not built, or `loss_weights` does not match `loss`.

  Example:
    >>> import keras  # with KERAS_BACKEND=jax
    >>> model = keras.Sequential([keras.Input((784,)),
    ...                           keras.layers.Dense(10, kernel_initializer='zeros'),
    ...                           keras.layers.Softmax()])
    >>> fm = from_keras_model(model, keras.losses.SparseCategoricalCrossentropy(),
    ...     input_spec={'x': (np.float32, [None, 784]), 'y': (np.int32, [None])},
    ...     metrics=[keras.metrics.SparseCategoricalAccuracy()])
    >>> fm.metric_names
    ('sparse_categorical_accuracy', 'loss', 'num_examples', 'num_batches')
  """
  keras = import_keras(_OPERATOR)
  keras_metrics = [keras_metric(keras, m) for m in (metrics or [])]
  return wrap(keras, keras_model, loss, input_spec, keras_metrics, loss_weights, _OPERATOR)


def wrap(keras: Any, keras_model: Any, loss: Any, input_spec: Any,
         keras_metrics: Sequence[metrics_lib.Metric], loss_weights: Optional[Sequence[float]],
         operator: str, builtin_metrics: bool = True) -> FunctionalModel:
  """`from_keras_model`'s work, its errors naming `operator` (the function the user called)."""
  if not isinstance(keras_model, keras.Model):
    raise error(TypeError, operator, "keras_model must be a Keras model.",
                expected="a keras.Model", actual=f"a {type(keras_model).__name__}",
                hint="wrap layers in keras.Sequential([keras.Input(shape), ...])")
  if not keras_model.built:
    raise error(ValueError, operator, "the Keras model is not built: it has no weights yet.",
                hint="give it an input shape: keras.Sequential([keras.Input((784,)), ...]), "
                "or call keras_model.build((None, 784))")
  check_input_spec(input_spec, operator)
  losses, weights, multi_output = _check_loss(keras, loss, loss_weights, operator)

  # Non-trainable variables are the weights plus seed states, in Keras's own order.
  weight_ids = {id(v) for v in keras_model.non_trainable_weights}
  all_non_trainable = list(keras_model.non_trainable_variables)
  weight_index = [i for i, v in enumerate(all_non_trainable) if id(v) in weight_ids]
  seed_index = [i for i, v in enumerate(all_non_trainable)
                if id(v) not in weight_ids and _is_seed_state(v)]
  fixed_state = [jnp.asarray(v.value) for v in all_non_trainable]
  rnn_states = _rnn_state_variables(keras, keras_model)
  initial_carry = [jnp.zeros(v.shape, v.dtype) for v in rnn_states] if rnn_states else None

  def predict_on_batch(model_weights: ModelWeights, x: Any, training: bool,
                       key: Optional[jax.Array], carry: Optional[list] = None) -> PredictOutput:
    if len(model_weights.non_trainable) != len(weight_index):
      raise error(ValueError, "forward_pass", "the weights do not fit the Keras model's "
                  "non-trainable weights.", expected=f"{len(weight_index)} arrays",
                  actual=f"{len(model_weights.non_trainable)} arrays",
                  hint="start from the model's initial_weights (batch-norm statistics "
                  "included)")
    state = list(fixed_state)
    for i, value in zip(weight_index, model_weights.non_trainable):
      state[i] = value
    if training and seed_index:
      require_key(key, "forward_pass", "Keras SeedGenerators, e.g. Dropout")
      for n, i in enumerate(seed_index):
        state[i] = jax.random.fold_in(raw_key(key), n).astype(jnp.uint32)
    new_carry = None
    if rnn_states:
      predictions, new_state, reg_losses, new_carry = _call_carrying(
          keras, keras_model, list(model_weights.trainable), state, rnn_states,
          initial_carry if carry is None else list(carry), x, training)
    else:
      predictions, new_state, reg_losses = keras_model.stateless_call(
          list(model_weights.trainable), state, x, training=training, return_losses=True)
    new_weights = [new_state[i] for i in weight_index] if training and weight_index else None
    reg = sum(jnp.asarray(r, jnp.float32) for r in reg_losses) if reg_losses else None
    return PredictOutput(predictions, new_weights, reg, new_carry)

  def loss_fn(predictions: Any, labels: Any, sample_weight: jax.Array) -> jax.Array:
    outputs, targets = (predictions, labels) if multi_output else ([predictions], [labels])
    if len(outputs) != len(losses) or len(targets) != len(losses):
      raise error(ValueError, "forward_pass", "a multi-output model needs one loss and one "
                  "label per output.", expected=f"{len(losses)} outputs and labels",
                  actual=f"{len(outputs)} outputs, {len(targets)} labels")
    return sum(w * masked_mean(_per_example_loss(keras, fn, y, p, operator), sample_weight)
               for fn, w, y, p in zip(losses, weights, targets, outputs))

  return FunctionalModel(
      initial_weights=weights_of(keras_model), predict_on_batch_fn=predict_on_batch,
      loss_fn=loss_fn,
      metrics_fns=metrics_lib.NoneWhenUnmasked(*metrics_lib.to_metrics_fns(keras_metrics)),
      input_spec=input_spec, builtin_metrics=builtin_metrics, initial_carry=initial_carry)

