"""`FunctionalModel` written by hand: masking, state updates, jit/vmap/scan, and its errors."""

import doctest
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.learning import models
from federax.learning.models import _functional, metrics

ModelWeights = models.ModelWeights


def predict_linear(weights, x, training, key):
  kernel, bias = weights.trainable
  return jax.nn.softmax(x @ kernel + bias)


def cross_entropy(predictions, labels, sample_weight):
  p = jnp.take_along_axis(predictions, labels[:, None], axis=1)[:, 0]
  return metrics.weighted_mean(-jnp.log(p), sample_weight)


def linear_model(spec, **kwargs):
  rng = np.random.default_rng(0)
  weights = ModelWeights([rng.normal(0, 0.05, (784, 10)).astype(np.float32), np.zeros(10)], [])
  kwargs.setdefault("metrics_fns",
                    metrics.to_metrics_fns([metrics.sparse_categorical_accuracy()]))
  return models.FunctionalModel(initial_weights=weights, predict_on_batch_fn=predict_linear,
                                loss_fn=cross_entropy, input_spec=spec, **kwargs)


def test_padded_rows_count_in_nothing(spec, batch, jitted):
  model = jitted(linear_model(spec))
  out = model.forward_pass(model.initial_weights, batch)
  real = {k: v[:4] for k, v in batch.items() if k != "mask"}
  unpadded = model.forward_pass(model.initial_weights, real)
  np.testing.assert_allclose(out.loss, unpadded.loss, rtol=1e-6)
  assert int(out.num_examples) == int(unpadded.num_examples) == 4
  states = [model.update_metrics_state(model.initialize_metrics_state(), b, o)
            for b, o in ((batch, out), (real, unpadded))]
  jax.tree.map(np.testing.assert_allclose, *states)


def test_loss_method_and_repr(spec, batch):
  model = linear_model(spec)
  predictions = model.predict_on_batch(model.initial_weights, batch["x"][:4], training=False)
  np.testing.assert_allclose(model.loss(predictions, batch["y"][:4]),
                             model.forward_pass(model.initial_weights, batch).loss, rtol=1e-6)
  assert repr(model) == ("FunctionalModel(input_spec=<x=float32[?,784],y=int32[?]>, metrics=["
                         "'sparse_categorical_accuracy', 'loss', 'num_examples', 'num_batches'])")


def test_input_spec_forms_are_accepted(spec):
  from federax.simulation import Dataset

  ds = Dataset.from_tensor_slices({"x": np.zeros((5, 784), np.float32),
                                   "y": np.zeros(5, np.int32)}).masked_batch(2)
  for input_spec in (spec, ds.element_spec, fx.to_type(spec), fx.SequenceType(fx.to_type(spec)),
                     {"x": jax.ShapeDtypeStruct((2, 784), jnp.float32),
                      "y": jax.ShapeDtypeStruct((2,), jnp.int32)},
                     ((np.float32, [None, 784]), (np.int32, [None]))):
    assert linear_model(input_spec).input_spec is input_spec


def test_three_argument_predict_fn_as_in_tff(spec, batch, jitted):
  model = models.FunctionalModel(
      initial_weights=linear_model(spec).initial_weights,
      predict_on_batch_fn=lambda weights, x, training: predict_linear(weights, x, training, None),
      loss_fn=cross_entropy, input_spec=spec)
  fast, reference = jitted(model), jitted(linear_model(spec))
  np.testing.assert_allclose(fast.forward_pass(model.initial_weights, batch).loss,
                             reference.forward_pass(reference.initial_weights, batch).loss)
  assert model.metric_names == ("loss", "num_examples", "num_batches")


def counting_model(spec):
  """A model whose non-trainable weight counts the real examples seen in training."""
  def predict(weights, x, training, key):
    noise = jax.random.normal(key, x.shape[:1]) if training else jnp.zeros(x.shape[:1])
    new = {"seen": weights.non_trainable["seen"] + x.shape[0]}
    return models.PredictOutput(x[:, :10] @ weights.trainable + noise[:, None], new,
                                regularization_loss=jnp.sum(weights.trainable ** 2))
  return models.FunctionalModel(
      initial_weights=(jnp.ones((10, 10)), {"seen": jnp.zeros([], jnp.int32)}),
      predict_on_batch_fn=predict, loss_fn=lambda p, y, w: metrics.weighted_mean(p[:, 0], w),
      input_spec=spec)


def test_predict_output_updates_state_and_adds_regularization(spec, batch, jitted):
  model = jitted(counting_model(spec))
  key = jax.random.PRNGKey(0)
  out = model.forward_pass(model.initial_weights, batch, key=key)
  assert int(out.non_trainable["seen"]) == 6
  predictions = model.predict_on_batch(model.initial_weights, batch["x"], key=key)
  np.testing.assert_allclose(out.loss, predictions[:4, 0].mean() + 100.0, rtol=1e-5)
  evaluation = model.forward_pass(model.initial_weights, batch, training=False)
  assert evaluation.non_trainable is None
  with_key = model.forward_pass(model.initial_weights, batch, training=False, key=key)
  np.testing.assert_array_equal(evaluation.predictions, with_key.predictions)  # Key unused.
  padding = {**batch, "mask": np.zeros(6, bool)}
  assert int(model.forward_pass(model.initial_weights, padding, key=key).non_trainable["seen"]) == 0


def test_jit_vmap_over_clients_and_scan_over_batches(spec, make_batch, jitted):
  model = linear_model(spec)
  fast = jitted(model)
  clients = [[make_batch(1, real=6), make_batch(2, real=3)], [make_batch(3, real=2),
                                                               make_batch(4, real=0)]]
  data = jax.tree.map(lambda *a: jnp.stack(a), *[jax.tree.map(lambda *b: jnp.stack(b), *c)
                                                  for c in clients])

  def client_metrics(batches):
    def step(state, b):
      return model.update_metrics_state(state, b, model.forward_pass(
          model.initial_weights, b, training=False)), None
    return jax.lax.scan(step, model.initialize_metrics_state(), batches)[0]

  states = jax.jit(jax.vmap(client_metrics))(data)
  summed = model.finalize_metrics(jax.tree.map(lambda a: a.sum(0), states))
  sequential = model.initialize_metrics_state()
  for b in [b for c in clients for b in c]:
    sequential = fast.update_metrics_state(sequential, b, fast.forward_pass(
        model.initial_weights, b))
  for name, value in model.finalize_metrics(sequential).items():
    np.testing.assert_allclose(summed[name], value, rtol=1e-5)
  assert int(summed["num_examples"]) == 11 and int(summed["num_batches"]) == 3


def test_batch_errors(spec, batch):
  model = linear_model(spec)
  with pytest.raises(ValueError) as info:
    model.forward_pass(model.initial_weights, {"pixels": batch["x"], "y": batch["y"]})
  # The models write the core's template (federax.core.errors.format_message).
  assert re.fullmatch(re.escape(
      "forward_pass: the batch has no 'x'.\n"
      "  expected: keys 'x', 'y' (and optionally 'mask')\n"
      "  actual:   keys ['pixels', 'y']\n"
      "  hint: a batch is {'x': inputs, 'y': labels} (plus an optional bool 'mask'), or an (x, y) "
      "pair; rename features with Dataset.map(lambda e: {'x': e['pixels'], 'y': e['label']})\n"
      f"  at {__file__}:") + r"\d+: " + re.escape(
          'model.forward_pass(model.initial_weights, {"pixels": batch["x"], "y": batch["y"]})'),
      str(info.value))
  with pytest.raises(TypeError) as info:
    model.forward_pass(model.initial_weights, batch["x"])
  assert "forward_pass: cannot read inputs and labels from the batch." in str(info.value)
  with pytest.raises(ValueError) as info:
    model.update_metrics_state(model.initialize_metrics_state(), {"x": batch["x"]}, None)
  assert "update_metrics_state: the batch has no 'y'." in str(info.value)


def test_constructor_errors(spec):
  with pytest.raises(TypeError) as info:
    linear_model({"x": object(), "y": np.int32})
  assert "FunctionalModel: input_spec is not a type specification." in str(info.value)
  with pytest.raises(TypeError) as info:
    linear_model((np.float32, [None, 784]))
  assert "input_spec must describe a batch of inputs and labels." in str(info.value)
  assert "actual:   float32[?,784]" in str(info.value)
  with pytest.raises(ValueError) as info:
    linear_model({"x": np.float32, "label": np.int32})
  assert "input_spec has no element 'y'." in str(info.value)
  assert "actual:   <label=int32,x=float32>" in str(info.value)
  with pytest.raises(TypeError) as info:
    models.FunctionalModel(initial_weights=[1.0], predict_on_batch_fn=predict_linear,
                           loss_fn=cross_entropy, input_spec=spec)
  assert "initial_weights must hold trainable and non-trainable weights." in str(info.value)
  with pytest.raises(TypeError) as info:
    linear_model(spec, metrics_fns=[metrics.sparse_categorical_accuracy()])
  assert "FunctionalModel: metrics_fns must be three functions." in str(info.value)
  with pytest.raises(TypeError) as info:
    linear_model(spec, metrics_fns=(lambda: [0.0], lambda *a: [0.0], lambda s: {}))
  assert "metrics_fns' initialize() must return a dict" in str(info.value)


def test_docstring_examples_run():
  for module in (_functional, metrics):
    result = doctest.testmod(module, extraglobs={"jnp": jnp, "np": np, "jax": jax},
                             optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0, module.__name__


def test_predict_on_batch_and_loss_take_tff_keywords(spec, batch):
  # TFF's building_your_own_federated_learning_algorithm tutorial calls both by keyword.
  model = linear_model(spec)
  trainable = model.initial_weights.trainable
  x, y = batch["x"][:4], batch["y"][:4]
  outputs = model.predict_on_batch(model_weights=(trainable, ()), x=x, training=True)
  loss = model.loss(output=outputs, label=y)
  np.testing.assert_allclose(loss, model.loss(outputs, y, sample_weight=np.ones(4, np.float32)),
                             rtol=1e-6)
  grads = jax.grad(lambda w: model.loss(
      output=model.predict_on_batch(model_weights=(w, ()), x=x, training=True), label=y))(
          trainable)
  np.testing.assert_allclose(grads[1], jax.grad(
      lambda b: cross_entropy(predict_linear(ModelWeights([trainable[0], b], []), x, True, None),
                              y, np.ones(4, np.float32)))(trainable[1]), rtol=1e-5)


def mnist_metrics_fns():
  """The metrics of TFF's hand-written MnistModel (federated_learning_for_image_classification):
  its own `num_examples` (a float) and `loss`, which replace the built-in ones."""
  import collections

  def initialize():
    zero = jnp.zeros([], jnp.float32)
    return collections.OrderedDict(num_examples=[zero], loss=[zero, zero], accuracy=[zero, zero])

  def update(state, labels, batch_output, sample_weight):
    n = jnp.sum(sample_weight)
    correct = jnp.argmax(batch_output.predictions, -1) == labels
    return collections.OrderedDict(
        num_examples=[state["num_examples"][0] + n],
        loss=[state["loss"][0] + batch_output.loss * n, state["loss"][1] + n],
        accuracy=[state["accuracy"][0] + jnp.sum(correct * sample_weight),
                  state["accuracy"][1] + n])

  def finalize(state):
    return collections.OrderedDict(num_examples=state["num_examples"][0],
                                   loss=state["loss"][0] / state["loss"][1],
                                   accuracy=state["accuracy"][0] / state["accuracy"][1])

  return initialize, update, finalize


def test_a_model_with_its_own_loss_and_num_examples_reports_its_metrics_only(spec, batch,
                                                                            jitted):
  model = jitted(linear_model(spec, metrics_fns=mnist_metrics_fns()))
  # As TFF's hand-written VariableModel (the image classification tutorial's MnistModel):
  # its metrics in its order, no built-ins added.
  assert model.metric_names == ("num_examples", "loss", "accuracy")
  state = model.initialize_metrics_state()
  assert list(state) == ["num_examples", "loss", "accuracy"]
  out = model.forward_pass(model.initial_weights, batch)
  state = model.update_metrics_state(state, batch, out)
  state = model.update_metrics_state(state, batch, out)
  assert list(state) == ["num_examples", "loss", "accuracy"]
  finalized = model.finalize_metrics(state)
  assert list(finalized) == ["num_examples", "loss", "accuracy"]
  assert finalized["num_examples"].dtype == np.float32 and float(finalized["num_examples"]) == 8.0
  np.testing.assert_allclose(finalized["loss"], out.loss, rtol=1e-6)


def test_metrics_are_reported_in_the_models_order_then_the_built_ins(spec, batch):
  model = linear_model(spec, metrics_fns=metrics.to_metrics_fns(
      [metrics.sparse_categorical_accuracy("zz"), metrics.sparse_categorical_accuracy("aa")]))
  assert model.metric_names == ("zz", "aa", "loss", "num_examples", "num_batches")
  out = jax.jit(model.forward_pass)(model.initial_weights, batch)
  state = jax.jit(model.update_metrics_state)(model.initialize_metrics_state(), batch, out)
  assert list(jax.jit(model.finalize_metrics)(state)) == list(model.metric_names)
  assert str(fx.type_of(state)) == (
      "<zz=<float32,float32>,aa=<float32,float32>,loss=<float32,float32>,num_examples=int32,"
      "num_batches=int32>")
