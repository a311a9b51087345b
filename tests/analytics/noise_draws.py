"""Draws of a hierarchical histogram's DP noise: 1,000 rounds at once, the process's `next`
vmapped over a seed axis of states, and the checks every mechanism's draws must pass."""

import functools
import math

import jax
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
