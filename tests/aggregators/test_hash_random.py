"""The hashed uniforms of stochastic rounding: a NumPy re-computation of the hash, and the
statistics stochastic rounding relies on (uniform, uncorrelated along a tensor and across
keys), with bounds at about five standard errors."""

import jax
import numpy as np

from federax.aggregators import _hash_random

N = 1 << 20


def numpy_bits(key, n):
  def mix(x):
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x21F0AAAD)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0xD35A2D97)
    return x ^ (x >> np.uint32(15))

  k0, k1 = (np.uint32(k) for k in np.asarray(key, np.uint32))
  with np.errstate(over="ignore"):
    x = mix(np.arange(n, dtype=np.uint32) * np.uint32(0x9E3779B9) + k0)
    x = mix(x ^ k1)
    return mix(x + k0)


def test_bits_equal_a_numpy_recomputation():
  key = jax.random.fold_in(jax.random.PRNGKey(3), 7)
  np.testing.assert_array_equal(np.asarray(_hash_random.bits(key, [4, 1000])).ravel(),
                                numpy_bits(key, 4000))
  u = np.asarray(_hash_random.uniform(key, [4000]))
  np.testing.assert_array_equal(
      u, (numpy_bits(key, 4000) >> np.uint32(9)).astype(np.float32) / np.float32(2**23))


def test_uniforms_are_uniform_and_uncorrelated():
  key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
  a = np.asarray(_hash_random.uniform(key_a, [N]), np.float64)
  b = np.asarray(_hash_random.uniform(key_b, [N]), np.float64)
  c = np.asarray(_hash_random.uniform(jax.random.fold_in(key_a, 1), [N]), np.float64)
  se = 1 / np.sqrt(N)
  assert 0 <= a.min() and a.max() < 1
  assert abs(a.mean() - 0.5) < 5 * se * np.sqrt(1 / 12)
  assert abs(a.var() - 1 / 12) < 5 * se * np.sqrt(1 / 180)
  counts = np.bincount((a * 256).astype(int), minlength=256)
  chi2 = np.sum((counts - N / 256) ** 2 / (N / 256))  # 255 degrees of freedom: 255 +- 22.6.
  assert chi2 < 255 + 5 * np.sqrt(2 * 255)
  for x, y in ((a[:-1], a[1:]), (a, b), (a, c)):  # Neighbours, other keys, a folded key.
    assert abs(np.corrcoef(x, y)[0, 1]) < 5 * se
  words = np.asarray(_hash_random.bits(key_a, [N]))
  ones = np.array([np.mean((words >> np.uint32(i)) & np.uint32(1)) for i in range(32)])
  assert np.all(np.abs(ones - 0.5) < 5 * 0.5 * se)


def test_a_draw_depends_on_its_key_and_index_only():
  keys = jax.random.split(jax.random.PRNGKey(1), 5)
  batched = jax.vmap(lambda k: _hash_random.uniform(k, [3, 7]))(keys)
  for k, row in zip(keys, batched):
    np.testing.assert_array_equal(row, _hash_random.uniform(k, [3, 7]))
