"""`from_keras_model` against NumPy: the TFF tutorial's model, batch norm, dropout, errors."""

import doctest
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

keras = pytest.importorskip("keras")

import federax as fx  # noqa: E402
from federax.learning import models  # noqa: E402
from federax.core.rows import RowMaskNotHonoured  # noqa: E402
from federax.learning.models import _keras, _weights  # noqa: E402

ModelWeights = models.ModelWeights


def tutorial_model():
  """The Keras model of TFF's "Federated Learning for Image Classification" tutorial."""
  return keras.Sequential([keras.Input((784,)),
                           keras.layers.Dense(10, kernel_initializer="zeros"),
                           keras.layers.Softmax()])


def wrap(model, spec, **kwargs):
  return models.from_keras_model(model, keras.losses.SparseCategoricalCrossentropy(), spec,
                                 metrics=[keras.metrics.SparseCategoricalAccuracy()], **kwargs)


@pytest.fixture(scope="module")
def tutorial(jitted):
  """The tutorial model, wrapped and jitted once: its tests share the compiled functions."""
  return jitted(wrap(tutorial_model(), {"x": (np.float32, [None, 784]), "y": (np.int32, [None])}))


def random_weights(seed):
  rng = np.random.default_rng(seed)
  return ModelWeights([jnp.asarray(rng.normal(0, 0.05, (784, 10)), jnp.float32),
                       jnp.asarray(rng.normal(0, 0.05, 10), jnp.float32)], [])


def numpy_reference(weights, batch):
  """Loss, gradients and accuracy of softmax(x @ W + b) over the real rows only (float64)."""
  kernel, bias = (np.asarray(a, np.float64) for a in weights.trainable)
  keep = np.asarray(batch["mask"])
  x, y = np.asarray(batch["x"], np.float64)[keep], np.asarray(batch["y"])[keep]
  logits = x @ kernel + bias
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  n = len(y)
  loss = -np.log(p[np.arange(n), y]).mean()
  dlogits = p.copy()
  dlogits[np.arange(n), y] -= 1
  dlogits /= n
  accuracy = (p.argmax(1) == y).mean()
  return loss, [x.T @ dlogits, dlogits.sum(0)], accuracy, n


def test_zero_weights_give_ln_10(tutorial, batch):
  out = tutorial.forward_pass(tutorial.initial_weights, batch)
  np.testing.assert_allclose(out.loss, np.log(10), rtol=1e-6)
  assert out.num_examples.dtype == jnp.int32 and int(out.num_examples) == 4
  assert out.loss.dtype == jnp.float32 and out.non_trainable is None


def test_loss_gradients_and_metrics_match_numpy_on_real_rows(tutorial, batch):
  model = tutorial.model
  weights = random_weights(1)
  loss, grads, accuracy, n = numpy_reference(weights, batch)

  def loss_of(trainable):
    return model.forward_pass(ModelWeights(trainable, []), batch, training=True).loss

  value, got_grads = jax.jit(jax.value_and_grad(loss_of))(weights.trainable)
  np.testing.assert_allclose(value, loss, rtol=1e-5)
  for got, want in zip(got_grads, grads):
    np.testing.assert_allclose(got, want, atol=1e-6)
  result = tutorial.metrics(batch, tutorial.forward_pass(weights, batch))
  np.testing.assert_allclose(result["loss"], loss, rtol=1e-5)
  np.testing.assert_allclose(result["sparse_categorical_accuracy"], accuracy)
  assert int(result["num_examples"]) == n and int(result["num_batches"]) == 1
  assert set(result) == set(model.metric_names) == {
      "loss", "num_examples", "num_batches", "sparse_categorical_accuracy"}


def test_batch_without_mask_and_as_a_pair(tutorial, batch):
  model = tutorial
  weights = random_weights(2)
  real = {k: v[:4] for k, v in batch.items()}
  loss, _, _, _ = numpy_reference(weights, real)
  np.testing.assert_allclose(model.forward_pass(weights, (real["x"], real["y"])).loss, loss,
                             rtol=1e-5)
  out = model.forward_pass(weights, {"x": real["x"], "y": real["y"]})
  assert int(out.num_examples) == 4


def test_metrics_summed_across_clients_equal_the_metric_of_the_union(tutorial, make_batch):
  model = tutorial
  weights = random_weights(3)
  client_batches = [[make_batch(10, real=4), make_batch(11, real=6)], [make_batch(12, real=1)]]
  states = []
  for batches in client_batches:
    state = model.initialize_metrics_state()
    for b in batches:
      state = model.update_metrics_state(state, b, model.forward_pass(weights, b))
    states.append(state)
  summed = jax.tree.map(lambda a, b: a + b, *states)
  result = model.finalize_metrics(summed)
  union = [b for batches in client_batches for b in batches]
  union = {k: np.concatenate([b[k] for b in union]) for k in ("x", "y", "mask")}
  loss, _, accuracy, n = numpy_reference(weights, union)
  np.testing.assert_allclose(result["loss"], loss, rtol=1e-5)
  np.testing.assert_allclose(result["sparse_categorical_accuracy"], accuracy, rtol=1e-6)
  assert int(result["num_examples"]) == n == 11 and int(result["num_batches"]) == 3


def test_forward_pass_under_vmap_and_scan(tutorial, make_batch):
  model = tutorial.model
  weights = random_weights(4)
  clients = [make_batch(20, real=5), make_batch(21, real=2)]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *clients)
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  losses = jax.jit(jax.vmap(lambda b, k: model.forward_pass(weights, b, key=k).loss))(stacked,
                                                                                      keys)
  for got, b in zip(losses, clients):
    np.testing.assert_allclose(got, numpy_reference(weights, b)[0], rtol=1e-5)

  def step(state, b):
    return model.update_metrics_state(state, b, model.forward_pass(weights, b)), None

  state, _ = jax.jit(lambda s, bs: jax.lax.scan(step, s, bs))(
      model.initialize_metrics_state(), stacked)
  assert int(model.finalize_metrics(state)["num_examples"]) == 7


def test_matches_the_hand_written_linear_model(spec, batch, jitted, tutorial):
  def predict(weights, x, training, key):
    kernel, bias = weights.trainable
    return jax.nn.softmax(x @ kernel + bias)

  def loss_fn(predictions, labels, sample_weight):
    p = jnp.take_along_axis(predictions, labels[:, None], axis=1)[:, 0]
    return models.metrics.weighted_mean(-jnp.log(p), sample_weight)

  by_hand = models.FunctionalModel(
      initial_weights=random_weights(5), predict_on_batch_fn=predict, loss_fn=loss_fn,
      metrics_fns=models.metrics.to_metrics_fns(
          [models.metrics.sparse_categorical_accuracy()]), input_spec=spec)
  weights = random_weights(5)
  fast = [jitted(by_hand), tutorial]
  outs = [m.forward_pass(weights, batch) for m in fast]
  np.testing.assert_allclose(outs[0].loss, outs[1].loss, rtol=1e-5)
  np.testing.assert_allclose(outs[0].predictions, outs[1].predictions, atol=1e-6)
  results = [m.metrics(batch, o) for m, o in zip(fast, outs)]
  for name in results[0]:
    np.testing.assert_allclose(results[0][name], results[1][name], rtol=1e-5)


def batch_norm_model():
  return keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(momentum=0.5),
                           keras.layers.Dense(2, kernel_initializer="zeros")])


def test_batch_norm_updates_non_trainable_in_training_only(spec, jitted):
  model = jitted(models.from_keras_model(
      batch_norm_model(), keras.losses.SparseCategoricalCrossentropy(from_logits=True), spec))
  weights = model.initial_weights
  assert [a.shape for a in weights.non_trainable] == [(3,), (3,)]  # Moving mean and variance.
  x = np.random.default_rng(0).normal(2.0, 3.0, (8, 3)).astype(np.float32)
  batch = {"x": x, "y": np.zeros(8, np.int32)}
  out = model.forward_pass(weights, batch, key=jax.random.PRNGKey(0))
  np.testing.assert_allclose(out.non_trainable[0], 0.5 * x.mean(0), rtol=1e-5)
  np.testing.assert_allclose(out.non_trainable[1], 0.5 + 0.5 * x.var(0), rtol=1e-5)
  assert model.forward_pass(weights, batch, training=False).non_trainable is None
  padding = {**batch, "mask": np.zeros(8, bool)}
  frozen = model.forward_pass(weights, padding).non_trainable
  for got, want in zip(frozen, weights.non_trainable):
    np.testing.assert_array_equal(got, want)
  with pytest.raises(ValueError) as info:
    model.forward_pass(ModelWeights(weights.trainable, []), batch)
  assert "the weights do not fit the Keras model's non-trainable weights." in str(info.value)
  assert "expected: 2 arrays" in str(info.value) and "actual:   0 arrays" in str(info.value)


def test_dropout_follows_the_key(spec):
  model = models.from_keras_model(
      keras.Sequential([keras.Input((784,)), keras.layers.Dropout(0.5),
                        keras.layers.Dense(10, kernel_initializer="zeros")]),
      keras.losses.SparseCategoricalCrossentropy(from_logits=True), spec)
  assert model.initial_weights.non_trainable == []  # Seed state is not a weight.
  x = np.ones((4, 784), np.float32)
  predict = jax.jit(model.predict_on_batch, static_argnames="training")
  w = random_weights(9)
  a, b = predict(w, x, key=jax.random.PRNGKey(1)), predict(w, x, key=jax.random.PRNGKey(1))
  c = predict(w, x, key=jax.random.PRNGKey(2))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  evaluation = predict(w, x, training=False)
  np.testing.assert_allclose(evaluation, x @ w.trainable[0] + w.trainable[1], atol=1e-5)
  with pytest.raises(ValueError) as info:
    model.forward_pass(w, {"x": x, "y": np.zeros(4, np.int32)}, training=True)
  assert "the model has random layers (Keras SeedGenerators, e.g. Dropout)" in str(info.value)
  assert "key=jax.random.PRNGKey(seed)" in str(info.value)


def test_regularization_losses_are_added_with_the_given_weights(spec, batch, jitted):
  dense = keras.layers.Dense(10, kernel_initializer="zeros",
                             kernel_regularizer=keras.regularizers.L2(0.1))
  model = jitted(models.from_keras_model(
      keras.Sequential([keras.Input((784,)), dense]),
      keras.losses.SparseCategoricalCrossentropy(from_logits=True), spec))
  weights = random_weights(6)
  zero = ModelWeights([jnp.zeros((784, 10)), weights.trainable[1]], [])
  extra = (model.forward_pass(weights, batch).loss - model.forward_pass(zero, batch).loss)
  logits_loss = numpy_reference(weights, batch)[0] - numpy_reference(zero, batch)[0]
  np.testing.assert_allclose(extra - logits_loss, 0.1 * np.sum(np.square(weights.trainable[0])),
                             rtol=1e-4)


def test_multi_output_losses_with_weights(spec, batch, jitted):
  inputs = keras.Input((784,))
  model = keras.Model(inputs, [keras.layers.Dense(10, kernel_initializer="zeros")(inputs),
                               keras.layers.Dense(1, kernel_initializer="zeros")(inputs)])
  ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  fm = jitted(models.from_keras_model(model, [ce, keras.losses.MeanSquaredError()], spec,
                                      loss_weights=[1.0, 0.5]))
  target = np.arange(6, dtype=np.float32)[:, None]
  b = {"x": batch["x"], "y": [batch["y"], target], "mask": batch["mask"]}
  rng = np.random.default_rng(0)
  weights = ModelWeights([rng.normal(0, 0.05, w.shape).astype(np.float32)
                          for w in fm.initial_weights.trainable], [])
  out = fm.forward_pass(weights, b)
  logits, value = (np.asarray(p, np.float64) for p in out.predictions)
  keep = batch["mask"]
  log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  want = (-log_p[np.arange(6), batch["y"]][keep].mean()
          + 0.5 * ((value - target) ** 2)[keep].mean())
  np.testing.assert_allclose(out.loss, want, rtol=1e-5)
  with pytest.raises(ValueError) as info:
    fm.forward_pass(fm.initial_weights, {**b, "y": [batch["y"]]})
  assert "a multi-output model needs one loss and one label per output." in str(info.value)
  assert "actual:   2 outputs, 1 labels" in str(info.value)


def test_assign_weights_to_round_trips(tutorial, batch):
  source = tutorial
  weights = random_weights(7)
  target = tutorial_model()
  weights.assign_weights_to(target)
  back = ModelWeights.from_model(target)
  for got, want in zip(back.trainable, weights.trainable):
    np.testing.assert_array_equal(got, want)
  np.testing.assert_allclose(target(batch["x"]), source.predict_on_batch(weights, batch["x"]),
                             rtol=1e-5)
  bn = batch_norm_model()
  bn_weights = ModelWeights.from_model(bn)
  moved = ModelWeights(bn_weights.trainable, [a + 1 for a in bn_weights.non_trainable])
  moved.assign_weights_to(bn)
  np.testing.assert_array_equal(bn.non_trainable_weights[0].value, moved.non_trainable[0])


def test_assign_weights_to_errors(spec):
  weights = random_weights(8)
  with pytest.raises(TypeError) as info:
    weights.assign_weights_to(object())
  assert "ModelWeights.assign_weights_to: the target is not a Keras model." in str(info.value)
  with pytest.raises(ValueError) as info:
    ModelWeights(weights.trainable[:1], []).assign_weights_to(tutorial_model())
  assert "the model has 2 trainable weights, these weights have 1." in str(info.value)
  with pytest.raises(ValueError) as info:
    ModelWeights(weights.trainable[::-1], []).assign_weights_to(tutorial_model())
  assert "trainable[0] (sequential" in str(info.value) and "has another shape" in str(info.value)
  assert "expected: (784, 10)" in str(info.value) and "actual:   (10,)" in str(info.value)


def test_model_weights_from_model(tutorial):
  assert ModelWeights.from_model(tutorial.model) is tutorial.model.initial_weights
  with pytest.raises(TypeError) as info:
    ModelWeights.from_model("a model")
  assert "ModelWeights.from_model: cannot read weights from this model." in str(info.value)
  assert "actual:   a str" in str(info.value)


def test_errors_name_the_problem_and_the_fix(spec, monkeypatch):
  ce = keras.losses.SparseCategoricalCrossentropy()
  with pytest.raises(TypeError) as info:
    models.from_keras_model(keras.layers.Dense(3), ce, spec)
  assert "from_keras_model: keras_model must be a Keras model." in str(info.value)
  with pytest.raises(ValueError) as info:
    models.from_keras_model(keras.Sequential([keras.layers.Dense(3)]), ce, spec)
  assert "the Keras model is not built" in str(info.value)
  assert "keras_model.build((None, 784))" in str(info.value)
  with pytest.raises(TypeError) as info:
    models.from_keras_model(tutorial_model(), "crossentropy", spec)
  assert "loss must be a Keras loss" in str(info.value)
  with pytest.raises(ValueError) as info:
    models.from_keras_model(tutorial_model(), ce, spec, loss_weights=[0.5])
  assert "loss_weights needs a list of losses of the same length." in str(info.value)
  with pytest.raises(TypeError) as info:
    models.from_keras_model(tutorial_model(), ce, spec, metrics=["accuracy"])
  assert "metrics must be Keras metrics, or functions that return one." in str(info.value)
  with pytest.raises(TypeError) as info:
    models.from_keras_model(tutorial_model(), ce, {"x": "pixels", "y": np.int32})
  assert "from_keras_model: input_spec is not a type specification." in str(info.value)
  with pytest.raises(ValueError) as info:
    models.from_keras_model(tutorial_model(), ce, {"pixels": (np.float32, [None, 784]),
                                                   "label": np.int32})
  assert "from_keras_model: input_spec has no element 'x' or 'y'." in str(info.value)


def test_a_scalar_loss_cannot_leave_padding_out(spec, batch):
  model = models.from_keras_model(tutorial_model(), lambda y, p: jnp.mean(p), spec)
  with pytest.raises(ValueError) as info:
    model.forward_pass(model.initial_weights, batch)
  assert "the loss returned a scalar; federax needs one value per example" in str(info.value)


def test_metric_constructors_are_accepted(spec, batch):
  model = models.from_keras_model(tutorial_model(), keras.losses.SparseCategoricalCrossentropy(),
                                  spec, metrics=[keras.metrics.SparseCategoricalAccuracy,
                                                 lambda: keras.metrics.MeanSquaredError()])
  # TFF's order: the given metrics, in order, then loss, num_examples and num_batches.
  assert model.metric_names == ("sparse_categorical_accuracy", "mean_squared_error", "loss",
                                "num_examples", "num_batches")


def test_backend_and_install_are_checked(spec, monkeypatch):
  ce = keras.losses.SparseCategoricalCrossentropy()
  monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
  with pytest.raises(RuntimeError) as info:
    models.from_keras_model(tutorial_model(), ce, spec)
  assert "Keras runs on the 'tensorflow' backend" in str(info.value)
  assert "KERAS_BACKEND=jax" in str(info.value)
  monkeypatch.setitem(sys.modules, "keras", None)
  with pytest.raises(ImportError) as info:
    models.from_keras_model(None, ce, spec)
  assert "from_keras_model: Keras is not installed." in str(info.value)
  assert "pip install 'federax[keras]'" in str(info.value)


def test_docstring_examples_run():
  for module in (_keras, _weights):
    result = doctest.testmod(module, extraglobs={"jnp": jnp, "np": np, "keras": keras})
    assert result.failed == 0 and result.attempted > 0, module.__name__


def test_assign_weights_to_copies_so_keras_cannot_delete_our_arrays():
  import keras
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  kernel, bias = jnp.ones((3, 2)), jnp.zeros(2)
  weights = models.ModelWeights([kernel, bias], [])
  weights.assign_weights_to(model)
  model.compile(optimizer="sgd", loss="mse")
  model.fit(np.ones((4, 3), np.float32), np.ones((4, 2), np.float32), epochs=1, verbose=0)
  # Keras trains by donating its variables' buffers; ours must be untouched and alive.
  np.testing.assert_array_equal(np.asarray(kernel), np.ones((3, 2)))
  assert not np.allclose(np.asarray(model.trainable_variables[0].value), 1.0)


def test_predict_on_batch_and_loss_take_tff_keywords(tutorial, batch):
  model = tutorial.model
  weights = random_weights(3)
  outputs = model.predict_on_batch(model_weights=(weights.trainable, ()), x=batch["x"],
                                   training=False)
  loss = model.loss(output=outputs, label=batch["y"], sample_weight=batch["mask"])
  reference_loss, _, _, _ = numpy_reference(weights, batch)
  np.testing.assert_allclose(loss, reference_loss, rtol=1e-5)


def test_a_keras_model_built_inside_a_client_computation_is_refused(runtime):
  # Unseeded Keras initializers draw their seeds from Python's `random` when the function is
  # traced: every client would get the same weights, different in every process.
  @fx.computation
  def init():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    return [v.value for v in model.trainable_variables]

  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation
    def initialize():
      return fx.federated_eval(init, fx.CLIENTS)
  message = str(info.value)
  assert message.startswith(
      "federated_eval: `fn` (test_a_keras_model_built_inside_a_client_computation_is_refused."
      "<locals>.init) drew random numbers from Python's `random` or NumPy's global generator "
      "while it was traced (an unseeded Keras initializer does this): they are constants of "
      "the program, so every client would get the same values, and other values in another "
      "process.\n  hint: ")
  assert "def fn(key)" in message and "initial_weights" in message


def test_clients_draw_their_own_weights_from_the_key_federated_eval_passes(runtime):
  model = wrap(tutorial_model(), {"x": (np.float32, [None, 784]), "y": (np.int32, [None])})
  spec = jax.tree.map(lambda w: jax.ShapeDtypeStruct(w.shape, w.dtype),
                      model.initial_weights.trainable)

  @fx.computation
  def init(key):
    keys = jax.random.split(key, len(spec))
    return [keras.random.normal(s.shape, stddev=0.05, seed=k) for s, k in zip(spec, keys)]

  @fx.federated_computation
  def initialize():
    return fx.federated_eval(init, fx.CLIENTS)

  with type(runtime)(default_num_clients=3):
    weights = initialize()
  assert len(weights) == 3 and weights[0][0].shape == (784, 10)
  assert not np.allclose(weights[0][0], weights[1][0])
  with type(runtime)(default_num_clients=3):
    np.testing.assert_array_equal(initialize()[2][0], weights[2][0])  # Reproducible.


def test_a_seeded_keras_model_inside_a_client_computation_is_accepted(runtime):
  @fx.computation
  def init():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        2, kernel_initializer=keras.initializers.GlorotNormal(seed=0))])
    return [v.value for v in model.trainable_variables]

  @fx.federated_computation
  def initialize():
    return fx.federated_eval(init, fx.CLIENTS)

  with type(runtime)(default_num_clients=2):
    first, second = initialize()
  np.testing.assert_array_equal(first[0], second[0])


# --- A Keras metric that flattens its labels (the text-generation tutorial's) ----------------

def flattened_accuracy(seen):
  """The tutorial's FlattenedCategoricalAccuracy (B*T labels, so no weight per example fits),
  appending each `sample_weight` it is given (while tracing) to `seen`."""
  class FlattenedAccuracy(keras.metrics.SparseCategoricalAccuracy):
    def update_state(self, y_true, y_pred, sample_weight=None):
      seen.append(sample_weight)
      return super().update_state(keras.ops.reshape(y_true, [-1, 1]),
                                  keras.ops.reshape(y_pred, [-1, y_pred.shape[-1]]),
                                  sample_weight)
  return FlattenedAccuracy("accuracy")


def flattened_accuracy_model(seen, rows=None):
  layers = keras.Sequential([keras.Input(batch_shape=(rows, 6), dtype="int32"),
                             keras.layers.Embedding(9, 4), keras.layers.Dense(9)])
  spec = {"x": (np.int32, [rows, 6]), "y": (np.int32, [rows, 6])}
  return models.from_keras_model(
      layers, keras.losses.SparseCategoricalCrossentropy(from_logits=True), spec,
      metrics=[flattened_accuracy(seen)])


def sequence_batch(seed, rows=4):
  rng = np.random.default_rng(seed)
  return {"x": rng.integers(0, 9, (rows, 6)).astype(np.int32),
          "y": rng.integers(0, 9, (rows, 6)).astype(np.int32)}


def test_a_metric_that_flattens_labels_gets_no_sample_weight_on_an_unmasked_batch():
  # As TFF calls Keras metrics: sample_weight=None, not a float32[4] the 24 labels cannot take.
  seen = []
  model = flattened_accuracy_model(seen)
  rng = np.random.default_rng(3)
  weights = ModelWeights([rng.normal(0, 1, w.shape).astype(np.float32)
                          for w in model.initial_weights.trainable], [])
  state = model.initialize_metrics_state()
  correct = []
  for seed in (1, 2):
    batch = sequence_batch(seed)
    out = jax.jit(model.forward_pass)(weights, batch)
    state = jax.jit(model.update_metrics_state)(state, batch, out)
    # NumPy's accuracy over every label, from the wrapped model's logits.
    embedded = weights.trainable[0][batch["x"]]
    logits = embedded @ weights.trainable[1] + weights.trainable[2]
    np.testing.assert_allclose(out.predictions, logits, rtol=1e-5, atol=1e-5)
    correct.append(np.argmax(logits, -1) == batch["y"])
  assert seen and all(w is None for w in seen)
  metrics = model.finalize_metrics(state)
  np.testing.assert_allclose(metrics["accuracy"], np.mean(correct), rtol=1e-6)
  assert 0.0 < float(metrics["accuracy"]) < 1.0  # Inputs that tell a wrong count apart.
  assert int(metrics["num_examples"]) == 8


def test_a_metric_that_flattens_labels_says_why_a_masked_batch_fails():
  seen = []
  model = flattened_accuracy_model(seen)
  batch = {**sequence_batch(1), "mask": np.array([True, True, True, False])}
  out = model.forward_pass(model.initial_weights, batch)
  with pytest.raises(ValueError) as info:
    model.update_metrics_state(model.initialize_metrics_state(), batch, out)
  message = str(info.value)
  assert ("update_metrics_state: the Keras metric 'accuracy' cannot take one weight per "
          "example, which a batch with padded rows (a 'mask') needs") in message
  assert "sample_weight=float32[4]" in message and "Incompatible" in message
  assert "drop_remainder=True" in message


def test_padding_a_short_batch_is_refused_for_a_metric_that_flattens_labels():
  # The vectorized runtime then runs the real short batches, saying why.
  model = flattened_accuracy_model([])
  batch = sequence_batch(1)
  with pytest.raises(RowMaskNotHonoured) as info:
    model.row_mask(training=True)(batch, np.array([True, True, True, False]))
  assert info.value.reason.startswith(
      "hands batches to a model whose metrics cannot take one weight per example "
      "(float32[B]), which padded rows need (update_metrics_state: the Keras metric "
      "'accuracy' cannot take one weight per example")
  assert "drop_remainder=True" in info.value.fix
