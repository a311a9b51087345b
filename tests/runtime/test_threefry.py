"""Threefry lowered straight-line on CPU draws the bits JAX's own rolled-loop lowering draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry2x32_p

import federax as fx
from federax.runtime.vectorized import _threefry

RNG = np.random.default_rng(0)


def _words(*shape):
  return RNG.integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32)


def test_hash_equals_jax_threefry_primitive():
  k1, k2, x1, x2 = _words(), _words(), _words(5, 7), _words(5, 7)
  expected = threefry2x32_p.bind(*(jnp.broadcast_to(a, (5, 7)) for a in (k1, k2, x1, x2)))
  actual = jax.jit(_threefry.hash_2x32)(k1, k2, x1, x2)
  for e, a in zip(expected, actual):
    np.testing.assert_array_equal(a, e)


def _draws(key):
  a, b = jax.random.split(key)
  return (jax.random.bits(a, (3, 5)), jax.random.bernoulli(b, 0.75, (4, 33)),
          jax.random.normal(jax.random.fold_in(key, 7), (9,)), jax.random.split(b, 3))


@pytest.mark.skipif(not _threefry.INSTALLED, reason="JAX's CPU threefry rule not found")
def test_straight_line_programs_draw_the_same_bits_without_a_loop():
  key = jax.random.PRNGKey(3)
  rolled = jax.jit(_draws).lower(key).as_text()
  # A new function: JAX caches lowerings by the traced program.
  straight = _threefry.straight_line(lambda k: jax.jit(lambda k: _draws(k)).lower(k).as_text())
  assert "stablehlo.while" in rolled  # JAX's CPU rule: a rolled loop per hash.
  assert "stablehlo.while" not in straight(key)
  expected = jax.jit(_draws)(key)
  actual = _threefry.straight_line(jax.jit(lambda k: _draws(k)))(key)
  for e, a in zip(expected, actual):
    np.testing.assert_array_equal(a, e)
  assert "stablehlo.while" in jax.jit(lambda k: _draws(k)).lower(key).as_text()  # Scoped.


def test_vectorized_rounds_draw_as_the_sequential_runtime():
  @fx.computation(fx.TensorType(np.uint32, [2]))
  def dropout_mean(key):
    keep = jax.random.bernoulli(jax.random.fold_in(key, 1), 0.5, (16, 8))
    return jnp.mean(jnp.where(keep, jax.random.normal(key, (16, 8)), 0.0))

  @fx.federated_computation(fx.FederatedType(fx.TensorType(np.uint32, [2]), fx.CLIENTS))
  def means(keys):
    return fx.federated_map(dropout_mean, keys)

  keys = [np.asarray(jax.random.PRNGKey(i)) for i in range(3)]
  with fx.runtime.sequential():
    expected = means(keys)
  with fx.runtime.vectorized():
    actual = means(keys)
  np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected))
