"""The issue's "Noise" test for `gaussian_fixed`, on the whole aggregate: over 10^5 seeds (the
process vectorized with `jax.vmap` over its state's key), the aggregate's noise has standard
deviation z C / clients_per_round, is independent across coordinates and rounds, and a seed
gives the same noise, bit for bit, through the vectorized program as on the sequential runtime."""

import math

import jax
import jax.numpy as jnp
import numpy as np

import federax as fx

Z, CLIP, N = 1.3, 0.7, 4.0
VALUES = [np.asarray([0.25, -0.5], np.float32), np.asarray([0.125, 0.0], np.float32)]
CLEAN = (VALUES[0] + VALUES[1]) / N  # norms below the clip, dyadic: exact in float32
ZERO = np.zeros(2, np.float32)


def two_rounds(process, initial, key, values=VALUES, clean=CLEAN):
  state = jax.tree_util.tree_map(jnp.asarray, initial)
  state["query_state"]["numerator_state"]["noise_key"] = key
  first = process.next(state, values)
  second = process.next(first.state, values)
  return jnp.concatenate([first.result, second.result]) - jnp.tile(clean, 2)


def test_aggregate_noise_over_1e5_seeds_is_z_c_over_n_independent_and_reproducible():
  process = fx.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
      Z, N, CLIP, seed=0).create(fx.TensorType(np.float32, [2]))
  keys = jax.random.split(jax.random.PRNGKey(11), 100_000)
  zeros = [np.zeros(2, np.float32)] * 2
  with fx.runtime.vectorized():
    initial = process.initialize()
    noise = np.asarray(jax.jit(jax.vmap(lambda k: two_rounds(process, initial, k)))(keys))
    some = keys[np.asarray([0, 1, 99_999])]
    alone = np.asarray(jax.jit(jax.vmap(lambda k: two_rounds(process, initial, k, zeros, ZERO)))(
        some))
  sigma = Z * CLIP / N
  columns = noise.astype(np.float64)  # [seeds, 2 coordinates x 2 rounds]
  np.testing.assert_allclose(np.std(columns, axis=0) / sigma, 1.0, atol=0.01)
  np.testing.assert_allclose(np.mean(columns, axis=0), 0.0, atol=5 * sigma / math.sqrt(1e5))
  assert np.max(np.abs(np.corrcoef(columns, rowvar=False) - np.eye(4))) < 0.02
  # A few seeds again, one by one on the sequential runtime: the same noise, bit for bit (on
  # zero values, where the result is the noise alone: see test_differential_privacy).
  with fx.runtime.sequential():
    initial = process.initialize()
    for key, expected in zip(some, alone):
      np.testing.assert_array_equal(np.asarray(two_rounds(process, initial, key, zeros, ZERO)),
                                    expected)
      np.testing.assert_allclose(np.asarray(two_rounds(process, initial, key)), expected,
                                 rtol=1e-5, atol=1e-7)
