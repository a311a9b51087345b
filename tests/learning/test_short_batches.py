"""Code written TFF's way, `batch(B)` with a short last batch and no mask, on the compiled path.

The vectorized runtime pads the short batches; the learning layer's client works and
evaluation mask the padded rows out. Each algorithm must give the numbers of `masked_batch`
(the mask threaded by hand) and of the sequential runtime (which sees the real short batches),
without a FallbackWarning.
"""

import collections
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.data import Dataset
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights, PredictOutput
from federax.learning.models import metrics as model_metrics

from test_algorithms import BUILDERS, CLASSES, FEATURES, loss_fn, predict

BATCH = 5
SIZES = (7, 12, 3, 9)
UNMASKED = collections.OrderedDict(x=(np.float32, [None, FEATURES]), y=(np.int32, [None]))
MASKED = collections.OrderedDict(x=(np.float32, [BATCH, FEATURES]), y=(np.int32, [BATCH]),
                                 mask=(np.bool_, [BATCH]))


def client_examples(seed=3):
  rng = np.random.default_rng(seed)
  return [collections.OrderedDict(x=rng.normal(size=(n, FEATURES)).astype(np.float32),
                                  y=rng.integers(0, CLASSES, n).astype(np.int32))
          for n in SIZES]


def model(spec, seed=0):
  rng = np.random.default_rng(seed)
  weights = ModelWeights([rng.normal(size=(FEATURES, CLASSES)).astype(np.float32) * 0.3,
                          rng.normal(size=CLASSES).astype(np.float32) * 0.1], [])
  return FunctionalModel(
      initial_weights=weights, predict_on_batch_fn=predict, loss_fn=loss_fn,
      metrics_fns=model_metrics.to_metrics_fns([model_metrics.sparse_categorical_accuracy()]),
      input_spec=spec)


def tff_way(examples):
  return [Dataset.from_tensor_slices(e).batch(BATCH) for e in examples]


def masked(examples):
  return [Dataset.from_tensor_slices(e).masked_batch(BATCH) for e in examples]


def two_rounds(process, data):
  state = process.initialize()
  for _ in range(2):
    state, metrics = process.next(state, data)
  return jax.tree_util.tree_leaves((process.get_model_weights(state), metrics))


def assert_same(got, want, rtol=1e-6, atol=1e-6):
  assert len(got) == len(want)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


FAST = ("weighted_fed_avg", "fed_eval")  # The others take over 5 s: marked slow.


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(BUILDERS)])
def test_every_algorithm_pads_short_batches_exactly_on_the_compiled_path(name):
  examples = client_examples()
  with fx.runtime.vectorized():
    with warnings.catch_warnings():
      warnings.simplefilter("error", fx.runtime.FallbackWarning)
      padded = two_rounds(BUILDERS[name](model(UNMASKED)), tff_way(examples))
    by_hand = two_rounds(BUILDERS[name](model(MASKED)), masked(examples))
  with fx.runtime.sequential():
    sequential = two_rounds(BUILDERS[name](model(UNMASKED)), tff_way(examples))
  assert_same(padded, by_hand)
  assert_same(padded, sequential, rtol=2e-5)


def test_batches_passed_as_lists_and_clients_of_other_batch_sizes_are_padded_too():
  examples = client_examples()
  as_lists = [list(d) for d in tff_way(examples)]
  as_lists[1] = list(Dataset.from_tensor_slices(examples[1]).batch(4))  # Full batches of 4.
  results = []
  for make_runtime in (fx.runtime.vectorized, fx.runtime.sequential):
    with make_runtime(), warnings.catch_warnings():
      warnings.simplefilter("error", fx.runtime.FallbackWarning)
      process = algorithms.build_weighted_fed_avg(model(UNMASKED), optimizers.build_sgdm(0.3))
      state, metrics = process.next(process.initialize(), as_lists)
      train = metrics["client_work"]["train"]
      assert (train["num_examples"], train["num_batches"]) == (sum(SIZES), 8)
      results.append(jax.tree_util.tree_leaves((process.get_model_weights(state), metrics)))
  assert_same(*results, rtol=2e-5)


@pytest.mark.slow
def test_keras_model_pads_short_batches_exactly():
  keras = pytest.importorskip("keras")

  def keras_model(spec):
    layers = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(
        CLASSES, kernel_initializer=keras.initializers.GlorotUniform(seed=1))])
    return fx.learning.models.from_keras_model(
        layers, keras.losses.SparseCategoricalCrossentropy(from_logits=True), spec,
        metrics=[keras.metrics.SparseCategoricalAccuracy()])

  examples = client_examples()
  outcomes = []
  for make_runtime, spec, data in ((fx.runtime.vectorized, UNMASKED, tff_way(examples)),
                                   (fx.runtime.vectorized, MASKED, masked(examples)),
                                   (fx.runtime.sequential, UNMASKED, tff_way(examples))):
    with make_runtime(), warnings.catch_warnings():
      warnings.simplefilter("error", fx.runtime.FallbackWarning)
      process = algorithms.build_weighted_fed_avg(keras_model(spec), optimizers.build_sgdm(0.3))
      training = two_rounds(process, data)
      evaluation = algorithms.build_fed_eval(keras_model(spec))
      _, metrics = evaluation.next(evaluation.initialize(), data)
      outcomes.append(training + jax.tree_util.tree_leaves(metrics))
  assert_same(outcomes[0], outcomes[1])
  assert_same(outcomes[0], outcomes[2], rtol=2e-5)


def batch_norm_model(spec):
  """Normalizes by the batch's own statistics in training: padded rows would change them."""
  def predict_with_batch_statistics(weights, x, training):
    kernel, bias = weights.trainable
    (running_mean,) = weights.non_trainable
    mean = jnp.mean(x, axis=0) if training else running_mean
    out = (x - mean) @ kernel + bias
    return PredictOutput(out, non_trainable=[0.9 * running_mean + 0.1 * mean] if training
                         else None)

  weights = ModelWeights([np.full((FEATURES, CLASSES), 0.1, np.float32),
                          np.zeros(CLASSES, np.float32)], [np.zeros(FEATURES, np.float32)])
  return FunctionalModel(initial_weights=weights, predict_on_batch_fn=predict_with_batch_statistics,
                         loss_fn=loss_fn, input_spec=spec)


def test_a_model_with_batch_statistics_trains_on_the_real_short_batch_and_says_why():
  examples = client_examples()
  with fx.runtime.sequential():
    want = two_rounds(algorithms.build_weighted_fed_avg(batch_norm_model(UNMASKED),
                                                        optimizers.build_sgdm(0.3)),
                      tff_way(examples))
  with fx.runtime.vectorized():
    process = algorithms.build_weighted_fed_avg(batch_norm_model(UNMASKED),
                                                optimizers.build_sgdm(0.3))
    with pytest.warns(fx.runtime.FallbackWarning) as caught:
      got = two_rounds(process, tff_way(examples))
  assert_same(got, want, rtol=2e-5)
  message = str(caught[0].message)
  assert message.startswith("LearningProcess.next: running on the sequential runtime because "
                            "train_on_batch hands batches to a model whose training pass "
                            "updates non-trainable weights from the batch (batch statistics), "
                            "which padded rows would change; the batches of "
                            "arguments.client_data differ in size (2, 3, 4 and 5 rows)"), message
  assert message.endswith("hint: masked_batch() runs it compiled, its padded rows then in the "
                          "statistics; or give every batch 5 rows: batch(5, "
                          "drop_remainder=True)"), message


def test_a_loss_that_ignores_sample_weight_is_not_given_padded_rows():
  def mean_loss(logits, labels, sample_weight):  # Ignores the weights: padded rows would count.
    del sample_weight
    return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

  unweighted = FunctionalModel(initial_weights=model(UNMASKED).initial_weights,
                               predict_on_batch_fn=predict, loss_fn=mean_loss,
                               input_spec=UNMASKED)
  examples = client_examples()
  with fx.runtime.sequential():
    want = two_rounds(algorithms.build_fed_eval(unweighted), tff_way(examples))
  with fx.runtime.vectorized():
    with pytest.warns(fx.runtime.FallbackWarning, match="(?s)evaluate_batch hands batches to a "
                      "model whose loss_fn ignores sample_weight.*hint: weight the loss by "
                      r"sample_weight \(fx.learning.models.metrics.weighted_mean"):
      got = two_rounds(algorithms.build_fed_eval(unweighted), tff_way(examples))
  assert_same(got, want, rtol=2e-5)


def test_a_metric_that_ignores_sample_weight_is_not_given_padded_rows():
  def initialize():
    return {"label_sum": jnp.float32(0)}

  def update(state, labels, batch_output, sample_weight):  # Would count padded rows' labels.
    del batch_output, sample_weight
    return {"label_sum": state["label_sum"] + jnp.sum(labels + 1).astype(jnp.float32)}

  counting = FunctionalModel(initial_weights=model(UNMASKED).initial_weights,
                             predict_on_batch_fn=predict, loss_fn=loss_fn,
                             metrics_fns=(initialize, update, lambda state: state),
                             input_spec=UNMASKED)
  data = tff_way(client_examples())
  with fx.runtime.vectorized():
    with pytest.warns(fx.runtime.FallbackWarning, match="model whose metrics read labels or "
                      "predictions but ignore sample_weight"):
      _, metrics = algorithms.build_fed_eval(counting).next(
          algorithms.build_fed_eval(counting).initialize(), data)
  want = sum(int((e["y"] + 1).sum()) for e in client_examples())
  assert metrics["client_work"]["eval"]["current_round_metrics"]["label_sum"] == want
