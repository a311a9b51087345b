"""Labels and inputs that poison a client without a NaN update. A label outside the model's
classes (a NaN loss with a finite update, or a wrapped index) drops its client, which
`train.num_non_finite_clients` counts; an input at -inf, which max pooling hides from loss and
update, is refused or dropped where the data is read (`ClientData`). Both runtimes."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.data import Dataset
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights, metrics
from federax.simulation.baselines import synthetic

from test_algorithms import trainable

COUNT = "num_non_finite_clients"


def labelled(labels, seed=0):
  rng = np.random.default_rng(seed)
  n = len(labels)
  return Dataset.from_tensor_slices(collections.OrderedDict(
      x=rng.normal(size=(n, 6)).astype(np.float32), y=np.asarray(labels, np.int32))
  ).masked_batch(4)


def test_a_label_outside_the_models_classes_drops_the_client(runtime):
  # The baselines' loss (Keras's sparse cross-entropy) reads labels as class indices; one
  # outside [0, 10) would index another class (-1 wraps to 9) or nothing (a NaN loss).
  model = synthetic.create_logistic_regression_model(6, 10)
  process = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.5))
  state = process.initialize()
  good = labelled([1, 2, 3, 4, 5], seed=1)
  _, clean = process.next(state, [good, labelled([0, 1, 9, 2, 3, 4])])
  assert clean["client_work"]["train"][COUNT] == 0
  _, clean = process.next(state, [good])
  for bad_label in (-1, 10, 1000):
    _, out = process.next(state, [good, labelled([0, 1, bad_label, 2, 3, 4])])
    train = out["client_work"]["train"]
    assert train[COUNT] == 1 and train["num_examples"] == 5, bad_label
    np.testing.assert_allclose(train["loss"], clean["client_work"]["train"]["loss"], rtol=1e-6)


@pytest.mark.parametrize("wrapper", ["from_keras_model", "functional_model_from_keras"])
def test_a_keras_model_drops_a_client_with_labels_outside_its_classes(runtime, wrapper):
  # functional_model_from_keras reports no loss among its metrics: only the loss check sees it.
  keras = pytest.importorskip("keras")
  net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
  spec = collections.OrderedDict(x=fx.TensorType(np.float32, (None, 6)),
                                 y=fx.TensorType(np.int32, (None,)),
                                 mask=fx.TensorType(np.bool_, (None,)))
  model = getattr(fx.learning.models, wrapper)(
      net, keras.losses.SparseCategoricalCrossentropy(), spec)
  process = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.5))
  state = process.initialize()
  good = labelled([0, 1, 2, 1], seed=2)
  clean_state, clean = process.next(state, [good])
  for bad in (-1, 3):  # Keras one-hot encodes both as all zeros: a zero loss, silently.
    out_state, out = process.next(state, [good, labelled([0, bad, 1])])
    assert out["client_work"]["train"][COUNT] == 1
    assert out["client_work"]["train"].get("num_examples", 4) == 4
    for got, want in zip(trainable(process, out_state), trainable(process, clean_state)):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def pooling_model():
  """`x [B, 4, 4, 1]` -> 2x2 max pooling -> dense 4 -> 3 classes: an input at -inf (or NaN,
  on some backends) is never the window's maximum, so it would vanish from loss and update."""
  rng = np.random.default_rng(3)

  def predict(weights, x, training):
    kernel, bias = weights.trainable
    pooled = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                   "VALID")
    return pooled.reshape(x.shape[0], 4) @ kernel + bias

  def loss_fn(logits, labels, sample_weight):
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
    return metrics.weighted_mean(losses, sample_weight)

  weights = ModelWeights([rng.normal(size=(4, 3)).astype(np.float32), np.zeros(3, np.float32)],
                         [])
  spec = collections.OrderedDict(x=(np.float32, [None, 4, 4, 1]), y=(np.int32, [None]),
                                 mask=(np.bool_, [None]))
  return FunctionalModel(initial_weights=weights, predict_on_batch_fn=predict, loss_fn=loss_fn,
                         input_spec=spec)


def images(n, bad=None, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.uniform(size=(n, 4, 4, 1)).astype(np.float32)
  if bad is not None:
    x[0, 0, 0, 0] = bad
  return collections.OrderedDict(x=x, y=rng.integers(0, 3, n).astype(np.int32))


def test_an_input_that_max_pooling_would_hide_is_refused_or_dropped_where_data_is_read(runtime):
  batched = lambda cd: [cd.create_dataset(c).masked_batch(2) for c in cd.client_ids]
  poisoned = {"a": images(3, seed=1), "b": images(4, bad=-np.inf, seed=2)}
  with pytest.raises(ValueError, match=r"client 'b' has 1 of 4 examples with a NaN or Inf in "
                     r"\['x'\] \(the first: example 0\)"):
    fx.simulation.ClientData.from_dict(poisoned)
  with pytest.warns(fx.simulation.NonFiniteWarning, match=r"'b' \(1 of 4\)"):
    dropped = fx.simulation.ClientData.from_dict(poisoned, non_finite="drop")
  clean = images(4, seed=2)
  clean = collections.OrderedDict((k, v[1:]) for k, v in clean.items())
  expected = fx.simulation.ClientData.from_dict({"a": images(3, seed=1), "b": clean})

  process = algorithms.build_weighted_fed_avg(pooling_model(), optimizers.build_sgdm(0.5))
  state = process.initialize()
  want_state, want = process.next(state, batched(expected))
  got_state, got = process.next(state, batched(dropped))
  assert got["client_work"]["train"]["num_examples"] == 3 + 3
  np.testing.assert_allclose(got["client_work"]["train"]["loss"],
                             want["client_work"]["train"]["loss"], rtol=1e-6)
  for g, w in zip(trainable(process, got_state), trainable(process, want_state)):
    np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
