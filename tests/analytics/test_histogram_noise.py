"""The DP mechanisms' noise: its standard deviation is the mechanism's, within 2%, over 1,000
rounds drawn at once (the process's `next` vmapped over a seed axis of states)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx

SEEDS = 1000
NODES = 31  # 16 bins, arity 2: 5 layers.
# 10 clients, each with at most 3 records in [0, 1): clipping to 3 keeps every record, so the
# tree without noise is known exactly.
RECORDS = [np.random.default_rng(c).uniform(0, 1, size=c % 4).astype(np.float32)
           for c in range(10)]


def exact_tree():
  leaves = np.bincount(np.floor(np.concatenate(RECORDS) * 16).astype(int), minlength=16)
  return np.concatenate([leaves.reshape(2**layer, -1).sum(axis=1) for layer in range(5)])


def with_keys(state, key):
  """`state` with every key (sampling and noise) replaced by keys derived from `key`."""
  leaves, tree = jax.tree_util.tree_flatten(state)
  keyed = [jax.random.fold_in(key, i) if getattr(x, "dtype", None) == np.uint32
           and np.shape(x) == (2,) else x for i, x in enumerate(leaves)]
  return jax.tree_util.tree_unflatten(tree, keyed)


@functools.lru_cache(maxsize=None)
def histogram_process(dp_mechanism, noise_multiplier):
  # The central mechanism's sum is plain: the secure sums' range checks are host callbacks,
  # which vmap unrolls seed by seed (the noise is added after the sum either way).
  return fx.analytics.build_hierarchical_histogram_process(
      0.0, 1.0, 16, arity=2, max_records_per_user=3, dp_mechanism=dp_mechanism,
      noise_multiplier=noise_multiplier, expected_clients_per_round=len(RECORDS),
      enable_secure_sum=dp_mechanism != "central-gaussian", seed=0)


def noise_draws(dp_mechanism, noise_multiplier):
  """`[SEEDS, NODES]`: each seed's noised tree minus the exact tree, in one vmapped call."""
  process = histogram_process(dp_mechanism, noise_multiplier)
  state = process.initialize()
  states = jax.vmap(lambda key: with_keys(state, key))(
      jax.random.split(jax.random.PRNGKey(11), SEEDS))

  def tree(state):
    return process.next(state, RECORDS)[0].aggregated_hierarchical_histogram["flat_values"]

  trees = np.asarray(jax.jit(jax.vmap(tree))(states), np.float64)
  return trees - exact_tree()


def check_noise(errors, stddev):
  errors = np.asarray(errors, np.float64)
  assert errors.shape == (SEEDS, NODES)
  # 31,000 draws: the sample std is within 0.4% of the truth (one standard error).
  assert np.std(errors) == pytest.approx(stddev, rel=0.02)
  # Every node is noised alike (each within 12%: 1,000 draws, 2.2% standard error).
  np.testing.assert_allclose(np.std(errors, axis=0), stddev, rtol=0.12)
  # Unbiased: each node's mean error within 5 standard errors of 0.
  assert np.all(np.abs(np.mean(errors, axis=0)) < 5 * stddev / math.sqrt(SEEDS))
  # Independent across nodes (correlations of 1,000 draws have standard error 0.032).
  correlations = np.corrcoef(errors.T)[np.triu_indices(NODES, 1)]
  assert np.max(np.abs(correlations)) < 0.16


def test_central_gaussian_noise_has_the_mechanisms_stddev():
  # Sensitivity: 3 records, 5 layers, sub-sampling: 3 * sqrt(5) (TFF's L2 bound).
  check_noise(noise_draws("central-gaussian", 0.7), 0.7 * 3 * math.sqrt(5))


def test_distributed_discrete_gaussian_noise_has_the_mechanisms_stddev():
  # Each of the 10 clients adds discrete Gaussian noise of scale ceil(z * C / sqrt(10)).
  scale = math.ceil(1.5 * 3 * math.sqrt(5) / math.sqrt(10))
  assert scale == 4
  errors = noise_draws("distributed-discrete-gaussian", 1.5)
  assert np.all(errors == np.round(errors))  # Integers: the sum is exact, modular.
  # A discrete Gaussian of scale 4 has variance 16 up to 1e-100; ten clients sum ten of them.
  check_noise(errors, 4 * math.sqrt(10))


def test_noise_differs_across_rounds_and_repeats_for_a_seed():
  process = histogram_process("central-gaussian", 0.7)
  state = process.initialize()
  first, _ = process.next(state, RECORDS)
  second, _ = process.next(first, RECORDS)
  again, _ = process.next(state, RECORDS)
  values = [np.asarray(s.aggregated_hierarchical_histogram["flat_values"])
            for s in (first, second, again)]
  assert not np.allclose(values[0], values[1])
  np.testing.assert_array_equal(values[0], values[2])
  with fx.runtime.sequential():  # The same keys draw the same noise on the other runtime.
    sequential, _ = process.next(state, RECORDS)
  np.testing.assert_allclose(sequential.aggregated_hierarchical_histogram["flat_values"],
                             values[0], rtol=1e-6)
