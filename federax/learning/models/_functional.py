"""`FunctionalModel`: a model as initial weights plus pure functions (TFF's functional model)."""

from __future__ import annotations

import collections
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from federax.core.rows import RowMaskNotHonoured, repad, unpad
from federax.learning.models import metrics as metrics_lib
from federax.learning.models._common import (
    BatchOutput, as_array_tree, batch_weights, check_input_spec, error, unpack_batch,
    with_row_mask)
from federax.learning.models._padding import why_padding_changes
from federax.learning.models._weights import ModelWeights, register_reader

_BUILTIN_METRICS = (metrics_lib.mean_loss(), metrics_lib.num_examples(), metrics_lib.num_batches())
BUILTIN_METRIC_NAMES = tuple(m.name for m in _BUILTIN_METRICS)


class PredictOutput(NamedTuple):
  """What a `predict_on_batch_fn` returns when it does more than predict.

  Return plain predictions from a model without state updates or regularization; return a
  `PredictOutput` to report updated non-trainable weights (batch norm, in training) or a
  regularization loss. Being a federax type, it cannot be mistaken for tuple-shaped
  predictions.

  Attributes:
    predictions: the model's output.
    non_trainable: the updated non-trainable weights, or None when nothing changed.
    regularization_loss: a float scalar added to the batch loss, or None.
    carry: for a model built with an `initial_carry`, the state carried to the client's next
      batch (a stateful RNN's); None otherwise.
  """
  predictions: Any
  non_trainable: Any = None
  regularization_loss: Any = None
  carry: Any = None


def _takes_key(fn: Callable) -> bool:
  """Whether `fn` takes a 4th `key` argument (TFF's predict_on_batch_fn takes only three)."""
  try:
    params = list(inspect.signature(fn).parameters.values())
  except (TypeError, ValueError):
    return True
  if any(p.kind is p.VAR_POSITIONAL for p in params):
    return True
  return len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 4


class FunctionalModel:
  """A model as initial weights plus pure functions: TFF's `tff.learning.models.FunctionalModel`.

  Every method is pure and jit-able, and works under `jax.vmap` over a client axis and in
  `jax.lax.scan`. Batches are `{'x': inputs, 'y': labels, 'mask': bool[B]}` (mask optional;
  `Dataset.masked_batch` pads the last batch and sets it, and so does the vectorized runtime
  when it pads a short batch, see `row_mask`) or `(x, y)` pairs; padded rows count in nothing:
  not the loss, not `num_examples`, not the metrics.

  Writing a model by hand takes the parts of TFF's `VariableModel` in the "Federated Learning
  for Image Classification" tutorial, as data and functions:

  * **Weights**: `initial_weights`, a `ModelWeights(trainable, non_trainable)` of arrays.
  * **Forward pass**: `predict_on_batch_fn(weights, x, training, key) -> predictions`, and
    `loss_fn(predictions, labels, sample_weight) -> scalar`, the mean over examples weighted
    by `sample_weight` (the mask as float32[B]; use `metrics.weighted_mean`). `key` is a raw
    `jax.random.PRNGKey` for dropout and other randomness, None when `training=False`. A
    3-argument `predict_on_batch_fn(weights, x, training)` (TFF's form) is accepted too. To
    update non-trainable weights (batch norm) or add a regularization loss, return a
    `PredictOutput(predictions, non_trainable=..., regularization_loss=...)`.
  * **Unfinalized metrics**: `metrics_fns=(initialize, update, finalize)`: `initialize()`
    returns a dict of metric name -> state, `update(state, labels, batch_output,
    sample_weight)` returns the next one. States must be sums and counts, so the states of
    many clients can be added up.
  * **Finalizers**: `finalize(state)` returns a dict of metric name -> value; it runs on the
    sum of the clients' states.
  * **Carried state** (federax's addition, for a stateful RNN): a pytree `initial_carry` that
    each client's pass over its batches starts from and threads from batch to batch, as a
    Keras model's stateful RNN keeps its state in TFF. It is no weight: neither trained,
    broadcast nor aggregated. `predict_on_batch_fn` then takes it as a keyword, `carry=`,
    and returns `PredictOutput(predictions, carry=next_carry)`.

  Every model also reports 'loss' (the example-weighted mean), 'num_examples' and
  'num_batches', after its own metrics, unless it defines a 'loss' or 'num_examples' metric
  itself (as TFF's hand-written MnistModel does): then it reports its own metrics only. With
  `builtin_metrics=False` it reports only its own (as TFF's `functional_model_from_keras`). Metric states and values
  are OrderedDicts in that order, so they print in it (JAX would sort a dict's keys). Helpers such as `metrics.sparse_categorical_accuracy()` build `metrics_fns`
  with `metrics.to_metrics_fns([...])`.

  Args:
    initial_weights: a `ModelWeights`, or a `(trainable, non_trainable)` pair, of arrays.
    predict_on_batch_fn: see above.
    loss_fn: see above.
    metrics_fns: optional `(initialize, update, finalize)` for the model's own metrics.
    input_spec: the batch's structure: a federax type, a `Dataset.element_spec`, or a pytree
      of `jax.ShapeDtypeStruct`s or `(dtype, shape)` pairs, with 'x' and 'y'.
    builtin_metrics: whether to add 'loss', 'num_examples' and 'num_batches' (see above).
    initial_carry: optional carried state (see above); None for a model that carries none.

  Raises:
    TypeError: if `initial_weights`, `metrics_fns` or `input_spec` have the wrong form.
    ValueError: if `input_spec` lacks 'x' or 'y'.

  Example (a linear 784 -> 10 softmax model, the TFF tutorial's):
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from federax.learning.models import FunctionalModel, ModelWeights, metrics
    >>> def predict_on_batch(weights, x, training, key):
    ...   kernel, bias = weights.trainable
    ...   return jax.nn.softmax(x @ kernel + bias)
    >>> def loss_fn(predictions, labels, sample_weight):
    ...   p = jnp.take_along_axis(predictions, labels[:, None], axis=1)[:, 0]
    ...   return metrics.weighted_mean(-jnp.log(p), sample_weight)
    >>> def initialize():  # Unfinalized: [correct, count], sums that add up across clients.
    ...   return {'accuracy': [jnp.float32(0), jnp.float32(0)]}
    >>> def update(state, labels, batch_output, sample_weight):
    ...   correct = jnp.argmax(batch_output.predictions, axis=-1) == labels
    ...   total, count = state['accuracy']
    ...   return {'accuracy': [total + jnp.sum(correct * sample_weight),
    ...                        count + jnp.sum(sample_weight)]}
    >>> def finalize(state):
    ...   total, count = state['accuracy']
    ...   return {'accuracy': total / jnp.maximum(count, 1.0)}
    >>> model = FunctionalModel(
    ...     initial_weights=ModelWeights([jnp.zeros((784, 10)), jnp.zeros(10)], []),
    ...     predict_on_batch_fn=predict_on_batch, loss_fn=loss_fn,
    ...     metrics_fns=(initialize, update, finalize),
    ...     input_spec={'x': (np.float32, [None, 784]), 'y': (np.int32, [None])})
    >>> batch = {'x': np.ones((3, 784), np.float32), 'y': np.array([1, 2, 0]),
    ...          'mask': np.array([True, True, False])}
    >>> out = jax.jit(model.forward_pass)(model.initial_weights, batch)
    >>> round(float(out.loss), 4), int(out.num_examples)  # ln(10) at zero weights
    (2.3026, 2)
    >>> state = model.update_metrics_state(model.initialize_metrics_state(), batch, out)
    >>> sorted(model.finalize_metrics(state))
    ['accuracy', 'loss', 'num_batches', 'num_examples']
  """

  def __init__(self, *, initial_weights: Any, predict_on_batch_fn: Callable,
               loss_fn: Callable, metrics_fns: Optional[tuple] = None, input_spec: Any,
               builtin_metrics: bool = True, initial_carry: Any = None):
    operator = "FunctionalModel"
    if not isinstance(initial_weights, ModelWeights):
      if not (isinstance(initial_weights, (tuple, list)) and len(initial_weights) == 2):
        raise error(TypeError, operator, "initial_weights must hold trainable and "
                    "non-trainable weights.",
                    expected="ModelWeights(trainable, non_trainable) or a pair of pytrees",
                    actual=f"a {type(initial_weights).__name__}")
      initial_weights = ModelWeights(*initial_weights)
    self._spec_type = check_input_spec(input_spec, operator)
    self.initial_weights = ModelWeights(*as_array_tree(tuple(initial_weights)))
    self.input_spec = input_spec
    self._predict_on_batch_fn = predict_on_batch_fn
    self._takes_key = _takes_key(predict_on_batch_fn)
    self._loss_fn = loss_fn
    self.initial_carry = None if initial_carry is None else as_array_tree(initial_carry)
    if metrics_fns is None:
      metrics_fns = (dict, lambda state, *args: {}, lambda state: {})
    if not (isinstance(metrics_fns, tuple) and len(metrics_fns) == 3
            and all(callable(f) for f in metrics_fns)):
      raise error(TypeError, operator, "metrics_fns must be three functions.",
                  expected="(initialize, update, finalize)", actual=repr(metrics_fns),
                  hint="metrics.to_metrics_fns([metrics.sparse_categorical_accuracy()]) "
                  "builds one")
    self._metrics_fns = tuple(metrics_fns)
    self._none_when_unmasked = isinstance(metrics_fns, metrics_lib.NoneWhenUnmasked)
    user_state = _eval_keys(metrics_fns[0])
    if not isinstance(user_state, Mapping):
      raise error(TypeError, operator, "metrics_fns' initialize() must return a dict of "
                  "metric name -> unfinalized state.", expected="a dict",
                  actual=f"a {type(user_state).__name__}")
    self._user_metric_keys = tuple(user_state)
    # As TFF's Keras wrapper: the model's own metrics as they are, then the built-ins it does
    # not define itself (a hand-written model may report its own 'loss' or 'num_examples').
    # A model reporting its own 'loss' or 'num_examples' takes charge of its metrics, as TFF's
    # hand-written VariableModel does: none of the built-ins is added to it.
    takes_charge = any(m.name in self._user_metric_keys for m in _BUILTIN_METRICS)
    self._builtins = metrics_lib.to_metrics_fns(
        [m for m in _BUILTIN_METRICS if builtin_metrics and not takes_charge])
    self._padding_changes: dict[bool, Optional[tuple]] = {}  # See row_mask.

  def __repr__(self) -> str:
    return f"FunctionalModel(input_spec={self._spec_type}, metrics={list(self.metric_names)})"

  @property
  def metric_names(self) -> tuple[str, ...]:
    """The finalized metrics' names: the model's own, then the built-ins it does not define."""
    return tuple(_eval_keys(lambda: self.finalize_metrics(self.initialize_metrics_state())))

  def predict_on_batch(self, model_weights: Any, x: Any, training: bool = True,
                       key: Optional[jax.Array] = None) -> Any:
    """The model's predictions for the inputs `x` (with `training=False`, no randomness).

    Args:
      model_weights: a `ModelWeights`, or a `(trainable, non_trainable)` pair.
      x: the batch's inputs.
      training: a Python bool.
      key: a raw `jax.random.PRNGKey` for random layers in training (federax's addition;
        the other names are TFF's).

    Inputs of a batch padded with zero rows (`PaddedTensor`s, in a compiled loop over a
    dataset whose last batch is short) give `PaddedTensor` predictions, for `loss`.
    """
    x, padding = unpad(x)
    if padding is not None:
      self._require_exact_padding(training)
    predictions = self._predict(ModelWeights(*model_weights), x, training, key).predictions
    return repad(predictions, padding)

  def _predict(self, weights: ModelWeights, x: Any, training: bool, key: Any,
               carry: Any = None) -> PredictOutput:
    key = key if training else None
    kwargs = {}
    if self.initial_carry is not None:
      kwargs["carry"] = self.initial_carry if carry is None else carry
    if self._takes_key:
      out = self._predict_on_batch_fn(weights, x, training, key, **kwargs)
    else:
      out = self._predict_on_batch_fn(weights, x, training, **kwargs)
    out = out if isinstance(out, PredictOutput) else PredictOutput(out)
    if kwargs and out.carry is None:
      raise error(TypeError, "forward_pass", "the model has an initial_carry, but "
                  "predict_on_batch_fn returned no carry for the next batch.",
                  expected="PredictOutput(predictions, carry=...)",
                  actual=f"a {type(out.predictions).__name__} without a carry")
    return out

  def loss(self, output: Any, label: Any, sample_weight: Optional[jax.Array] = None
           ) -> jax.Array:
    """`loss_fn` on one batch: `output` from `predict_on_batch`, `label` the batch's labels
    (TFF's names); `sample_weight` (float[B], e.g. the batch mask) defaults to ones. The
    padded rows of `PaddedTensor`s (see `predict_on_batch`) weigh nothing."""
    (output, label, sample_weight), padding = unpad((output, label, sample_weight))
    if padding is not None:
      self._require_exact_padding(False)
      real = padding.mask.astype(jnp.float32)
      sample_weight = real if sample_weight is None else real * sample_weight
    if sample_weight is None:
      sample_weight, _ = batch_weights(label, None)
    sample_weight = jnp.asarray(sample_weight, jnp.float32)
    return jnp.asarray(self._loss_fn(output, label, sample_weight), jnp.float32)

  def forward_pass(self, weights: Any, batch: Any, training: bool = True,
                   key: Optional[jax.Array] = None, carry: Any = None) -> BatchOutput:
    """Predictions, loss and number of examples of one batch.

    Args:
      weights: a `ModelWeights` (or `(trainable, non_trainable)` pair).
      batch: `{'x', 'y', 'mask'?}` or `(x, y)`; its tensors may be `PaddedTensor`s (see
        `predict_on_batch`), whose padded rows count in nothing.
      training: a Python bool: dropout on, batch-norm statistics from the batch and updated.
      key: a raw `jax.random.PRNGKey` for randomness in training (use a different one per
        client and batch); ignored when `training=False`.
      carry: for a model with an `initial_carry`, the previous batch's `BatchOutput.carry`
        (None: `initial_carry`, the first batch of a client's pass).

    Returns:
      A `BatchOutput`. In training, `non_trainable` holds the updated non-trainable weights
      (unchanged for a batch with no real example); `carry` the state for the next batch
      (likewise), for a model with an `initial_carry`.

    Raises:
      ValueError: if a mapping batch lacks 'x' or 'y'.
      TypeError: if the batch is neither a mapping nor an `(x, y)` pair.
    """
    weights = ModelWeights(*weights)
    batch, padding = unpad(batch)
    if padding is not None:
      self._require_exact_padding(training)
      batch = with_row_mask(batch, padding.mask)
    x, y, mask = unpack_batch(batch, "forward_pass")
    sample_weight, num_examples = batch_weights(y, mask)
    out = self._predict(weights, x, training, key, carry)
    loss = jnp.asarray(self._loss_fn(out.predictions, y, sample_weight), jnp.float32)
    if out.regularization_loss is not None:
      loss = loss + jnp.asarray(out.regularization_loss, jnp.float32)
    non_trainable = None
    if training and out.non_trainable is not None:
      non_trainable = out.non_trainable
      if mask is not None:  # An all-padding batch must leave batch-norm statistics alone.
        non_trainable = jax.tree.map(lambda new, old: jnp.where(num_examples > 0, new, old),
                                     non_trainable, weights.non_trainable)
    new_carry = out.carry if self.initial_carry is not None else None
    if new_carry is not None and mask is not None:
      old = self.initial_carry if carry is None else carry
      new_carry = jax.tree.map(lambda new, old: jnp.where(num_examples > 0, new, old),
                               new_carry, old)
    return BatchOutput(loss, repad(out.predictions, padding), num_examples, non_trainable,
                       new_carry)

  def row_mask(self, training: bool) -> Callable[[Any, jax.Array], Any]:
    """How a computation that hands batches to this model takes a batch padded with zero rows.

    Declare it on such a computation, `@fx.computation(..., row_mask=model.row_mask(True))`,
    and the vectorized runtime pads a short last batch (`batch(20)`, TFF's way) instead of
    leaving the compiled path: the returned `fn(batch, mask)` puts the runtime's row mask in
    the batch's 'mask', so `forward_pass` and the metrics leave the padded rows out, exactly.
    The learning algorithms and `build_fed_eval` declare it. When padding would change a
    result (a training pass that updates batch statistics, a `loss_fn` or metric that ignores
    `sample_weight`), `fn` raises `RowMaskNotHonoured` saying why, and the call runs on the
    real short batches instead.

    Args:
      training: whether the batches go through training passes.
    """
    def attach(batch: Any, mask: jax.Array) -> Any:
      self._require_exact_padding(training)
      return with_row_mask(batch, mask)

    return attach

  def _require_exact_padding(self, training: bool) -> None:
    """Raises `RowMaskNotHonoured`, saying why, where padded rows would change the results."""
    if training not in self._padding_changes:
      self._padding_changes[training] = why_padding_changes(self, training)
    if self._padding_changes[training] is not None:
      reason, fix = self._padding_changes[training]
      raise RowMaskNotHonoured(reason=reason, fix=fix)

  # Metric states and values are OrderedDicts: JAX sorts a plain dict's keys, TFF keeps them.

  def initialize_metrics_state(self) -> collections.OrderedDict:
    """The unfinalized metrics before any batch: name -> summable arrays, the model's first."""
    return self._join(self._metrics_fns[0](), self._builtins.initialize())

  def update_metrics_state(self, state: Mapping, batch: Any,
                           batch_output: BatchOutput) -> collections.OrderedDict:
    """The unfinalized metrics after one more batch (its labels and mask are read)."""
    (batch, batch_output), padding = unpad((batch, batch_output))
    if padding is not None:
      self._require_exact_padding(False)
      batch = with_row_mask(batch, padding.mask)
    _, y, mask = unpack_batch(batch, "update_metrics_state")
    sample_weight, _ = batch_weights(y, mask)
    user, builtin = self._split(state)
    # Keras metrics get None when every row is real, as TFF gives them (NoneWhenUnmasked).
    none = mask is None and self._none_when_unmasked
    return self._join(self._metrics_fns[1](user, y, batch_output, None if none else sample_weight),
                      self._builtins.update(builtin, y, batch_output, sample_weight))

  def finalize_metrics(self, state: Mapping) -> collections.OrderedDict:
    """The metric values of a state, or of the elementwise sum of many clients' states."""
    user, builtin = self._split(state)
    return self._join(self._metrics_fns[2](user), self._builtins.finalize(builtin))

  def _split(self, state: Mapping) -> tuple[collections.OrderedDict, dict]:
    user = collections.OrderedDict((k, state[k]) for k in self._user_metric_keys)
    return user, {k: v for k, v in state.items() if k not in user}

  def _join(self, user: Mapping, builtin: Mapping) -> collections.OrderedDict:
    """The model's metrics in its own order (even if its functions sorted them), then ours."""
    return collections.OrderedDict(
        [(k, user[k]) for k in _ordered_keys(user, self._user_metric_keys)]
        + [(m.name, builtin[m.name]) for m in _BUILTIN_METRICS if m.name in builtin])


def _eval_keys(fn: Callable[[], Any]) -> Any:
  """`fn()`'s result abstractly (no arrays are made), a mapping's keys in the order made.

  `jax.eval_shape` would give a plain dict back with its keys sorted.
  """
  made = []

  def run():
    made.append(fn())
    return made[-1]

  shapes = jax.eval_shape(run)
  if isinstance(made[0], Mapping):
    return collections.OrderedDict((k, shapes[k]) for k in made[0])
  return shapes


def _ordered_keys(mapping: Mapping, order: Iterable[str]) -> list[str]:
  order = [k for k in order if k in mapping]
  return order + [k for k in mapping if k not in order]


register_reader(lambda model: isinstance(model, FunctionalModel),
                lambda model: model.initial_weights)
