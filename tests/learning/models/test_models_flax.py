"""`from_nnx_module` and `from_linen_module` against hand-written models; state, rngs, errors."""

import doctest
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

flax = pytest.importorskip("flax")
optax = pytest.importorskip("optax")

import flax.linen as nn  # noqa: E402
from flax import nnx  # noqa: E402

import federax as fx  # noqa: E402
from federax.learning import models  # noqa: E402
from federax.learning.models import _flax_linen, _flax_nnx, metrics  # noqa: E402

CE = optax.softmax_cross_entropy_with_integer_labels


def hand_written(weights):
  """The same linear model written by hand, on the given kernel and bias."""
  def predict(w, x, training, key):
    return x @ w.trainable["kernel"] + w.trainable["bias"]
  return models.FunctionalModel(
      initial_weights=(weights, {}), predict_on_batch_fn=predict,
      loss_fn=lambda p, y, w: metrics.weighted_mean(CE(p, y), w),
      metrics_fns=metrics.to_metrics_fns([metrics.sparse_categorical_accuracy()]),
      input_spec={"x": (np.float32, [None, 784]), "y": (np.int32, [None])})


def check_same_as_hand_written(model, batch, jitted):
  """The wrapper and the hand-written model agree at weights other than the initial ones."""
  rng = np.random.default_rng(0)
  weights = models.ModelWeights(
      {"kernel": rng.normal(0, 0.05, (784, 10)).astype(np.float32),
       "bias": rng.normal(0, 0.05, 10).astype(np.float32)}, {})
  assert jax.tree.map(np.shape, model.initial_weights) == jax.tree.map(np.shape, weights)
  reference = hand_written(weights.trainable)
  fast = [jitted(m) for m in (model, reference)]
  outs = [m.forward_pass(weights, batch, key=jax.random.PRNGKey(0)) for m in fast]
  np.testing.assert_allclose(outs[0].loss, outs[1].loss, rtol=1e-6)
  keep = batch["mask"]
  logits = batch["x"][keep] @ weights.trainable["kernel"] + weights.trainable["bias"]
  shifted = logits - logits.max(1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
  np.testing.assert_allclose(outs[0].loss, -log_p[np.arange(4), batch["y"][keep]].mean(),
                             rtol=1e-5)
  results = [m.metrics(batch, o) for m, o in zip(fast, outs)]
  jax.tree.map(np.testing.assert_allclose, results[0], results[1])


def test_nnx_linear_matches_hand_written(spec, batch, jitted):
  linear = nnx.Linear(784, 10, kernel_init=nnx.initializers.zeros, rngs=nnx.Rngs(0))
  model = models.from_nnx_module(linear, CE, spec,
                                 metrics=[metrics.sparse_categorical_accuracy()])
  assert model.initial_weights.non_trainable == {}
  check_same_as_hand_written(model, batch, jitted)


def test_linen_dense_matches_hand_written(spec, batch, jitted):
  model = models.from_linen_module(nn.Dense(10), CE, spec,
                                   metrics=[metrics.sparse_categorical_accuracy()],
                                   init_key=jax.random.key(3))
  assert model.initial_weights.non_trainable == {}
  check_same_as_hand_written(model, batch, jitted)


class NnxNet(nnx.Module):
  def __init__(self, rngs):
    self.layers = nnx.List([nnx.Linear(3, 4, rngs=rngs)])  # List indices become str keys.
    self.norm = nnx.BatchNorm(4, momentum=0.5, rngs=rngs)
    self.dropout = nnx.Dropout(0.5, rngs=rngs)

  def __call__(self, x):
    return self.dropout(self.norm(self.layers[0](x)))


class LinenNet(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(nn.Dense(4)(x))
    return nn.Dropout(0.5, deterministic=not train)(x)


SMALL_SPEC = {"x": (np.float32, [None, 3]), "y": (np.int32, [None])}


# Jitted: building a module eagerly compiles every initializer op on its own, which is slow.
new_nnx_net = nnx.jit(lambda: NnxNet(nnx.Rngs(0)))


def wrap_nnx(spec):
  return models.from_nnx_module(new_nnx_net(), CE, SMALL_SPEC)


def wrap_linen(spec):
  return models.from_linen_module(LinenNet(), CE, SMALL_SPEC)


@pytest.mark.parametrize("wrap", [wrap_nnx, wrap_linen], ids=["nnx", "linen"])
def test_batch_norm_and_dropout(wrap, spec):
  model = wrap(spec)
  weights = model.initial_weights
  assert fx.type_of(weights) is not None  # Plain dicts of arrays with str keys.
  x = np.random.default_rng(0).normal(2.0, 1.0, (8, 3)).astype(np.float32)
  batch = {"x": x, "y": np.zeros(8, np.int32), "mask": np.ones(8, bool)}
  forward = jax.jit(model.forward_pass, static_argnames="training")
  a = forward(weights, batch, key=jax.random.PRNGKey(1))
  b = forward(weights, batch, key=jax.random.PRNGKey(1))
  c = forward(weights, batch, key=jax.random.PRNGKey(2))
  np.testing.assert_array_equal(a.predictions, b.predictions)
  assert not np.allclose(a.predictions, c.predictions)
  assert ((a.predictions == 0).sum(1) > 0).any()  # Dropout ran.
  moved = [v for v in jax.tree.leaves(jax.tree.map(lambda n, o: not np.allclose(n, o),
                                                   a.non_trainable, weights.non_trainable))]
  assert all(moved) and len(moved) == 2  # Mean and variance both moved.
  evaluation = forward(weights, batch, training=False)
  assert evaluation.non_trainable is None
  assert (evaluation.predictions != 0).all()  # No dropout in eval.
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  stacked = jax.tree.map(lambda v: jnp.stack([v] * 3), batch)
  per_client = jax.jit(jax.vmap(lambda b, k: model.forward_pass(weights, b, key=k)))(stacked,
                                                                                      keys)
  assert per_client.predictions.shape == (3, 8, 4)
  assert not np.allclose(per_client.predictions[0], per_client.predictions[1])


def test_nnx_module_is_left_untouched(spec):
  net = new_nnx_net()
  before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(net, nnx.BatchStat)))
  model = models.from_nnx_module(net, CE, spec)
  batch = {"x": np.ones((4, 3), np.float32), "y": np.zeros(4, np.int32)}
  jax.jit(model.forward_pass)(model.initial_weights, batch, key=jax.random.PRNGKey(0))
  after = nnx.to_pure_dict(nnx.state(net, nnx.BatchStat))
  jax.tree.map(np.testing.assert_array_equal, before, after)
  assert sorted(model.initial_weights.trainable["layers"]) == ["0"]


def test_linen_with_given_variables_and_explicit_train_arg(spec, jitted):
  class Deterministic(nn.Module):
    @nn.compact
    def __call__(self, x, deterministic: bool):
      return nn.Dropout(0.5, deterministic=deterministic)(nn.Dense(2)(x))

  module = Deterministic()
  variables = module.init(jax.random.PRNGKey(0), jnp.ones((1, 3)), deterministic=True)
  model = jitted(models.from_linen_module(module, CE, spec, variables=variables))
  x = np.ones((6, 3), np.float32)
  train = model.predict_on_batch(model.initial_weights, x, key=jax.random.PRNGKey(0))
  assert (np.asarray(train) == 0).any()
  np.testing.assert_allclose(model.predict_on_batch(model.initial_weights, x, training=False),
                             module.apply(variables, x, deterministic=True))
  no_arg = models.from_linen_module(nn.Dense(2), CE, spec, train_arg=None)
  assert no_arg.predict_on_batch(no_arg.initial_weights, np.ones((2, 784))).shape == (2, 2)


def test_nnx_dropout_without_a_key_is_an_error(spec):
  model = wrap_nnx(spec)
  with pytest.raises(ValueError) as info:
    model.forward_pass(model.initial_weights, {"x": np.ones((2, 3)), "y": np.zeros(2, int)})
  assert "the model has random layers (nnx RNG streams ['default'])" in str(info.value)


def test_errors(spec, monkeypatch):
  with pytest.raises(TypeError) as info:
    models.from_nnx_module(nn.Dense(3), CE, spec)
  assert "from_nnx_module: module must be a Flax NNX module." in str(info.value)
  assert "use from_linen_module" in str(info.value)
  with pytest.raises(TypeError) as info:
    models.from_linen_module(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), CE, spec)
  assert "from_linen_module: module must be a Flax linen module." in str(info.value)
  with pytest.raises(TypeError) as info:
    models.from_linen_module(nn.Dense(3), "cross_entropy", spec)
  assert "from_linen_module: loss must be a function of (predictions, labels)" in str(info.value)
  with pytest.raises(ValueError) as info:
    models.from_linen_module(nn.Dense(3), CE, spec, variables={"batch_stats": {}})
  assert "variables has no 'params' collection." in str(info.value)
  with pytest.raises(TypeError) as info:
    models.from_linen_module(nn.Dense(3), CE, fx.StructType(
        [("x", fx.SequenceType(np.float32)), ("y", np.int32)]))
  assert "cannot build an example input for float32*" in str(info.value)
  scalar = models.from_linen_module(nn.Dense(10), lambda p, y: CE(p, y).mean(), spec)
  with pytest.raises(ValueError) as info:
    scalar.forward_pass(scalar.initial_weights, {"x": np.ones((2, 784)), "y": np.zeros(2, int)})
  assert "from_linen_module: the loss returned a scalar" in str(info.value)
  monkeypatch.setitem(sys.modules, "flax", None)
  for wrapper, operator in ((models.from_nnx_module, "from_nnx_module"),
                            (models.from_linen_module, "from_linen_module")):
    with pytest.raises(ImportError) as info:
      wrapper(None, CE, spec)
    assert f"{operator}: Flax is not installed." in str(info.value)
    assert "pip install 'federax[flax]'" in str(info.value)


def test_docstring_examples_run():
  for module in (_flax_nnx, _flax_linen):
    result = doctest.testmod(module, extraglobs={"jnp": jnp, "np": np, "jax": jax,
                                                 "metrics": metrics})
    assert result.failed == 0 and result.attempted > 0, module.__name__
