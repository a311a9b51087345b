"""`calibrate`: the noise multiplier or the cohort size that meets a target (epsilon, delta)."""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple, Optional

from federax._checks import check_int
from federax.core.errors import error
from federax.privacy._dp import dp_accounting
from federax.privacy.accountant import ACCOUNTANTS, PLD_DISCRETIZATION, default_delta
from federax.privacy.events import Sampling

__all__ = ["Calibration", "calibrate"]

_NAME = "fx.privacy.calibrate"


class Calibration(NamedTuple):
  """What `calibrate` found: a noise multiplier and a cohort meeting (epsilon, delta).

  Attributes:
    noise_multiplier: z, the Gaussian noise's standard deviation over the clip.
    clients_per_round: the (expected) cohort size.
    sampling_rate: `clients_per_round / population`, a Poisson sampler's rate.
    epsilon: the epsilon those spend in `rounds` rounds, at most the target.
    delta: the delta it is for.
    rounds: the number of rounds.
    population: the number of clients.
  """

  noise_multiplier: float
  clients_per_round: float
  sampling_rate: float
  epsilon: float
  delta: float
  rounds: int
  population: int


def calibrate(target_epsilon: float, target_delta: Optional[float] = None, *, rounds: int,
              population: int, noise_multiplier: Optional[float] = None,
              clients_per_round: Optional[int] = None,
              noise_to_clients_ratio: Optional[float] = None, sampling: str = "poisson",
              accountant: str = "rdp", tol: Optional[float] = None) -> Calibration:
  """Finds the noise multiplier, or the cohort size, for a target (epsilon, delta).

  Exactly one quantity is left out and found, by `dp_accounting.calibrate_dp_mechanism` on the
  events a `PrivacyAccountant` composes (`rounds` rounds of a Gaussian mechanism amplified by
  `sampling`):

  - `noise_multiplier=None`: the smallest z for `clients_per_round` clients;
  - `clients_per_round=None` with `noise_multiplier`: the largest cohort that z allows;
  - `clients_per_round=None` with `noise_to_clients_ratio` r: the smallest cohort k with
    z = r * k, a fixed noise on the average update (TFF's tutorial: r = 0.01).

  Adaptive clipping (`dp_aggregator`) costs what a fixed clip of the same total
  `noise_multiplier` does: its values and noised count together are one Gaussian of z.

  Args:
    target_epsilon: epsilon > 0.
    target_delta: delta in (0, 1); default `1 / population^1.1`.
    rounds: training rounds, >= 1.
    population: the number of clients N.
    noise_multiplier: z >= 0, or None to find it.
    clients_per_round: the (expected) cohort, an int in [1, N], or None to find it.
    noise_to_clients_ratio: z / clients_per_round, with `clients_per_round=None`.
    sampling: 'poisson' (rate k / N), 'uniform' (k clients without replacement) or 'full'.
    accountant: 'rdp' or 'pld'.
    tol: the search's tolerance on z (default 1e-6; a cohort is exact).

  Returns:
    A `Calibration`.

  Raises:
    ValueError: a target that cannot be reached (e.g. in so many rounds), a delta outside
      (0, 1), not exactly one quantity left to find, an argument out of range.

  Example:
    >>> found = fx.privacy.calibrate(2.0, 1e-5, rounds=100, population=3383,
    ...                              noise_to_clients_ratio=0.01)
    >>> found.clients_per_round, round(found.noise_multiplier, 2)  # TFF's tutorial's answer
    (120, 1.2)
  """
  dp = dp_accounting(_NAME)
  n = check_int(population, f"{_NAME}(population=...)", minimum=1)
  rounds = check_int(rounds, f"{_NAME}(rounds=...)", minimum=1)
  if not _positive(target_epsilon):
    raise error(ValueError, _NAME, "target_epsilon must be a positive number.",
                actual=repr(target_epsilon))
  delta = default_delta(n) if target_delta is None else target_delta
  if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not 0 < delta < 1:
    raise error(ValueError, _NAME, "target_delta must be in (0, 1).",
                expected="0 < delta < 1 (e.g. 1 / N^1.1)", actual=repr(target_delta))
  if accountant not in ACCOUNTANTS:
    raise error(ValueError, _NAME, "unknown accountant.", expected="'rdp' or 'pld'",
                actual=repr(accountant))
  if sampling not in ("poisson", "uniform", "full"):
    raise error(ValueError, _NAME, "unknown sampling.", expected="'poisson', 'uniform' or "
                "'full'", actual=repr(sampling))
  if sampling == "full":
    if clients_per_round not in (None, n):
      raise error(ValueError, _NAME, "with sampling='full' every client takes part.",
                  expected=f"clients_per_round None or {n}", actual=repr(clients_per_round))
    clients_per_round = n
  if noise_to_clients_ratio is not None:
    if noise_multiplier is not None or clients_per_round is not None:
      raise error(ValueError, _NAME, "with noise_to_clients_ratio, calibrate finds the cohort "
                  "and its noise multiplier: leave both out.",
                  actual=f"noise_multiplier {noise_multiplier}, clients_per_round "
                  f"{clients_per_round}")
  elif (noise_multiplier is None) == (clients_per_round is None):
    raise error(ValueError, _NAME, "leave exactly one of noise_multiplier and "
                "clients_per_round out (None): it is what calibrate finds.",
                actual="both left out" if noise_multiplier is None else "both given",
                hint="e.g. calibrate(2.0, 1e-5, rounds=100, population=3383, "
                "clients_per_round=120)")
  for name, value in (("noise_multiplier", noise_multiplier),
                      ("noise_to_clients_ratio", noise_to_clients_ratio)):
    if value is not None and not _positive(value, allow_zero=name == "noise_multiplier"):
      raise error(ValueError, _NAME, f"{name} must be a number >= 0.", actual=repr(value))
  if clients_per_round is not None:
    clients_per_round = check_int(clients_per_round, f"{_NAME}(clients_per_round=...)",
                                  minimum=1)
    if clients_per_round > n:
      raise error(ValueError, _NAME, "clients_per_round exceeds the population.",
                  expected=f"<= {n}", actual=clients_per_round)

  search = _Search(dp, float(target_epsilon), float(delta), rounds, n, sampling, accountant)
  if noise_to_clients_ratio is not None:
    ratio = float(noise_to_clients_ratio)
    k = search.cohort(lambda k: search.event(ratio * k, k), larger_is_private=True,
                      what=f"noise_multiplier = {ratio:g} * clients_per_round")
    return search.result(ratio * k, k)
  if noise_multiplier is None:
    try:
      z = dp.calibrate_dp_mechanism(search.fresh_accountant,
                                    lambda z: search.event(z, clients_per_round),
                                    search.target, search.delta, tol=tol)
    except dp.mechanism_calibration.NoBracketIntervalFoundError:
      raise error(ValueError, _NAME, f"the target cannot be reached in {rounds} rounds with "
                  f"{clients_per_round} clients per round: no noise multiplier up to 2^30 "
                  "meets it.", expected=f"epsilon <= {target_epsilon:g}",
                  hint="train fewer rounds or sample fewer clients") from None
    return search.result(float(z), clients_per_round)
  z = float(noise_multiplier)
  k = search.cohort(lambda k: search.event(z, k), larger_is_private=False,
                    what=f"noise_multiplier {z:g}")
  return search.result(z, k)


class _Search:
  """The events and fresh accountants of one calibration."""

  def __init__(self, dp: Any, target: float, delta: float, rounds: int, population: int,
               sampling: str, accountant: str):
    self.dp, self.target, self.delta, self.rounds = dp, target, delta, rounds
    self.population, self.sampling, self.kind = population, sampling, accountant
    self._relation = Sampling(sampling, population, population).neighboring_relation()
    if accountant == "pld" and sampling == "uniform":
      raise error(ValueError, _NAME, "dp_accounting's PLD accountant does not support "
                  "fixed-size (uniform) sampling.", hint="sampling='poisson' or accountant='rdp'")

  def _sampling(self, k: int) -> Sampling:
    if self.sampling == "poisson":
      return Sampling.poisson(k / self.population, self.population)
    if self.sampling == "uniform":
      return Sampling.uniform(int(k), self.population)
    return Sampling.full(self.population)

  def fresh_accountant(self) -> Any:
    if self.kind == "rdp":
      return self.dp.rdp.RdpAccountant(neighboring_relation=self._relation)
    return self.dp.pld.PLDAccountant(self._relation, PLD_DISCRETIZATION)

  def event(self, z: float, k: int) -> Any:
    one_round = self._sampling(k).round_event(self.dp.GaussianDpEvent(z))
    return self.dp.SelfComposedDpEvent(one_round, self.rounds)

  def epsilon(self, event: Any) -> float:
    return float(self.fresh_accountant().compose(event).get_epsilon(self.delta))

  def cohort(self, event_of: Any, larger_is_private: bool, what: str) -> int:
    """The best cohort in [1, N]: the smallest private one if larger is more private, else
    the largest."""
    n = self.population
    best, worst = (n, 1) if larger_is_private else (1, n)
    if self.epsilon(event_of(worst)) <= self.target:
      return worst
    reached = self.epsilon(event_of(best))
    if reached > self.target:
      raise error(ValueError, _NAME, f"the target cannot be reached in {self.rounds} rounds "
                  f"with {what}.", expected=f"epsilon <= {self.target:g} at delta "
                  f"{self.delta:.3g}", actual=f"epsilon {reached:.4g} even with "
                  f"{best} client{'s' if best > 1 else ''} per round",
                  hint="train fewer rounds, add noise, or sample from a larger population")
    return int(self.dp.calibrate_dp_mechanism(
        self.fresh_accountant, lambda k: event_of(int(k)), self.target, self.delta,
        self.dp.ExplicitBracketInterval(1, n), discrete=True))

  def result(self, z: float, k: int) -> Calibration:
    epsilon = self.epsilon(self.event(z, k))
    if epsilon > self.target * (1 + 1e-9):
      raise error(ValueError, _NAME, "the search found no parameter meeting the target.",
                  expected=f"epsilon <= {self.target:g}", actual=f"epsilon {epsilon:.4g}")
    return Calibration(noise_multiplier=z, clients_per_round=k,
                       sampling_rate=k / self.population, epsilon=epsilon, delta=self.delta,
                       rounds=self.rounds, population=self.population)


def _positive(value: Any, allow_zero: bool = False) -> bool:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    return False
  return math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
