"""Client sampling: seeded cohorts per round (uniform, with or without replacement, and Poisson).

Each sampler's cohort for round r depends only on `(seed, r)`: the round's generator is
`np.random.default_rng(np.random.SeedSequence([seed, r]))`. So a resumed run samples the same
cohorts without replaying earlier rounds, and rounds are independent of each other.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Optional, TypeVar

import numpy as np

__all__ = ["UniformSampler", "PoissonSampler", "build_uniform_sampling_fn",
           "build_uniform_client_sampling_fn"]

T = TypeVar("T")


def _seed(seed: Optional[int], what: str) -> int:
  if seed is None:  # Drawn once, so the sampler stays a pure function of the round.
    return int(np.random.SeedSequence().entropy)
  if int(seed) < 0:
    raise ValueError(f"{what} expects a non-negative int seed, got {seed}.")
  return int(seed)


def _round_rng(seed: int, round_num: int) -> np.random.Generator:
  if int(round_num) < 0:
    raise ValueError(f"sample(round_num) expects round_num >= 0, got {round_num}.")
  return np.random.default_rng(np.random.SeedSequence([seed, int(round_num)]))


@dataclasses.dataclass(frozen=True)
class UniformSampler:
  """`clients_per_round` clients drawn uniformly each round.

  Args:
    client_ids: the population.
    clients_per_round: the cohort size.
    replace: whether a client may appear more than once in a cohort.
    seed: a non-negative int; `None` draws one at construction.

  Raises:
    ValueError: if the cohort is larger than the population without replacement, or < 1.

  Example:
    >>> sampler = UniformSampler(['a', 'b', 'c', 'd'], clients_per_round=2, seed=0)
    >>> sampler.sample(3) == sampler.sample(3)
    True
  """

  client_ids: Sequence[str]
  clients_per_round: int
  replace: bool = False
  seed: Optional[int] = None

  def __post_init__(self):
    object.__setattr__(self, "client_ids", tuple(self.client_ids))
    object.__setattr__(self, "seed", _seed(self.seed, "UniformSampler"))
    n, k = len(self.client_ids), self.clients_per_round
    if k < 1 or (not self.replace and k > n):
      raise ValueError(f"UniformSampler expects 1 <= clients_per_round"
                       f"{'' if self.replace else f' <= {n} (the number of clients)'} "
                       f"{'with' if self.replace else 'without'} replacement; got {k}.")

  def sample(self, round_num: int) -> list[str]:
    """The cohort of round `round_num` (a function of `(seed, round_num)` only)."""
    rng = _round_rng(self.seed, round_num)
    chosen = rng.choice(len(self.client_ids), self.clients_per_round, replace=self.replace)
    return [self.client_ids[i] for i in chosen]

  def cohorts(self, start_round: int = 0) -> Iterator[list[str]]:
    """The cohorts of rounds `start_round, start_round + 1, ...` (endless)."""
    yield from map(self.sample, itertools.count(start_round))

  def __iter__(self) -> Iterator[list[str]]:
    return self.cohorts(0)


@dataclasses.dataclass(frozen=True)
class PoissonSampler:
  """Each client joins each round independently with probability `rate` (Poisson sampling).

  The cohort size varies (Binomial(n, rate)) and may be empty; this is the sampling that
  DP-FedAvg's privacy accounting assumes (amplification by Poisson subsampling).

  Args:
    client_ids: the population.
    rate: the participation probability q, in (0, 1].
    seed: a non-negative int; `None` draws one at construction.

  Raises:
    ValueError: if rate is not in (0, 1].

  Example:
    >>> cohort = PoissonSampler([str(i) for i in range(1000)], rate=0.01, seed=0).sample(0)
  """

  client_ids: Sequence[str]
  rate: float
  seed: Optional[int] = None

  def __post_init__(self):
    object.__setattr__(self, "client_ids", tuple(self.client_ids))
    object.__setattr__(self, "seed", _seed(self.seed, "PoissonSampler"))
    if not 0.0 < self.rate <= 1.0:
      raise ValueError(f"PoissonSampler expects a rate in (0, 1], got {self.rate}.")

  def sample(self, round_num: int) -> list[str]:
    """The cohort of round `round_num`, in population order."""
    joined = _round_rng(self.seed, round_num).random(len(self.client_ids)) < self.rate
    return [self.client_ids[i] for i in np.flatnonzero(joined)]

  def cohorts(self, start_round: int = 0) -> Iterator[list[str]]:
    """The cohorts of rounds `start_round, start_round + 1, ...` (endless)."""
    yield from map(self.sample, itertools.count(start_round))

  def __iter__(self) -> Iterator[list[str]]:
    return self.cohorts(0)


def build_uniform_sampling_fn(sample_range: Sequence[T], replace: bool = False,
                              random_seed: Optional[int] = None) -> Callable[[int, int], list[T]]:
  """TFF's `tff.simulation.build_uniform_sampling_fn`: `fn(round_num, size) -> list`.

  With an int `random_seed` the sample depends only on `(random_seed, round_num, size)`; with
  `None` every call draws fresh randomness, as in TFF.

  Example:
    >>> fn = build_uniform_sampling_fn(range(100), random_seed=1)
    >>> fn(5, 10) == fn(5, 10)
    True
  """
  population = list(sample_range)

  def sample(round_num: int, size: int) -> list[T]:
    rng = np.random.default_rng() if random_seed is None else _round_rng(random_seed, round_num)
    if not replace and size > len(population):
      raise ValueError(f"Cannot sample {size} of {len(population)} elements without replacement.")
    return [population[i] for i in rng.choice(len(population), size, replace=replace)]

  return sample


def build_uniform_client_sampling_fn(dataset: Any, clients_per_round: int,
                                     random_seed: Optional[int] = None) -> Callable[[int], list[str]]:
  """TFF's `build_uniform_client_sampling_fn`: `fn(round_num) -> client ids` of a ClientData,
  without replacement within a round."""
  sample = build_uniform_sampling_fn(dataset.client_ids, replace=False, random_seed=random_seed)
  return lambda round_num: sample(round_num, clients_per_round)
