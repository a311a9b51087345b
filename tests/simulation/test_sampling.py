"""Tests for client sampling: reproducible per (seed, round), and the right distributions."""

import numpy as np
import pytest

from federax.simulation import sampling
from federax.simulation.client_data import ClientData

IDS = [f"c{i}" for i in range(50)]


def test_uniform_is_a_function_of_seed_and_round():
  sampler = sampling.UniformSampler(IDS, 10, seed=4)
  assert sampler.sample(7) == sampling.UniformSampler(IDS, 10, seed=4).sample(7)
  assert sampler.sample(7) != sampler.sample(8)
  assert sampler.sample(7) != sampling.UniformSampler(IDS, 10, seed=5).sample(7)
  resumed = sampler.cohorts(start_round=3)
  assert [next(resumed) for _ in range(3)] == [sampler.sample(r) for r in (3, 4, 5)]
  first = iter(sampler)
  assert next(first) == sampler.sample(0)


def test_uniform_without_replacement_has_no_duplicates_and_uniform_frequencies():
  sampler = sampling.UniformSampler(IDS, 10, seed=0)
  counts = dict.fromkeys(IDS, 0)
  rounds = 2000
  for r in range(rounds):
    cohort = sampler.sample(r)
    assert len(set(cohort)) == 10 and set(cohort) <= set(IDS)
    for c in cohort:
      counts[c] += 1
  expected = rounds * 10 / len(IDS)
  chi2 = sum((k - expected) ** 2 / expected for k in counts.values())
  assert chi2 < 90  # chi-square, 49 dof: the 0.9995 quantile is about 90.


def test_uniform_with_replacement_can_repeat_and_exceed_the_population():
  sampler = sampling.UniformSampler(IDS[:3], 10, replace=True, seed=0)
  assert len(sampler.sample(0)) == 10 and len(set(sampler.sample(0))) <= 3


def test_poisson_rate_is_within_a_binomial_tolerance():
  sampler = sampling.PoissonSampler(IDS, rate=0.1, seed=1)
  rounds = 2000
  sizes = [len(sampler.sample(r)) for r in range(rounds)]
  total = rounds * len(IDS)
  assert abs(sum(sizes) / total - 0.1) < 5 * np.sqrt(0.1 * 0.9 / total)
  assert len(set(sizes)) > 3 and min(sizes) >= 0  # The cohort size varies.
  assert sampler.sample(11) == sampling.PoissonSampler(IDS, 0.1, seed=1).sample(11)
  assert sampling.PoissonSampler(IDS, 1.0, seed=0).sample(3) == IDS


def test_build_uniform_sampling_fn_matches_tff_signature():
  fn = sampling.build_uniform_sampling_fn(range(100), random_seed=1)
  assert fn(5, 10) == fn(5, 10) and fn(5, 10) != fn(6, 10) and len(set(fn(5, 10))) == 10
  cd = ClientData.from_dict({c: {'x': np.arange(2)} for c in IDS})
  client_fn = sampling.build_uniform_client_sampling_fn(cd, 5, random_seed=0)
  assert len(set(client_fn(2))) == 5 and client_fn(2) == client_fn(2)


def test_errors():
  with pytest.raises(ValueError, match=r"clients_per_round <= 50 \(the number of clients\) "
                     r"without replacement; got 51"):
    sampling.UniformSampler(IDS, 51)
  with pytest.raises(ValueError, match=r"rate in \(0, 1\], got 0"):
    sampling.PoissonSampler(IDS, 0)
  with pytest.raises(ValueError, match="non-negative int seed, got -1"):
    sampling.PoissonSampler(IDS, 0.5, seed=-1)
  with pytest.raises(ValueError, match="round_num >= 0, got -1"):
    sampling.UniformSampler(IDS, 2, seed=0).sample(-1)
  with pytest.raises(ValueError, match="Cannot sample 101 of 100 elements without replacement"):
    sampling.build_uniform_sampling_fn(range(100))(0, 101)
