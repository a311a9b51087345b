"""`build_personalization_eval_computation` against a hand computation on a tiny linear model."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.learning.models import FunctionalModel, ModelWeights

BATCH, LR = 2, 0.1
SPEC = collections.OrderedDict(x=(np.float32, [BATCH, 2]), y=(np.float32, [BATCH]),
                               mask=(np.bool_, [BATCH]))


def model():
  weights = ModelWeights([np.array([0.5, -1.0], np.float32), np.float32(0.25)], [])
  return FunctionalModel(
      initial_weights=weights, input_spec=SPEC,
      predict_on_batch_fn=lambda w, x, training: x @ w.trainable[0] + w.trainable[1],
      loss_fn=lambda p, y, m: jnp.sum((p - y) ** 2 * m) / jnp.maximum(jnp.sum(m), 1.0))


def sq_error_sum(weights, batch):
  kernel, bias = weights.trainable
  err = batch["x"] @ kernel + bias - batch["y"]
  return jnp.sum(err ** 2 * batch["mask"]), jnp.sum(batch["mask"]).astype(jnp.float32)


def evaluate(model, weights, data):
  # The weights ride in the accumulator: a local computation cannot capture a federated value.
  def add(acc, batch):
    w, total, count = acc
    s, n = sq_error_sum(w, batch)
    return w, total + s, count + n
  start = fx.computation(lambda w: (w, np.float32(0), np.float32(0)))(weights)
  total = fx.sequence_reduce(data, start, fx.computation(add))
  mse = fx.computation(lambda acc: acc[1] / jnp.maximum(acc[2], 1.0))(total)
  return collections.OrderedDict(mse=mse)


def build_sgd():
  def personalize(model, weights, train_data, test_data):
    def step(w, batch):
      grads = jax.grad(lambda tr: sq_error_sum(w._replace(trainable=tr), batch)[0]
                       / jnp.maximum(jnp.sum(batch["mask"]), 1.0))(w.trainable)
      return w._replace(trainable=jax.tree_util.tree_map(lambda a, g: a - LR * g,
                                                         w.trainable, grads))
    trained = fx.sequence_reduce(train_data, weights, fx.computation(step))
    return collections.OrderedDict(mse=evaluate(model, trained, test_data)["mse"],
                                   steps=fx.sequence_reduce(
                                       train_data, np.int32(0),
                                       fx.computation(lambda n, b: n + 1)))
  return personalize


def batches(x, y):
  out = []
  for s in range(0, len(y), BATCH):
    real = min(BATCH, len(y) - s)
    out.append(collections.OrderedDict(
        x=np.pad(x[s:s + BATCH], ((0, BATCH - real), (0, 0))).astype(np.float32),
        y=np.pad(y[s:s + BATCH], (0, BATCH - real)).astype(np.float32),
        mask=np.arange(BATCH) < real))
  return out


def clients():
  rng = np.random.default_rng(0)
  out = []
  for n_train, n_test in ((3, 2), (4, 3), (2, 1)):
    x, y = rng.normal(size=(n_train + n_test, 2)), rng.normal(size=n_train + n_test)
    out.append(collections.OrderedDict(train_data=batches(x[:n_train], y[:n_train]),
                                       test_data=batches(x[n_train:], y[n_train:])))
  return out


def hand(client, kernel=np.array([0.5, -1.0]), bias=0.25):
  """(baseline mse, personalized mse, steps) in float64."""
  def mse(k, b, data):
    rows = [(xx, yy) for bt in data for xx, yy, m in zip(bt["x"], bt["y"], bt["mask"]) if m]
    return np.mean([(xx @ k + b - yy) ** 2 for xx, yy in rows])
  k, b = kernel.astype(np.float64), float(bias)
  baseline = mse(k, b, client["test_data"])
  for bt in client["train_data"]:
    m = bt["mask"].astype(np.float64)
    err = (bt["x"] @ k + b - bt["y"]) * m
    k = k - LR * 2 * bt["x"].T.astype(np.float64) @ err / m.sum()
    b = b - LR * 2 * err.sum() / m.sum()
  return baseline, mse(k, b, client["test_data"]), len(client["train_data"])


def test_layout_and_values_match_a_hand_computation(runtime):
  computation = fx.learning.build_personalization_eval_computation(
      model, collections.OrderedDict(sgd=build_sgd), evaluate, max_num_clients=5)
  data = clients()
  out = computation(model().initial_weights, data)
  assert list(out) == ["baseline_metrics", "sgd"]
  assert out["baseline_metrics"]["mse"].shape == (5,) and list(out["sgd"]) == ["mse", "steps"]
  expected = sorted(hand(c) for c in data)
  rows = sorted((float(out["baseline_metrics"]["mse"][i]), float(out["sgd"]["mse"][i]),
                 int(out["sgd"]["steps"][i])) for i in range(3))
  np.testing.assert_allclose([r[:2] for r in rows], [e[:2] for e in expected], rtol=1e-5)
  assert [r[2] for r in rows] == [e[2] for e in expected]
  np.testing.assert_array_equal(out["baseline_metrics"]["mse"][3:], 0.0)  # Unfilled rows.


def test_at_most_max_num_clients_each_row_from_one_client():
  computation = fx.learning.build_personalization_eval_computation(
      model, collections.OrderedDict(sgd=build_sgd), evaluate, max_num_clients=2)
  data = clients()
  out = computation(model().initial_weights, data)
  expected = {round(h[0], 5): h for h in map(hand, data)}
  assert out["sgd"]["mse"].shape == (2,)
  for i in range(2):
    h = expected[round(float(out["baseline_metrics"]["mse"][i]), 5)]
    np.testing.assert_allclose(out["sgd"]["mse"][i], h[1], rtol=1e-5)


def test_misuse():
  build = fx.learning.build_personalization_eval_computation
  with pytest.raises(ValueError, match="'baseline_metrics' should not be used as a key"):
    build(model, collections.OrderedDict(baseline_metrics=build_sgd), evaluate)
  with pytest.raises(ValueError, match="max_num_clients must be a positive integer"):
    build(model, collections.OrderedDict(sgd=build_sgd), evaluate, max_num_clients=0)
  with pytest.raises(TypeError, match="personalize_fn_dict must map strategy names"):
    build(model, {"sgd": 3}, evaluate)
