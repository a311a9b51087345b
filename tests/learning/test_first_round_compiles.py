"""Time to the first model: how many XLA programs building, initializing and training a round
compile (benchmarks/results/first_round.md). Eager JAX calls at build time each compiled one."""

import collections

import jax
import numpy as np
import pytest

import federax as fx
from federax.cli.compilation_cache import CompileCounter
from federax.core import types as t
from federax.learning import algorithms, optimizers
from federax.learning._specs import initial_key
from federax.simulation.baselines import _layers as layers
from federax.simulation.baselines._classifier import classification_model

# Odd sizes, so that no other test's compiled programs could serve these.
FEATURES, CLASSES, BATCH = 7, 5, 3


def dropout_model():
  """A dense layer with dropout: its state carries a PRNG key, as EMNIST's CNN's does."""
  rng = np.random.default_rng(0)
  weights = [rng.normal(size=(FEATURES, CLASSES)).astype(np.float32), np.zeros(CLASSES,
                                                                                np.float32)]

  def predict(w, x, training, key):
    return layers.dense(layers.dropout(x, 0.25, key if training else None), w[0], w[1])

  spec = {"x": t.TensorType(np.float32, (None, FEATURES)), "y": t.TensorType(np.int32, (None,)),
          "mask": t.TensorType(np.bool_, (None,))}
  return classification_model(weights, predict, from_logits=True, input_spec=spec)


def clients(sizes=(2, 3, 1)):
  rng = np.random.default_rng(1)
  return [[collections.OrderedDict(
      x=rng.normal(size=(BATCH, FEATURES)).astype(np.float32),
      y=rng.integers(0, CLASSES, BATCH).astype(np.int32), mask=np.arange(BATCH) < BATCH - i % 2)
      for i in range(n)] for n in sizes]


def test_building_initializing_and_a_round_compile_two_programs():
  jax.clear_caches()  # Programs other tests compiled (scalar zeros, say) would hide a regression.
  runtime = fx.runtime.vectorized()
  with runtime, CompileCounter() as built:
    process = algorithms.build_weighted_fed_avg(
        dropout_model(), optimizers.build_sgdm(0.1), optimizers.build_sgdm(1.0))
  assert built.compilations == 0  # Weights, metric states and the key are made on the host.
  data = clients()
  with runtime, CompileCounter() as first:
    state = process.initialize()
    state, metrics = process.next(state, data)
    jax.block_until_ready(state)
  assert first.compilations == 2, "initialize's program and the round's, nothing else"
  real = sum(int(b["mask"].sum()) for client in data for b in client)
  assert metrics["client_work"]["train"]["num_examples"] == real
  with runtime, CompileCounter() as second:
    jax.block_until_ready(process.next(state, data))
  assert second.compilations == 0


@pytest.mark.parametrize("seed", [0, 1, 42, 2**31 - 1, -1, 2**31])
def test_initial_key_is_jax_prng_key(seed):
  try:
    expected = np.asarray(jax.random.PRNGKey(seed), np.uint32)
  except OverflowError:  # 2**31 without 64-bit types: JAX refuses it, and so must we.
    with pytest.raises(OverflowError):
      initial_key(seed)
    return
  actual = initial_key(seed)
  assert actual.dtype == np.uint32 and actual.shape == (2,)
  np.testing.assert_array_equal(actual, expected)
