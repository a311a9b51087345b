"""LocalDpFactory and fx.learning.local_dp_aggregator: the clipped mean without noise, the noise
of the mean over a seed axis against zC/sqrt(n), the clients' keys, both runtimes, the event,
misuse."""

import collections
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.aggregators import quantile_estimation as qe

LDP = fx.aggregators.LocalDpFactory
STRUCT = fx.to_type(collections.OrderedDict(a=(np.float32, [3]), b=(np.float32, [2, 2])))


def struct_values(rng, n):
  scales = [0.1, 0.5, 3.0, 1e3]
  return [collections.OrderedDict(a=(rng.normal(size=3) * scales[i % 4]).astype(np.float32),
                                  b=(rng.normal(size=(2, 2)) * scales[i % 4]).astype(np.float32))
          for i in range(n)]


def np_clipped_mean(values, clip):
  total = collections.OrderedDict(a=np.zeros(3), b=np.zeros((2, 2)))
  for v in values:
    a, b = np.asarray(v["a"], np.float64), np.asarray(v["b"], np.float64)
    scale = min(1.0, clip / math.sqrt(np.sum(a * a) + np.sum(b * b)))
    total["a"] += a * scale
    total["b"] += b * scale
  return {k: x / len(values) for k, x in total.items()}


def test_zero_noise_is_the_clipped_mean(runtime):
  rng = np.random.default_rng(0)
  process = fx.learning.local_dp_aggregator(0.0, 1.5, seed=1).create(STRUCT)
  state = process.initialize()
  for n in (5, 3):  # the mean over the clients present
    values = struct_values(rng, n)
    output = process.next(state, values)
    state = output.state
    expected = np_clipped_mean(values, 1.5)
    np.testing.assert_allclose(output.result["a"], expected["a"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(output.result["b"], expected["b"], rtol=1e-5, atol=1e-7)
  assert output.measurements == collections.OrderedDict(
      local_dp=collections.OrderedDict(mean_value=(), mean_count=()))


def test_noise_of_the_mean_over_1e5_seeds_has_stddev_z_c_over_sqrt_n():
  """`jax.vmap` over the state's key: 10^5 runs of two rounds, in one program."""
  z, clip, n, seeds = 1.5, 0.8, 5, 100_000
  process = LDP(z, clip, seed=0).create(fx.TensorType(np.float32, [2]))
  values = [np.full(2, 0.1, np.float32)] * n  # norm < clip: the mean is 0.1 plus noise
  with fx.runtime.vectorized():
    initial = process.initialize()

    def two_rounds(key):
      state = dict(initial, noise_key=key)
      first = process.next(state, values)
      second = process.next(first.state, values)
      return jnp.concatenate([first.result, second.result])

    noise = np.asarray(jax.jit(jax.vmap(two_rounds))(
        jax.random.split(jax.random.PRNGKey(3), seeds)), np.float64) - 0.1
  sigma = z * clip / math.sqrt(n)
  np.testing.assert_allclose(np.std(noise, axis=0) / sigma, 1.0, atol=0.01)
  np.testing.assert_allclose(np.mean(noise, axis=0), 0.0, atol=5 * sigma / math.sqrt(seeds))
  # 2 coordinates x 2 rounds: pairwise uncorrelated.
  assert np.max(np.abs(np.corrcoef(noise, rowvar=False) - np.eye(4))) < 0.02


def test_each_client_draws_from_its_own_key():
  """Client `i` adds `normal(fold_in(fold_in(round_key, i), tensor)) * z C`, the round key the
  first split of `fold_in(PRNGKey(seed), crc32('LocalDpFactory'))`."""
  z, clip, seed = 2.0, 1.0, 5
  process = LDP(z, clip, fx.aggregators.SumFactory(), seed=seed).create(
      fx.TensorType(np.float32, [3]))
  result = process.next(process.initialize(), [np.zeros(3, np.float32)] * 4).result
  _, round_key = jax.random.split(qe.seeded_key(seed, "LocalDpFactory"))
  expected = sum(np.asarray(jax.random.normal(
      jax.random.fold_in(jax.random.fold_in(round_key, i), 0), (3,)) * np.float32(z * clip))
                 for i in range(4))
  np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_the_same_seed_gives_bit_identical_noise_on_both_runtimes():
  # Zero values: the results are the clients' noise alone, summed in client order on both
  # runtimes (see test_differential_privacy).
  zeros = collections.OrderedDict(a=np.zeros(3, np.float32), b=np.zeros((2, 2), np.float32))
  results = {}
  for name in ("vectorized", "sequential"):
    with getattr(fx.runtime, name)():
      process = LDP(1.0, 2.0, fx.aggregators.SumFactory(), seed=4).create(STRUCT)
      state, results[name] = process.initialize(), []
      for _ in range(2):
        output = process.next(state, [zeros] * 4)
        state, results[name] = output.state, results[name] + [output.result]
  for rv, rs in zip(results["vectorized"], results["sequential"]):
    for key in ("a", "b"):
      np.testing.assert_array_equal(rv[key], rs[key])
  assert not np.array_equal(results["vectorized"][0]["a"], results["vectorized"][1]["a"])


def test_dp_event_is_a_gaussian_over_the_clip_balls_diameter():
  dp_accounting = pytest.importorskip("dp_accounting")
  # Two values of norm <= C differ by up to 2C: noise z C over sensitivity 2C.
  assert LDP(1.6, 0.5).dp_event() == dp_accounting.GaussianDpEvent(0.8)


@pytest.mark.parametrize("make, exception, words", [
    (lambda: LDP(-1.0, 1.0), ValueError, ["noise_multiplier", ">= 0"]),
    (lambda: LDP(1.0, 0.0), ValueError, ["clip must be", "> 0"]),
    (lambda: LDP(1.0, 1.0, seed="0"), TypeError, ["seed must be an int"]),
    (lambda: LDP(1.0, 1.0, fx.aggregators.MeanFactory()).create(
        fx.TensorType(np.float32), fx.TensorType(np.float32)), TypeError,
     ["weighted", "unnoised"]),
    (lambda: LDP(1.0, 1.0, "mean"), TypeError, ["inner_agg_factory must be an aggregation"]),
    (lambda: LDP(1.0, 1.0).create(fx.TensorType(np.int32, [2])), TypeError,
     ["floating point"]),
])
def test_misuse_is_a_clear_error(make, exception, words):
  with pytest.raises(exception) as info:
    make()
  for word in words:
    assert word in str(info.value), (word, str(info.value))
  assert re.search(r"at .*test_local_dp\.py:\d+", str(info.value))
