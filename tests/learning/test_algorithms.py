"""The algorithms against the NumPy reference, on both runtimes, and their exactness properties."""

import collections
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights

import reference

FEATURES, CLASSES, BATCH = 4, 3, 5
SPEC = collections.OrderedDict(x=(np.float32, [BATCH, FEATURES]), y=(np.int32, [BATCH]),
                               mask=(np.bool_, [BATCH]))


def predict(weights, x, training):
  kernel, bias = weights.trainable
  return x @ kernel + bias


def loss_fn(logits, labels, sample_weight):
  losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
  return jnp.sum(losses * sample_weight) / jnp.maximum(jnp.sum(sample_weight), 1.0)


def linear_model(seed=0):
  rng = np.random.default_rng(seed)
  weights = ModelWeights([rng.normal(size=(FEATURES, CLASSES)).astype(np.float32) * 0.3,
                          rng.normal(size=CLASSES).astype(np.float32) * 0.1], [])
  return FunctionalModel(initial_weights=weights, predict_on_batch_fn=predict, loss_fn=loss_fn,
                         input_spec=SPEC)


def client_batches(num_examples, rng):
  x = rng.normal(size=(num_examples, FEATURES)).astype(np.float32)
  y = rng.integers(0, CLASSES, num_examples).astype(np.int32)
  batches = []
  for start in range(0, num_examples, BATCH):
    real = min(BATCH, num_examples - start)
    pad = BATCH - real
    batches.append(collections.OrderedDict(
        x=np.pad(x[start:start + BATCH], ((0, pad), (0, 0))),
        y=np.pad(y[start:start + BATCH], (0, pad)), mask=np.arange(BATCH) < real))
  return batches


def make_clients(sizes=(7, 12, 3), seed=1):
  rng = np.random.default_rng(seed)
  return [client_batches(n, rng) for n in sizes]


def as_float64(model):
  kernel, bias = model.initial_weights.trainable
  return np.asarray(kernel, np.float64), np.asarray(bias, np.float64)


def trainable(process, state):
  kernel, bias = process.get_model_weights(state).trainable
  return np.asarray(kernel), np.asarray(bias)


@pytest.mark.parametrize("weighted", [True, False])
def test_fed_avg_matches_numpy_over_rounds(runtime, weighted):
  model, clients = linear_model(), make_clients()
  build = algorithms.build_weighted_fed_avg if weighted else algorithms.build_unweighted_fed_avg
  process = build(model, optimizers.build_sgdm(0.3), optimizers.build_sgdm(0.7))
  state = process.initialize()
  kernel, bias = as_float64(model)
  for _ in range(3):
    state, metrics = process.next(state, clients)
    kernel, bias, loss = reference.fed_avg_round(kernel, bias, clients, 0.3, 0.7, weighted)
    np.testing.assert_allclose(metrics["client_work"]["train"]["loss"], loss, rtol=1e-5)
    assert metrics["client_work"]["train"]["num_examples"] == 22
    assert metrics["client_work"]["train"]["num_batches"] == 6
    assert metrics["finalizer"]["update_non_finite"] == 0
  got_kernel, got_bias = trainable(process, state)
  np.testing.assert_allclose(got_kernel, kernel, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_bias, bias, rtol=1e-5, atol=1e-6)


def test_fed_prox_matches_numpy_and_is_fed_avg_at_strength_zero(runtime):
  model, clients = linear_model(), make_clients()
  process = algorithms.build_weighted_fed_prox(model, 0.5, optimizers.build_sgdm(0.3))
  state, _ = process.next(process.initialize(), clients)
  kernel, bias, _ = reference.fed_avg_round(*as_float64(model), clients, 0.3, 1.0, mu=0.5)
  np.testing.assert_allclose(trainable(process, state)[0], kernel, rtol=1e-5, atol=1e-6)

  prox0 = algorithms.build_weighted_fed_prox(model, 0.0, optimizers.build_sgdm(0.3))
  avg = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.3))
  prox_state, prox_metrics = prox0.next(prox0.initialize(), clients)
  avg_state, avg_metrics = avg.next(avg.initialize(), clients)
  np.testing.assert_array_equal(trainable(prox0, prox_state)[0], trainable(avg, avg_state)[0])
  assert prox_metrics == avg_metrics

  unweighted = algorithms.build_unweighted_fed_prox(model, 0.5, optimizers.build_sgdm(0.3))
  state, _ = unweighted.next(unweighted.initialize(), clients)
  kernel, _, _ = reference.fed_avg_round(*as_float64(model), clients, 0.3, 1.0, False, mu=0.5)
  np.testing.assert_allclose(trainable(unweighted, state)[0], kernel, rtol=1e-5, atol=1e-6)


def test_fed_sgd_with_one_client_is_one_centralized_gradient_step(runtime):
  model, clients = linear_model(), make_clients(sizes=(13,))
  process = algorithms.build_fed_sgd(model, optimizers.build_sgdm(0.5))
  state, metrics = process.next(process.initialize(), clients)
  kernel, bias = as_float64(model)
  gk, gb, _ = reference.mean_gradient(kernel, bias, clients[0])
  got_kernel, got_bias = trainable(process, state)
  np.testing.assert_allclose(got_kernel, kernel - 0.5 * gk, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_bias, bias - 0.5 * gb, rtol=1e-5, atol=1e-6)
  assert metrics["client_work"]["train"]["num_examples"] == 13


def test_fed_avg_with_one_client_and_one_batch_is_one_sgd_step(runtime):
  model, clients = linear_model(), make_clients(sizes=(4,))
  process = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.25))
  state, _ = process.next(process.initialize(), clients)
  kernel, bias = as_float64(model)
  _, gk, gb, _ = reference.loss_and_grad(kernel, bias, clients[0][0])
  np.testing.assert_allclose(trainable(process, state)[0], kernel - 0.25 * gk, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(trainable(process, state)[1], bias - 0.25 * gb, rtol=1e-5,
                             atol=1e-6)


def test_mime_lite_matches_numpy_over_two_rounds(runtime):
  model, clients = linear_model(), make_clients()
  lr, momentum = 0.2, 0.9
  process = algorithms.build_weighted_mime_lite(
      model, optimizers.build_sgdm(lr, momentum=momentum), optimizers.build_sgdm(1.0))
  state = process.initialize()
  kernel, bias = as_float64(model)
  accumulators = [np.zeros_like(kernel), np.zeros_like(bias)]
  for _ in range(2):
    state, _ = process.next(state, clients)
    deltas, counts, gradients = [], [], []
    for batches in clients:
      dk, db, n, _ = reference.local_training(kernel, bias, batches, lr, momentum=momentum,
                                              accumulators=accumulators)
      deltas.append((dk, db))
      counts.append(n)
      gradients.append(reference.mean_gradient(kernel, bias, batches)[:2])
    w = np.asarray(counts, np.float64) / np.sum(counts)
    kernel = kernel - sum(wi * d[0] for wi, d in zip(w, deltas))
    bias = bias - sum(wi * d[1] for wi, d in zip(w, deltas))
    accumulators = [momentum * accumulators[i] + sum(wi * g[i] for wi, g in zip(w, gradients))
                    for i in range(2)]
  np.testing.assert_allclose(trainable(process, state)[0], kernel, rtol=1e-5, atol=1e-6)
  server_accumulators = state.client_work["optimizer_state"]["accumulator"]
  np.testing.assert_allclose(server_accumulators[0], accumulators[0], rtol=1e-5, atol=1e-6)


def test_client_learning_rate_schedule_follows_rounds(runtime):
  model, clients = linear_model(), make_clients()
  process = algorithms.build_weighted_fed_avg_with_optimizer_schedule(
      model, lambda round_num: 0.4 * 0.5 ** round_num, lambda lr: optimizers.build_sgdm(lr))
  state = process.initialize()
  kernel, bias = as_float64(model)
  for round_num in range(2):
    state, _ = process.next(state, clients)
    kernel, bias, _ = reference.fed_avg_round(kernel, bias, clients, 0.4 * 0.5 ** round_num, 1.0)
  np.testing.assert_allclose(trainable(process, state)[0], kernel, rtol=1e-5, atol=1e-6)
  assert state.client_work["round_num"] == 2


def test_fed_eval_reports_this_round_and_all_rounds(runtime):
  model = linear_model()
  evaluation = algorithms.build_fed_eval(model)
  first, second = make_clients(seed=3), make_clients(sizes=(5, 9), seed=4)
  kernel, bias = as_float64(model)

  def expected_loss(clients):
    pairs = [reference.loss_and_grad(kernel, bias, b) for c in clients for b in c]
    return sum(l * n for l, _, _, n in pairs) / sum(n for *_, n in pairs)

  state, metrics = evaluation.next(evaluation.initialize(), first)
  state, metrics = evaluation.next(state, second)
  report = metrics["client_work"]["eval"]
  np.testing.assert_allclose(report["current_round_metrics"]["loss"], expected_loss(second),
                             rtol=1e-5)
  np.testing.assert_allclose(report["total_rounds_metrics"]["loss"],
                             expected_loss(first + second), rtol=1e-5)
  assert report["total_rounds_metrics"]["num_examples"] == 22 + 14
  np.testing.assert_array_equal(trainable(evaluation, state)[0], model.initial_weights.trainable[0])


def test_a_client_with_non_finite_values_is_dropped_and_a_bad_aggregate_rejected(runtime):
  model, clients = linear_model(), make_clients()
  poisoned = [dict(b, x=np.full_like(b["x"], np.nan)) for b in clients[1]]
  process = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.3))
  state, metrics = process.next(process.initialize(), [clients[0], poisoned, clients[2]])
  kernel, _, _ = reference.fed_avg_round(*as_float64(model), [clients[0], clients[2]], 0.3, 1.0)
  np.testing.assert_allclose(trainable(process, state)[0], kernel, rtol=1e-5, atol=1e-6)
  assert metrics["finalizer"]["update_non_finite"] == 0

  # Every client dropped: the mean is 0/0, the finalizer keeps the weights and says so.
  state, metrics = process.next(process.initialize(), [poisoned])
  assert metrics["finalizer"]["update_non_finite"] == 1
  np.testing.assert_array_equal(trainable(process, state)[0], model.initial_weights.trainable[0])


BUILDERS = {
    "weighted_fed_avg": lambda m: algorithms.build_weighted_fed_avg(
        m, optimizers.build_sgdm(0.3), optimizers.build_adam(0.05)),
    "unweighted_fed_avg": lambda m: algorithms.build_unweighted_fed_avg(
        m, optimizers.build_sgdm(0.3), optimizers.build_yogi(0.05)),
    "fed_avg_schedule": lambda m: algorithms.build_weighted_fed_avg_with_optimizer_schedule(
        m, lambda r: 0.3 / (1.0 + r), lambda lr: optimizers.build_sgdm(lr)),
    "fed_sgd": lambda m: algorithms.build_fed_sgd(m, optimizers.build_adagrad(0.3)),
    "weighted_fed_prox": lambda m: algorithms.build_weighted_fed_prox(
        m, 0.1, optimizers.build_sgdm(0.3)),
    "unweighted_fed_prox": lambda m: algorithms.build_unweighted_fed_prox(
        m, 0.1, optimizers.build_sgdm(0.3)),
    "weighted_mime_lite": lambda m: algorithms.build_weighted_mime_lite(
        m, optimizers.build_sgdm(0.2, momentum=0.9)),
    "unweighted_mime_lite": lambda m: algorithms.build_unweighted_mime_lite(
        m, optimizers.build_adam(0.05)),
    "fed_eval": algorithms.build_fed_eval,
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_algorithm_gives_the_same_results_on_both_runtimes(name):
  clients = make_clients(sizes=(7, 12, 3, 9))
  outcomes = []
  for make_runtime in (fx.runtime.vectorized, fx.runtime.sequential):
    with make_runtime():
      process = BUILDERS[name](linear_model())
      state = process.initialize()
      for _ in range(2):
        state, metrics = process.next(state, clients)
      outcomes.append((jax.tree_util.tree_leaves(process.get_model_weights(state)),
                       jax.tree_util.tree_leaves(metrics)))
  for got, want in zip(jax.tree_util.tree_leaves(outcomes[0]),
                       jax.tree_util.tree_leaves(outcomes[1])):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_algorithm_streams_a_large_cohort_with_the_same_results(
    name, monkeypatch):
  from federax.runtime.vectorized import streaming
  from federax.simulation import Dataset

  rng = np.random.default_rng(3)
  datasets = [Dataset.from_tensor_slices(collections.OrderedDict(
      x=rng.normal(size=(n, FEATURES)).astype(np.float32),
      y=rng.integers(0, CLASSES, n).astype(np.int32))).masked_batch(BATCH)
      for n in (7, 12, 3, 9, 1, 5, 8)]
  monkeypatch.setattr(sys.modules["federax.runtime.vectorized.stacking"], "STREAM_BYTES", 0)  # 1 kB here.
  reads = []
  original = streaming.Streams.read
  monkeypatch.setattr(streaming.Streams, "read",
                      lambda self, *chunk: reads.append(chunk) or original(self, *chunk))
  outcomes = []
  for make_runtime in (lambda: fx.runtime.vectorized(chunk_size=3, shard=False),
                       fx.runtime.sequential):
    with make_runtime():
      process = BUILDERS[name](linear_model())
      state, metrics = process.next(process.initialize(), datasets)
      outcomes.append((jax.tree_util.tree_leaves(process.get_model_weights(state)),
                       jax.tree_util.tree_leaves(metrics)))
  assert len(reads) >= 3  # Chunks of 3, 3 and 1 clients, read once per pass over the data.
  for got, want in zip(jax.tree_util.tree_leaves(outcomes[0]),
                       jax.tree_util.tree_leaves(outcomes[1])):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
