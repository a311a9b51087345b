"""SCAFFOLD (option II) and Ditto against NumPy re-computations over rounds, on both runtimes,
with clients that return in later rounds and so must see their own stored states."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights

FEATURES, CLASSES, BATCH = 3, 2, 4
SPEC = collections.OrderedDict(x=(np.float32, [BATCH, FEATURES]), y=(np.int32, [BATCH]),
                               mask=(np.bool_, [BATCH]))
# Round cohorts over a population of four: 'a' and 'c' come back after a round away.
COHORTS = [["a", "b"], ["b", "c"], ["c", "a", "d"]]


def predict(weights, x, training):
  kernel, bias = weights.trainable
  return x @ kernel + bias


def loss_fn(logits, labels, sample_weight):
  losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
  return jnp.sum(losses * sample_weight) / jnp.maximum(jnp.sum(sample_weight), 1.0)


def model():
  rng = np.random.default_rng(0)
  weights = ModelWeights([rng.normal(size=(FEATURES, CLASSES)).astype(np.float32) * 0.3,
                          rng.normal(size=CLASSES).astype(np.float32) * 0.1], [])
  return FunctionalModel(initial_weights=weights, predict_on_batch_fn=predict, loss_fn=loss_fn,
                         input_spec=SPEC)


def batches(num_examples, rng, shift):
  """Non-IID: each client's features are shifted by its own amount."""
  x = (rng.normal(size=(num_examples, FEATURES)) + shift).astype(np.float32)
  y = rng.integers(0, CLASSES, num_examples).astype(np.int32)
  out = []
  for start in range(0, num_examples, BATCH):
    real = min(BATCH, num_examples - start)
    out.append(collections.OrderedDict(
        x=np.pad(x[start:start + BATCH], ((0, BATCH - real), (0, 0))),
        y=np.pad(y[start:start + BATCH], (0, BATCH - real)), mask=np.arange(BATCH) < real))
  return out


def population():
  rng = np.random.default_rng(1)
  return {c: batches(n, rng, s) for c, n, s in
          (("a", 6, 0.0), ("b", 9, 1.0), ("c", 3, -1.0), ("d", 8, 0.5))}


def gradient(w, b, batch):
  """NumPy gradient of the masked mean softmax cross-entropy (float64)."""
  x, y, m = (np.asarray(batch[k], np.float64) for k in ("x", "y", "mask"))
  logits = x @ w + b
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  p[np.arange(len(y)), y.astype(int)] -= 1.0
  p *= (m / max(m.sum(), 1.0))[:, None]
  return x.T @ p, p.sum(0)


def initial64():
  kernel, bias = model().initial_weights.trainable
  return [np.asarray(kernel, np.float64), np.asarray(bias, np.float64)]


def test_scaffold_control_variates_match_numpy_option_2(runtime):
  lr, server_lr, n_total = 0.1, 0.8, 4
  data = population()
  runner = fx.program.ClientStateProcess(algorithms.build_scaffold(
      model(), client_learning_rate=lr, server_optimizer_fn=optimizers.build_sgdm(server_lr),
      num_total_clients=n_total))
  state = runner.initialize()
  x, c = initial64(), [np.zeros((FEATURES, CLASSES)), np.zeros(CLASSES)]
  c_i = {}
  for cohort in COHORTS:
    state, metrics = runner.next(state, {k: data[k] for k in cohort})
    dys, dcs = [], []
    for k in cohort:
      ck = c_i.get(k, [np.zeros_like(v) for v in x])
      y = [v.copy() for v in x]
      for batch in data[k]:
        g = gradient(*y, batch)
        y = [yy - lr * (gg - cc_i + cc) for yy, gg, cc_i, cc in zip(y, g, ck, c)]
      steps = len(data[k])
      new_ck = [a - b + (xx - yy) / (steps * lr) for a, b, xx, yy in zip(ck, c, x, y)]
      dys.append([xx - yy for xx, yy in zip(x, y)])
      dcs.append([n - o for n, o in zip(new_ck, ck)])
      c_i[k] = new_ck
    x = [xx - server_lr * np.mean([d[j] for d in dys], 0) for j, xx in enumerate(x)]
    c = [cc + np.sum([d[j] for d in dcs], 0) / n_total for j, cc in enumerate(c)]
    got = runner.process.get_model_weights(state).trainable
    for a, b in zip(got, x):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    for a, b in zip(state["control_variate"], c):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    assert metrics["client_work"]["train"]["num_examples"] == sum(
        int(sum(b["mask"].sum() for b in data[k])) for k in cohort)
  store = runner.client_state_store
  assert sorted(store.client_ids()) == ["a", "b", "c", "d"]
  for k, expected in c_i.items():
    got = store.gather([k])[0]["control_variate"]
    for a, b in zip(got, expected):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_ditto_personal_models_persist_and_match_numpy(runtime):
  lr, personal_lr, lam = 0.2, 0.1, 0.5
  data = population()
  runner = fx.program.ClientStateProcess(algorithms.build_ditto(
      model(), optimizers.build_sgdm(lr), optimizers.build_sgdm(personal_lr), ditto_lambda=lam))
  state = runner.initialize()
  w = initial64()
  personal = {}
  for cohort in COHORTS:
    state, metrics = runner.next(state, {k: data[k] for k in cohort})
    deltas, weights = [], []
    for k in cohort:
      y = [v.copy() for v in w]
      v = personal.get(k, initial64())
      for batch in data[k]:
        y = [a - lr * g for a, g in zip(y, gradient(*y, batch))]
        v = [a - personal_lr * (g + lam * (a - ww))
             for a, g, ww in zip(v, gradient(*v, batch), w)]
      personal[k] = v
      deltas.append([a - b for a, b in zip(w, y)])
      weights.append(sum(b["mask"].sum() for b in data[k]))
    weights = np.asarray(weights, np.float64) / np.sum(weights)
    w = [ww - sum(p * d[j] for p, d in zip(weights, deltas)) for j, ww in enumerate(w)]
    for a, b in zip(runner.process.get_model_weights(state).trainable, w):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    assert set(metrics["client_work"]) == {"train", "personal_train"}
  for k, expected in personal.items():
    for a, b in zip(runner.client_state_store.gather([k])[0]["personal_model"], expected):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_a_returning_client_sees_its_own_state():
  data = population()
  runner = fx.program.ClientStateProcess(algorithms.build_ditto(
      model(), optimizers.build_sgdm(0.1), ditto_lambda=0.0))
  state = runner.initialize()
  state, _ = runner.next(state, {"a": data["a"]})
  after_a = runner.client_state_store.gather(["a"])[0]["personal_model"]
  state, _ = runner.next(state, {"b": data["b"]})
  np.testing.assert_array_equal(runner.client_state_store.gather(["a"])[0]["personal_model"][0],
                                after_a[0])  # Untouched while away.
  state, _ = runner.next(state, {"a": data["a"]})
  # lambda = 0: the personal model is plain local SGD continued from the client's own state.
  v = [np.asarray(p, np.float64) for p in after_a]
  for batch in data["a"]:
    v = [a - 0.1 * g for a, g in zip(v, gradient(*v, batch))]
  for a, b in zip(runner.client_state_store.gather(["a"])[0]["personal_model"], v):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_misuse_errors():
  with pytest.raises(ValueError, match="client_learning_rate must be a number > 0"):
    algorithms.build_scaffold(model(), client_learning_rate=0.0)
  with pytest.raises(ValueError, match="num_total_clients"):
    algorithms.build_scaffold(model(), 0.1, num_total_clients=0)
  with pytest.raises(ValueError, match="ditto_lambda must be a number >= 0"):
    algorithms.build_ditto(model(), optimizers.build_sgdm(0.1), ditto_lambda=-1.0)
  process = algorithms.build_scaffold(model(), 0.1)
  wrong = fx.program.ClientStateStore({"control_variate": [np.zeros((FEATURES, CLASSES),
                                                                    np.float64)]})
  with pytest.raises(TypeError, match="client state type is not the process's"):
    fx.program.ClientStateProcess(process, wrong)
  runner = fx.program.ClientStateProcess(process)
  with pytest.raises(TypeError, match="needs each round's client ids"):
    runner.next(runner.initialize(), [population()["a"]])
