"""`ReconstructionModel`: a model whose weights split into global ones and client-local ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from federax.learning.models._common import (as_array_tree, batch_weights, check_input_spec,
                                             error, unpack_batch)
from federax.learning.models._recon_split import DatasetSplitFn, build_dataset_split_fn
from federax.learning.models._weights import ModelWeights


class ReconstructionBatchOutput(NamedTuple):
  """TFF's `ReconstructionBatchOutput`: a batch's `predictions`, `labels` and `num_examples`
  (int32, the real rows), plus its `mask` as float32[B] (federax: padded rows weigh 0)."""
  predictions: Any
  labels: Any
  num_examples: Any
  sample_weight: Any = None


class ReconstructionModel:
  """A partially local model (TFF's `tff.learning.models.ReconstructionModel`), functional.

  Its weights are `global_weights` (sent to the server and aggregated) and `local_weights`
  (reconstructed on each client from their initial values, never sent), each a
  `ModelWeights(trainable, non_trainable)`. The forward pass is a pure function
  `predict_on_batch_fn(global_weights, local_weights, x, training) -> predictions`; the loss
  and metrics are given to the algorithms (`build_fed_recon(loss_fn=..., metrics_fn=...)`),
  as in TFF.

  Args:
    global_weights: `ModelWeights` (or a `(trainable, non_trainable)` pair) of arrays.
    local_weights: likewise; `ModelWeights([], [])` for a model with no local part.
    predict_on_batch_fn: see above.
    input_spec: the batch structure with 'x' and 'y' (see `FunctionalModel`).

  Raises:
    TypeError: if a weights argument or `input_spec` has the wrong form, or the function is
      not callable.

  Example (matrix factorization: a global item embedding, a local user embedding):
    >>> import jax.numpy as jnp
    >>> def predict(global_w, local_w, x, training):
    ...   items = global_w.trainable[0][x[:, 0]]          # [B, k]
    ...   return jnp.sum(items * local_w.trainable[0], axis=1, keepdims=True)
    >>> model = fx.learning.models.ReconstructionModel(
    ...     global_weights=([jnp.ones((4, 2))], []), local_weights=([jnp.ones((1, 2))], []),
    ...     predict_on_batch_fn=predict,
    ...     input_spec={'x': (np.int32, [None, 1]), 'y': (np.float32, [None, 1])})
    >>> out = model.forward_pass(model.global_weights, model.local_weights,
    ...                          {'x': np.array([[0], [3]]), 'y': np.ones((2, 1), np.float32)})
    >>> out.predictions.tolist(), int(out.num_examples)
    ([[2.0], [2.0]], 2)
  """

  def __init__(self, *, global_weights: Any, local_weights: Any,
               predict_on_batch_fn: Callable[..., Any], input_spec: Any):
    where = "ReconstructionModel"
    self.global_weights = _as_weights(global_weights, where, "global_weights")
    self.local_weights = _as_weights(local_weights, where, "local_weights")
    if not callable(predict_on_batch_fn):
      raise error(TypeError, where, "predict_on_batch_fn must be a function.",
                  expected="(global_weights, local_weights, x, training) -> predictions",
                  actual=repr(predict_on_batch_fn))
    self._predict = predict_on_batch_fn
    self._spec_type = check_input_spec(input_spec, where)
    self.input_spec = input_spec

  def __repr__(self) -> str:
    count = lambda w: len(jax.tree.leaves(w))
    return (f"ReconstructionModel(global={count(self.global_weights)} arrays, "
            f"local={count(self.local_weights)} arrays, input_spec={self._spec_type})")

  # TFF's properties, returning the initial arrays.
  @property
  def global_trainable_variables(self) -> Any:
    return self.global_weights.trainable

  @property
  def global_non_trainable_variables(self) -> Any:
    return self.global_weights.non_trainable

  @property
  def local_trainable_variables(self) -> Any:
    return self.local_weights.trainable

  @property
  def local_non_trainable_variables(self) -> Any:
    return self.local_weights.non_trainable

  @classmethod
  def get_global_variables(cls, model: ReconstructionModel) -> ModelWeights:
    """The model's global weights as `ModelWeights` (TFF's name)."""
    return model.global_weights

  @classmethod
  def get_local_variables(cls, model: ReconstructionModel) -> ModelWeights:
    """The model's local weights as `ModelWeights` (TFF's name)."""
    return model.local_weights

  @classmethod
  def has_only_global_variables(cls, model: ReconstructionModel) -> bool:
    """Whether the model has no local weights at all."""
    return not jax.tree.leaves(model.local_weights)

  build_dataset_split_fn = staticmethod(build_dataset_split_fn)
  simple_dataset_split_fn = DatasetSplitFn()
  """Both stages see the client's whole dataset once (TFF's `simple_dataset_split_fn`)."""

  def predict_on_batch(self, global_weights: Any, local_weights: Any, x: Any,
                       training: bool = True) -> Any:
    """The predictions for inputs `x`."""
    return self._predict(ModelWeights(*global_weights), ModelWeights(*local_weights), x,
                         training)

  def forward_pass(self, global_weights: Any, local_weights: Any, batch: Any,
                   training: bool = True) -> ReconstructionBatchOutput:
    """Predictions, labels and the number of real examples of one batch.

    Args:
      global_weights, local_weights: `ModelWeights` (or pairs).
      batch: `{'x', 'y', 'mask'?}` or `(x, y)`.
      training: a Python bool.
    """
    x, y, mask = unpack_batch(batch, "ReconstructionModel.forward_pass")
    sample_weight, num_examples = batch_weights(y, mask)
    predictions = self.predict_on_batch(global_weights, local_weights, x, training)
    return ReconstructionBatchOutput(predictions, y, num_examples, sample_weight)

  @classmethod
  def from_keras_model_and_layers(cls, keras_model: Any, *, global_layers: Iterable[Any],
                                  local_layers: Iterable[Any],
                                  input_spec: Any) -> ReconstructionModel:
    """A Keras 3 model (JAX backend) whose layers are global or local (TFF's method).

    Every weight of the model must belong to exactly one of the layers given. Weights are
    ordered as the layers list them (their `trainable_variables`, `non_trainable_weights`).

    Args:
      keras_model: a built `keras.Model`.
      global_layers: layers whose weights are aggregated on the server.
      local_layers: layers whose weights stay on (and are reconstructed by) each client.
      input_spec: the batch structure with 'x' and 'y'.

    Raises:
      TypeError: if `keras_model` is not a Keras model.
      ValueError: if the model is not built, a layer's weights are not the model's, a weight
        is in both a global and a local layer, or a model weight is in neither.
    """
    from federax.learning.models._keras import import_keras  # pylint: disable=g-import-not-at-top
    where = "ReconstructionModel.from_keras_model_and_layers"
    keras = import_keras(where)
    if not isinstance(keras_model, keras.Model):
      raise error(TypeError, where, "keras_model must be a Keras model.",
                  expected="a keras.Model", actual=f"a {type(keras_model).__name__}")
    if not keras_model.built:
      raise error(ValueError, where, "the Keras model is not built: it has no weights yet.",
                  hint="give it an Input, or call keras_model.build(shape)")
    parts = {}
    for part, layers in (("global", list(global_layers)), ("local", list(local_layers))):
      parts[part] = ([v for layer in layers for v in layer.trainable_variables],
                     [v for layer in layers for v in layer.non_trainable_weights])
    return _from_keras_variables(keras_model, parts, input_spec, where)


  @classmethod
  def from_keras_model_and_variables(cls, keras_model: Any, *,
                                     global_trainable_variables: Iterable[Any],
                                     global_non_trainable_variables: Iterable[Any],
                                     local_trainable_variables: Iterable[Any],
                                     local_non_trainable_variables: Iterable[Any],
                                     input_spec: Any) -> ReconstructionModel:
    """As `from_keras_model_and_layers`, with the variables partitioned one by one (TFF's).

    Raises:
      As `from_keras_model_and_layers`.
    """
    from federax.learning.models._keras import import_keras  # pylint: disable=g-import-not-at-top
    where = "ReconstructionModel.from_keras_model_and_variables"
    keras = import_keras(where)
    if not isinstance(keras_model, keras.Model):
      raise error(TypeError, where, "keras_model must be a Keras model.",
                  expected="a keras.Model", actual=f"a {type(keras_model).__name__}")
    parts = {"global": (list(global_trainable_variables), list(global_non_trainable_variables)),
             "local": (list(local_trainable_variables), list(local_non_trainable_variables))}
    return _from_keras_variables(keras_model, parts, input_spec, where)

def _as_weights(weights: Any, where: str, name: str) -> ModelWeights:
  if not isinstance(weights, ModelWeights):
    if not (isinstance(weights, (tuple, list)) and len(weights) == 2):
      raise error(TypeError, where, f"{name} must hold trainable and non-trainable weights.",
                  expected="ModelWeights(trainable, non_trainable) or a pair of pytrees",
                  actual=f"a {type(weights).__name__}")
    weights = ModelWeights(*weights)
  return ModelWeights(*as_array_tree(tuple(weights)))


def _from_keras_variables(keras_model: Any, parts: dict, input_spec: Any,
                          where: str) -> ReconstructionModel:
  """The model over its variables split into `parts = {global|local: (trainable, non)}`."""
  model_trainable = list(keras_model.trainable_variables)
  model_non_trainable = list(keras_model.non_trainable_variables)
  position = {id(v): i for i, v in enumerate(model_trainable)}
  non_position = {id(v): i for i, v in enumerate(model_non_trainable)}
  owner: dict[int, str] = {}
  for part, (trainable, non_trainable) in parts.items():
    for v in trainable + non_trainable:
      if id(v) not in position and id(v) not in non_position:
        raise error(ValueError, where, f"a {part} layer's weight {v.path!r} is not a weight of "
                    "keras_model.", hint="pass layers of this model")
      if id(v) in owner and owner[id(v)] != part:
        raise error(ValueError, where, f"weight {v.path!r} is in both a global and a local "
                    "layer: global and local layers must not overlap.",
                    hint="list each layer once, in global_layers or in local_layers")
      owner[id(v)] = part
  missing = [v.path for v in model_trainable + list(keras_model.non_trainable_weights)
             if id(v) not in owner]
  if missing:
    raise error(ValueError, where, "some model weights are in neither the global nor the local "
                "layers.", expected="every weight in exactly one of them",
                actual=f"missing {missing}", hint="add their layers to global_layers or "
                "local_layers")
  fixed_state = [jnp.asarray(v.value) for v in model_non_trainable]
  slots = {part: ([position[id(v)] for v in tr], [non_position[id(v)] for v in nt])
           for part, (tr, nt) in parts.items()}
  values = lambda vs: [jnp.asarray(v.value) for v in vs]

  def predict(global_weights: ModelWeights, local_weights: ModelWeights, x: Any,
              training: bool) -> Any:
    trainable = [None] * len(model_trainable)
    state = list(fixed_state)
    for part, weights in (("global", global_weights), ("local", local_weights)):
      tr_slots, nt_slots = slots[part]
      for i, value in zip(tr_slots, weights.trainable):
        trainable[i] = value
      for i, value in zip(nt_slots, weights.non_trainable):
        state[i] = value
    predictions, _ = keras_model.stateless_call(trainable, state, x, training=training)
    return predictions

  return ReconstructionModel(
      global_weights=ModelWeights(values(parts["global"][0]), values(parts["global"][1])),
      local_weights=ModelWeights(values(parts["local"][0]), values(parts["local"][1])),
      predict_on_batch_fn=predict, input_spec=input_spec)

