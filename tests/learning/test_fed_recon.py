"""Federated Reconstruction: training and evaluation against a NumPy re-computation."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.learning.algorithms import _recon_local as rl

ITEMS, K = 6, 3
SPEC = {'x': (np.int32, [None, 1]), 'y': (np.float32, [None, 1])}


def predict(g, l, x, training):
  items = g.trainable[0][x[:, 0]]
  return jnp.sum(items * l.trainable[0], axis=1, keepdims=True)


def mse(y, p):
  return jnp.mean((y - p) ** 2, axis=-1)


def item_init():
  return np.random.default_rng(0).normal(0, 0.5, (ITEMS, K)).astype(np.float32)


def user_init():
  return np.full((1, K), 0.3, np.float32)


def mf_model(with_local=True):
  return fx.learning.models.ReconstructionModel(
      global_weights=([item_init()], []),
      local_weights=([user_init()], []) if with_local else ([], []),
      predict_on_batch_fn=predict if with_local else (
          lambda g, l, x, training: jnp.sum(g.trainable[0][x[:, 0]], axis=1, keepdims=True)),
      input_spec=SPEC)


def client_batches(seed, sizes):
  rng = np.random.default_rng(seed)
  return [{'x': rng.integers(0, ITEMS, (n, 1)).astype(np.int32),
           'y': rng.integers(1, 6, (n, 1)).astype(np.float32)} for n in sizes]


CLIENTS = [client_batches(1, [4, 4, 4, 2]), client_batches(2, [4, 4, 4, 4, 3]),
           client_batches(3, [2, 1])]


# --- NumPy reference -------------------------------------------------------------------------

def np_grads(items, user, batch):
  """(d loss / d items, d loss / d user, loss) of the batch's mean squared error."""
  x, y = batch['x'][:, 0], batch['y'][:, 0]
  err = items[x] @ user[0] - y                                  # [b]
  n = len(y)
  g_items = np.zeros_like(items)
  np.add.at(g_items, x, (2 * err / n)[:, None] * user[0][None, :])
  g_user = (2 * err / n) @ items[x]
  return g_items, g_user[None, :], float(np.mean(err ** 2))


def np_reconstruct(items, batches, lr=0.1):
  user = user_init().astype(np.float64)
  for b in batches:
    user = user - lr * np_grads(items, user, b)[1]
  return user


def np_round(items, clients, client_lr=0.1, recon_lr=0.1, server_lr=1.0):
  deltas, weights, losses = [], [], []
  for batches in clients:
    user = np_reconstruct(items, batches[0::2], recon_lr)
    trained = items.copy()
    for b in batches[1::2]:
      g, _, loss = np_grads(trained, user, b)
      losses.append(loss)
      trained = trained - client_lr * g
    deltas.append(items - trained)
    weights.append(sum(len(b['y']) for b in batches[1::2]))
  mean = sum(w * d for w, d in zip(weights, deltas)) / sum(weights)
  return items - server_lr * mean, float(np.mean(losses))


# --- Tests -----------------------------------------------------------------------------------

def test_fed_recon_matches_numpy(runtime):
  process = fx.learning.algorithms.build_fed_recon(mf_model, loss_fn=mse)
  state = process.initialize()
  items = item_init().astype(np.float64)
  for _ in range(2):
    state, metrics = process.next(state, CLIENTS)
    items, loss = np_round(items, CLIENTS)
    train = metrics['client_work']['train']
    np.testing.assert_allclose(train['loss'], loss, rtol=1e-4)
    assert int(train['num_non_finite_clients']) == 0
  np.testing.assert_allclose(process.get_model_weights(state).trainable[0], items, rtol=1e-4,
                             atol=1e-5)
  assert list(metrics) == ['distributor', 'client_work', 'aggregator', 'finalizer']


def test_vectorized_equals_sequential():
  process = fx.learning.algorithms.build_fed_recon(
      mf_model, loss_fn=mse, dataset_split_fn=fx.learning.reconstruction.build_dataset_split_fn(
          recon_epochs=2, recon_steps_max=3, post_recon_steps_max=2))
  results = []
  for name in ('vectorized', 'sequential'):
    with getattr(fx.runtime, name)():
      state, metrics = process.next(process.initialize(), CLIENTS)
      results.append((process.get_model_weights(state).trainable[0],
                      metrics['client_work']['train']['loss']))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)


def test_split_fn_epochs_and_step_limits():
  split = fx.learning.reconstruction.build_dataset_split_fn(
      recon_epochs=2, recon_steps_max=3, post_recon_epochs=2, post_recon_steps_max=3)
  process = fx.learning.algorithms.build_fed_recon(mf_model, loss_fn=mse,
                                                   dataset_split_fn=split)
  state, _ = process.next(process.initialize(), CLIENTS[:2])
  items = item_init().astype(np.float64)
  deltas, weights = [], []
  for batches in CLIENTS[:2]:
    # Every batch in both stages, twice over, at most 3 steps each: written out by hand.
    user = np_reconstruct(items, (batches + batches)[:3])
    trained = items.copy()
    for b in (batches + batches)[:3]:
      trained = trained - 0.1 * np_grads(trained, user, b)[0]
    deltas.append(items - trained)
    weights.append(sum(len(b['y']) for b in (batches + batches)[:3]))
  expected = items - sum(w * d for w, d in zip(weights, deltas)) / sum(weights)
  np.testing.assert_allclose(process.get_model_weights(state).trainable[0], expected,
                             rtol=1e-4, atol=1e-5)


def test_reconstruction_moves_only_local_and_training_only_global():
  model = mf_model()
  batch = CLIENTS[0][0]
  g, l = model.global_weights, model.local_weights
  grad_g, grad_l = jax.grad(lambda gt, lt: rl.forward(
      model, mse, g._replace(trainable=gt), l._replace(trainable=lt), batch, True).loss,
      argnums=(0, 1))(g.trainable, l.trainable)
  sgd = fx.learning.optimizers.build_sgdm(0.1)
  acc = rl.recon_start(model, sgd)
  after = rl.reconstruct_step(model, mse, sgd, acc, batch, g, None, None)
  np.testing.assert_allclose(after['local'].trainable[0],
                             l.trainable[0] - 0.1 * grad_l[0], rtol=1e-6)
  ops = rl.MetricOps(rl.model_metrics(None, 'test'))
  post = collections.OrderedDict(weights=g, local=l, optimizer_state=sgd.initialize(g.trainable),
                                 metrics=ops.initialize(), num_examples=np.int32(0),
                                 position=np.int32(0), steps=np.int32(0))
  trained = rl.train_step(model, mse, ops, sgd, post, batch, None, None)
  np.testing.assert_allclose(trained['weights'].trainable[0],
                             g.trainable[0] - 0.1 * grad_g[0], rtol=1e-6)
  np.testing.assert_array_equal(trained['local'].trainable[0], l.trainable[0])
  assert np.abs(np.asarray(grad_g[0])).sum() > 0 and np.abs(np.asarray(grad_l[0])).sum() > 0


def test_eval_reconstructs_before_measuring(runtime):
  evaluation = fx.learning.algorithms.build_fed_recon_eval(mf_model, loss_fn=mse)
  _, metrics = evaluation.next(evaluation.initialize(), CLIENTS)
  items = item_init().astype(np.float64)
  losses, stale = [], []
  for batches in CLIENTS:
    user = np_reconstruct(items, batches[0::2])
    losses += [np_grads(items, user, b)[2] for b in batches[1::2]]
    stale += [np_grads(items, user_init(), b)[2] for b in batches[1::2]]
  current = metrics['client_work']['eval']['current_round_metrics']
  assert list(current) == ['loss']
  np.testing.assert_allclose(current['loss'], np.mean(losses), rtol=1e-4)
  assert abs(np.mean(losses) - np.mean(stale)) > 1e-3  # Reconstruction made a difference.


def test_no_local_weights_is_fed_avg():
  recon = fx.learning.algorithms.build_fed_recon(
      lambda: mf_model(with_local=False), loss_fn=mse,
      dataset_split_fn=fx.learning.reconstruction.build_dataset_split_fn())
  fedavg_model = fx.learning.models.FunctionalModel(
      initial_weights=([item_init()], []),
      predict_on_batch_fn=lambda w, x, training: jnp.sum(w.trainable[0][x[:, 0]], axis=1,
                                                         keepdims=True),
      loss_fn=lambda p, y, w: fx.learning.models.metrics.weighted_mean(mse(y, p), w),
      input_spec=SPEC)
  fedavg = fx.learning.algorithms.build_weighted_fed_avg(
      fedavg_model, client_optimizer_fn=fx.learning.optimizers.build_sgdm(0.1))
  a, b = recon.initialize(), fedavg.initialize()
  for _ in range(2):
    a, _ = recon.next(a, CLIENTS)
    b, _ = fedavg.next(b, CLIENTS)
  np.testing.assert_allclose(recon.get_model_weights(a).trainable[0],
                             fedavg.get_model_weights(b).trainable[0], rtol=1e-6, atol=1e-7)


def test_no_local_weight_reaches_the_server():
  local_shape = (1, K)
  process = fx.learning.algorithms.build_fed_recon(mf_model, loss_fn=mse)
  state = process.initialize()
  state, metrics = process.next(state, CLIENTS)
  assert 'float32[1,3]' not in str(process.next.type_signature)
  assert 'float32[1,3]' not in str(process.initialize.type_signature)
  for leaf in jax.tree.leaves((state, metrics)):
    assert np.shape(leaf) != local_shape


def test_metrics_fn_and_uniform_weighting():
  close = fx.learning.models.metrics.mean_metric(
      'rating_accuracy', lambda p, y: (jnp.abs(p - y) <= 0.5)[:, 0])
  process = fx.learning.algorithms.build_fed_recon(
      mf_model, loss_fn=mse, metrics_fn=lambda: [close],
      client_weighting=fx.learning.ClientWeighting.UNIFORM)
  state, metrics = process.next(process.initialize(), CLIENTS)
  train = metrics['client_work']['train']
  assert list(train) == ['rating_accuracy', 'loss', 'num_non_finite_clients']
  items, hits, count = item_init().astype(np.float64), 0, 0
  deltas = []
  for batches in CLIENTS:
    user = np_reconstruct(items, batches[0::2])
    trained = items.copy()
    for b in batches[1::2]:
      pred = trained[b['x'][:, 0]] @ user[0]
      hits += np.sum(np.abs(pred - b['y'][:, 0]) <= 0.5)
      count += len(pred)
      trained = trained - 0.1 * np_grads(trained, user, b)[0]
    deltas.append(items - trained)
  np.testing.assert_allclose(train['rating_accuracy'], hits / count, rtol=1e-6)
  np.testing.assert_allclose(process.get_model_weights(state).trainable[0],
                             items - np.mean(deltas, axis=0), rtol=1e-4, atol=1e-5)


def test_misuse_errors():
  build = fx.learning.algorithms.build_fed_recon
  with pytest.raises(TypeError, match='ReconstructionModel'):
    build(lambda: 3, loss_fn=mse)
  with pytest.raises(TypeError, match='build_dataset_split_fn'):
    build(mf_model, loss_fn=mse, dataset_split_fn=lambda ds: (ds, ds))
  with pytest.raises(ValueError, match='uniform client weighting'):
    build(mf_model, loss_fn=mse, model_aggregator_factory=fx.aggregators.UnweightedMeanFactory())
  with pytest.raises(ValueError, match="duplicate metric name 'loss'"):
    build(mf_model, loss_fn=mse, metrics_fn=lambda: [fx.learning.models.metrics.mean_loss()])
  with pytest.raises(ValueError, match='recon_epochs must be an integer >= 1'):
    fx.learning.reconstruction.build_dataset_split_fn(recon_epochs=0)
  with pytest.raises(TypeError, match='local_weights must hold trainable and non-trainable'):
    fx.learning.models.ReconstructionModel(global_weights=([], []), local_weights=3,
                                           predict_on_batch_fn=predict, input_spec=SPEC)
