"""`functional_model_from_keras`: TFF's building_your_own_federated_learning_algorithm model.

The tutorial builds its model with `tff.learning.models.functional_model_from_keras(
keras_model, loss_fn=..., input_spec=..., metrics_constructor=OrderedDict(accuracy=...))` and
trains it with `predict_on_batch` / `loss` by keyword; the types it prints are compared here.
"""

import collections
import re

import jax
import keras
import numpy as np
import pytest

import federax as fx
from federax.learning import models

SPEC = ((np.float32, [None, 784]), (np.int32, [None, 1]))  # The tutorial's (x, y) batches.


def create_keras_model():
  initializer = keras.initializers.GlorotNormal(seed=0)
  return keras.models.Sequential([
      keras.layers.Input(shape=(784,)),
      keras.layers.Dense(10, kernel_initializer=initializer),
      keras.layers.Softmax(),
  ])


def tutorial_model(keras_model=None, **kwargs):
  kwargs.setdefault("metrics_constructor", collections.OrderedDict(
      accuracy=keras.metrics.SparseCategoricalAccuracy))
  return models.functional_model_from_keras(
      keras_model if keras_model is not None else create_keras_model(),
      loss_fn=keras.losses.SparseCategoricalCrossentropy(), input_spec=SPEC, **kwargs)


def batches(seed, n=3, size=5):
  rng = np.random.default_rng(seed)
  return [(rng.normal(size=(size, 784)).astype(np.float32),
           rng.integers(0, 10, size=(size, 1)).astype(np.int32)) for _ in range(n)]


def test_the_tutorials_types_print_as_in_tff():
  tff_model = tutorial_model()
  assert isinstance(tff_model, models.FunctionalModel)

  @fx.computation
  def server_init():
    return models.ModelWeights(*tff_model.initial_weights)

  assert str(fx.SequenceType(fx.to_type(tff_model.input_spec))) == "<float32[?,784],int32[?,1]>*"
  model_weights_type = server_init.type_signature.result
  assert str(model_weights_type) == "<trainable=<float32[784,10],float32[10]>,non_trainable=<>>"
  trainable_weights, _ = tff_model.initial_weights
  assert [w.shape for w in trainable_weights] == [(784, 10), (10,)]


def test_initial_weights_are_the_keras_models_current_weights():
  keras_model = create_keras_model()
  tff_model = tutorial_model(keras_model)
  for ours, theirs in zip(tff_model.initial_weights.trainable, keras_model.trainable_weights):
    np.testing.assert_array_equal(ours, np.asarray(theirs.value))


def test_the_tutorials_client_update_trains_by_keyword():
  model = tutorial_model()
  optimizer = fx.learning.optimizers.build_sgdm(learning_rate=0.01)
  client_weights = model.initial_weights.trainable
  state = optimizer.initialize(client_weights)

  def batch_loss(weights, x, y):
    outputs = model.predict_on_batch(model_weights=(weights, ()), x=x, training=True)
    return model.loss(output=outputs, label=y)

  data = batches(0)
  before = sum(float(batch_loss(client_weights, x, y)) for x, y in data)
  for _ in range(5):
    for x, y in data:
      grads = jax.grad(batch_loss)(client_weights, x, y)
      state, client_weights = optimizer.next(state, weights=client_weights, gradients=grads)
  after = sum(float(batch_loss(client_weights, x, y)) for x, y in data)
  assert after < before

  # The loss is Keras's: mean sparse categorical cross-entropy of the softmax outputs.
  x, y = data[0]
  outputs = model.predict_on_batch(model_weights=(client_weights, ()), x=x, training=False)
  expected = -np.mean(np.log(np.take_along_axis(np.asarray(outputs), y, axis=1)))
  np.testing.assert_allclose(model.loss(output=outputs, label=y), expected, rtol=1e-5)


def accuracy_of(model, data):
  weights = model.initial_weights
  state = model.initialize_metrics_state()
  for x, y in data:
    state = model.update_metrics_state(state, (x, y), model.forward_pass(weights, (x, y)))
  return model.finalize_metrics(state)


@pytest.mark.parametrize("constructor, name", [
    (collections.OrderedDict(accuracy=keras.metrics.SparseCategoricalAccuracy), "accuracy"),
    (keras.metrics.SparseCategoricalAccuracy, "sparse_categorical_accuracy"),
    (lambda: collections.OrderedDict(acc=keras.metrics.SparseCategoricalAccuracy()), "acc"),
])
def test_every_tff_form_of_metrics_constructor(constructor, name):
  model = tutorial_model(metrics_constructor=constructor)
  assert name in model.metric_names
  data = batches(1)
  metrics = accuracy_of(model, data)
  outputs = [np.asarray(model.predict_on_batch(model.initial_weights, x, training=False))
             for x, _ in data]
  correct = [np.argmax(o, -1) == y[:, 0] for o, (_, y) in zip(outputs, data)]
  np.testing.assert_allclose(metrics[name], np.mean(np.concatenate(correct)), rtol=1e-6)


def test_no_metrics_constructor_reports_the_loss_only():
  model = tutorial_model(metrics_constructor=None)
  assert set(model.metric_names) == {"loss", "num_examples", "num_batches"}


def test_a_function_building_the_model_is_accepted_as_in_tff():
  from_function = tutorial_model(create_keras_model)
  from_model = tutorial_model(create_keras_model())
  jax.tree.map(np.testing.assert_array_equal, from_function.initial_weights,
               from_model.initial_weights)


@pytest.mark.parametrize("keras_model, constructor, message", [
    ("not a model", None,
     "functional_model_from_keras: keras_model must be a Keras model or a function returning "
     "one.\n  expected: a keras.Model, or a no-argument function returning one\n"
     "  actual:   a str"),
    (create_keras_model, [keras.metrics.SparseCategoricalAccuracy],
     "functional_model_from_keras: metrics_constructor must build Keras metrics.\n"
     "  expected: a function returning a keras.metrics.Metric (or an OrderedDict of them), "
     "or an OrderedDict of such functions\n  actual:   a list"),
])
def test_errors(keras_model, constructor, message):
  with pytest.raises(TypeError) as info:
    tutorial_model(keras_model, metrics_constructor=constructor)
  assert str(info.value).startswith(message + "\n")
