"""A client update written as TFF's tutorials write it: `for batch in dataset:` over `batch(B)`
batches, the last one short, each handed to the model (`predict_on_batch` and `loss`, or
`forward_pass`). The vectorized runtime pads the short batch; the loop gets its tensors as
`PaddedTensor`s, which the model masks, so the call stays compiled and exact. Code that computes
on a padded batch itself runs on the sequential runtime, saying where.
"""

import collections
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.data import Dataset
from federax.learning.models import FunctionalModel, ModelWeights
from federax.learning.models import metrics as model_metrics

from test_algorithms import CLASSES, FEATURES, loss_fn, predict

BATCH = 5
SIZES = (7, 12, 3, 9)  # Short last batches of 2, 2, 3 and 4 rows; one client has one batch.
LEARNING_RATE = 0.5
PAIR = ((np.float32, [None, FEATURES]), (np.int32, [None]))


def client_examples(seed=3):
  rng = np.random.default_rng(seed)
  return [(rng.normal(size=(n, FEATURES)).astype(np.float32),
           rng.integers(0, CLASSES, n).astype(np.int32)) for n in SIZES]


def initial_weights(seed=0):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=(FEATURES, CLASSES)).astype(np.float32) * 0.3,
          rng.normal(size=CLASSES).astype(np.float32) * 0.1]


def model(loss=loss_fn, spec=PAIR):
  return FunctionalModel(
      initial_weights=ModelWeights(initial_weights(), []), predict_on_batch_fn=predict,
      loss_fn=loss,
      metrics_fns=model_metrics.to_metrics_fns([model_metrics.sparse_categorical_accuracy()]),
      input_spec=spec)


def as_datasets(examples, mapping=False):
  if mapping:
    examples = [collections.OrderedDict(x=x, y=y) for x, y in examples]
  return [Dataset.from_tensor_slices(e).batch(BATCH) for e in examples]


def numpy_client_update(x, y, weights):
  """SGD on the softmax cross-entropy of a linear model, batch by batch, in NumPy."""
  kernel, bias = [np.asarray(w, np.float64) for w in weights]
  for start in range(0, len(x), BATCH):
    xb, yb = x[start:start + BATCH].astype(np.float64), y[start:start + BATCH]
    logits = xb @ kernel + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(yb)), yb] -= 1.0
    kernel = kernel - LEARNING_RATE * xb.T @ p / len(yb)
    bias = bias - LEARNING_RATE * p.sum(0) / len(yb)
  return [kernel, bias], float(len(x))


def build(client_update_fn, tff_model):
  weights_type = fx.types.to_type([fx.TensorType(np.float32, [FEATURES, CLASSES]),
                                   fx.TensorType(np.float32, [CLASSES])])
  data_type = fx.SequenceType(fx.types.tensorflow_to_type(tff_model.input_spec))
  client_update = fx.computation(data_type, weights_type)(client_update_fn)

  @fx.federated_computation(fx.FederatedType(data_type, fx.CLIENTS),
                            fx.FederatedType(weights_type, fx.CLIENTS))
  def run(data, weights):
    return fx.federated_map(client_update, (data, weights))

  return run


def run_on_both(run, data, weights):
  with fx.runtime.vectorized(), warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    vectorized = run(data, weights)
  with fx.runtime.sequential():
    sequential = run(data, weights)
  return vectorized, sequential


def test_predict_on_batch_and_loss_in_a_user_loop_stay_compiled_and_exact():
  tff_model = model()

  def client_update(dataset, weights):  # building_your_own_federated_learning_algorithm's.
    num_examples = 0.0
    for batch in dataset:
      x, y = batch

      def batch_loss(weights):
        outputs = tff_model.predict_on_batch(model_weights=(weights, ()), x=x, training=True)
        return tff_model.loss(output=outputs, label=y)

      grads = jax.grad(batch_loss)(weights)
      weights = jax.tree.map(lambda w, g: w - LEARNING_RATE * g, weights, grads)
      num_examples += jnp.asarray(jnp.shape(y)[0], jnp.float32)  # composing_..._algorithms'.
    return weights, num_examples

  examples = client_examples()
  weights = [initial_weights()] * len(SIZES)
  vectorized, sequential = run_on_both(build(client_update, tff_model),
                                       as_datasets(examples), weights)
  for (x, y), got, also in zip(examples, vectorized, sequential):
    (kernel, bias), count = numpy_client_update(x, y, initial_weights())
    np.testing.assert_allclose(got[0][0], kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[0][1], bias, rtol=1e-5, atol=1e-6)
    assert got[1] == count == also[1]
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(also)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_forward_pass_and_metrics_in_a_user_loop_stay_compiled_and_exact():
  tff_model = model(spec=collections.OrderedDict(x=PAIR[0], y=PAIR[1]))

  def client_update(dataset, weights):  # custom_federated_algorithm_with_tff_optimizers'.
    metrics = tff_model.initialize_metrics_state()
    for batch in iter(dataset):
      def batch_loss(weights):
        outputs = tff_model.forward_pass(ModelWeights(weights, []), batch)
        return outputs.loss, outputs

      grads, outputs = jax.grad(batch_loss, has_aux=True)(weights)
      metrics = tff_model.update_metrics_state(metrics, batch, outputs)
      weights = jax.tree.map(lambda w, g: w - LEARNING_RATE * g, weights, grads)
    return weights, tff_model.finalize_metrics(metrics)

  examples = client_examples(seed=4)
  weights = [initial_weights()] * len(SIZES)
  vectorized, sequential = run_on_both(build(client_update, tff_model),
                                       as_datasets(examples, mapping=True), weights)
  for (x, y), got, also in zip(examples, vectorized, sequential):
    (kernel, _), count = numpy_client_update(x, y, initial_weights())
    np.testing.assert_allclose(got[0][0], kernel, rtol=1e-5, atol=1e-6)
    assert got[1]["num_examples"] == count and got[1]["num_batches"] == -(-len(x) // BATCH)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(also)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def fallback_message(client_update, tff_model):
  run = build(client_update, tff_model)
  data, weights = as_datasets(client_examples()), [initial_weights()] * len(SIZES)
  with fx.runtime.vectorized():
    with pytest.warns(fx.runtime.FallbackWarning) as caught:
      vectorized = run(data, weights)
  with fx.runtime.sequential():
    sequential = run(data, weights)
  for a, b in zip(jax.tree.leaves(vectorized), jax.tree.leaves(sequential)):
    np.testing.assert_array_equal(a, b)  # Both on the real short batches.
  return str(caught[0].message)


def test_a_loop_that_computes_on_a_padded_batch_itself_falls_back_naming_the_line():
  tff_model = model()

  def client_update(dataset, weights):
    total = 0.0
    for batch in dataset:
      x, y = batch
      total += jnp.mean(x)  # Over 5 rows where the batch has 2: the padded rows would count.
    return weights, total

  message = fallback_message(client_update, tff_model)
  assert "client_update reduces over the rows of a batch and does not mask padded rows " in (
      message)
  assert "total += jnp.mean(x)" in message and "differ in size (2, 3, 4 and 5 rows)" in message
  assert "forward_pass" in message  # The hint: hand the batch to the model.


def test_a_loop_that_keeps_padded_predictions_in_its_state_falls_back():
  tff_model = model()

  def client_update(dataset, weights):
    last = jnp.zeros([BATCH, CLASSES])
    for batch in dataset:
      x, _ = batch
      last = tff_model.predict_on_batch((weights, ()), x)
    return weights, jnp.sum(last)

  message = fallback_message(client_update, tff_model)
  assert "the loop is not compiled: the loop makes `last` a PaddedTensor" in message


def test_a_model_whose_loss_ignores_sample_weight_falls_back_saying_so():
  def unweighted_loss(logits, labels, sample_weight):
    del sample_weight
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

  tff_model = model(loss=unweighted_loss)

  def client_update(dataset, weights):
    total = 0.0
    for batch in dataset:
      x, y = batch
      total += tff_model.loss(tff_model.predict_on_batch((weights, ()), x), y)
    return weights, total

  message = fallback_message(client_update, tff_model)
  assert "client_update hands batches to a model whose loss_fn ignores sample_weight" in message
