"""`PrivacyAccountant`: the (epsilon, delta) a training run has spent, one round at a time.

One round releases the same `DpEvent` every round (the aggregator's mechanism amplified by the
sampling), so epsilon after T rounds is a function of T alone, computed by `dp_accounting`:
RDP keeps one round's Renyi curve and scales it by T (constant cost per round); PLD convolves
the privacy loss distribution of T - 1 rounds with one round's (Poisson-sampled Gaussian) or
uses the closed form of T Gaussians (full participation).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import numpy as np

from federax._checks import check_int
from federax.aggregators.factory import AggregationFactory
from federax.core.errors import error
from federax.privacy._dp import dp_accounting
from federax.privacy.events import Sampling, check_noise, dp_event_of, effective_gaussian

__all__ = ["PrivacyAccountant", "ACCOUNTANTS", "default_delta"]

ACCOUNTANTS = ("rdp", "pld")
_NAME = "fx.privacy.PrivacyAccountant"
PLD_DISCRETIZATION = 1e-4  # dp_accounting's PLDAccountant default.


def default_delta(population: int) -> float:
  """`1 / N^1.1`: a delta somewhat below one over the number of clients (TFF's advice)."""
  return 1.0 / population**1.1


class PrivacyAccountant:
  """The user-level (epsilon, delta) spent by DP training, composed one round at a time.

  Built from one round's `DpEvent` (the aggregator's: `fx.privacy.dp_event_of(factory)`) and
  the sampling that happens each round: a `fx.simulation.PoissonSampler` (the event becomes
  `PoissonSampledDpEvent(rate, event)`), a `UniformSampler` without replacement
  (`SampledWithoutReplacementDpEvent(population, cohort, event)`, accounted for replace-one
  neighbors), None for every client every round (with `population`), or a
  `fx.privacy.Sampling`. `epsilon` is for this accountant's `delta`.

  The state is the number of rounds composed (`rounds`): `compose()` adds one round,
  `restore(k)` sets it to k rounds at once (as a resumed run does), and both give the same
  epsilon. `fx.program.run_training_process(..., privacy_accountant=...)` uses it to report
  `privacy/epsilon` and `privacy/delta` each round and to stop before `target_epsilon` would be
  exceeded.

  Args:
    dp_event: one round of the aggregator's mechanism, a `dp_accounting.DpEvent`.
    sampling: a `PoissonSampler`, a `UniformSampler` (without replacement), a `Sampling`, or
      None for full participation (then `population` is required).
    accountant: 'rdp' (`dp_accounting.rdp.RdpAccountant`, its default orders 1.1 to 1024, as
      TFF's tutorial) or 'pld' (`dp_accounting.pld.PLDAccountant`, tighter, slower).
    delta: the delta epsilon is reported for, in (0, 1); default `1 / N^1.1`.
    target_epsilon: the budget: training stops before the round that would exceed it.
    population: the number of clients, with `sampling=None`.

  Raises:
    ValueError: a delta outside (0, 1), an unknown accountant, a target epsilon that the first
      round already exceeds, an event the accountant does not support with this sampling.
    TypeError: an unknown sampler or a `dp_event` that is not a `DpEvent`.

  Example:
    >>> import dp_accounting
    >>> accountant = fx.privacy.PrivacyAccountant(
    ...     dp_accounting.GaussianDpEvent(1.2), fx.privacy.Sampling.poisson(120 / 3383, 3383),
    ...     delta=1e-5)
    >>> round(accountant.compose(100).epsilon, 3)  # TFF's tutorial: (2, 1e-5)-DP or better
    1.986
  """

  def __init__(self, dp_event: Any, sampling: Any = None, *, accountant: str = "rdp",
               delta: Optional[float] = None, target_epsilon: Optional[float] = None,
               population: Optional[int] = None):
    dp = dp_accounting(_NAME)
    if accountant not in ACCOUNTANTS:
      raise error(ValueError, _NAME, "unknown accountant.", expected="'rdp' or 'pld'",
                  actual=repr(accountant))
    self._sampling = Sampling.of(sampling, population)
    if delta is None:
      delta = default_delta(self._sampling.population)
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not 0 < delta < 1:
      raise error(ValueError, _NAME, "delta must be in (0, 1): a delta of 1 or more promises "
                  "nothing.", expected="0 < delta < 1 (e.g. 1 / N^1.1)", actual=repr(delta))
    self._delta = float(delta)
    self._kind = accountant
    self._event = self._sampling.round_event(dp_event)
    check_noise(self._event, _NAME)
    self._composer = (_Rdp(dp, self._event, self._sampling) if accountant == "rdp"
                      else _Pld(dp, self._event, self._sampling))
    self._rounds = 0
    self._target = None
    if target_epsilon is not None:
      if (isinstance(target_epsilon, bool) or not isinstance(target_epsilon, numbers.Real)
          or not target_epsilon > 0):
        raise error(ValueError, _NAME, "target_epsilon must be a positive number.",
                    actual=repr(target_epsilon))
      first = self.epsilon_after(1)
      if first > target_epsilon:
        raise error(ValueError, _NAME, "the target epsilon cannot be reached: one round "
                    "already spends more.", expected=f"epsilon <= {target_epsilon}",
                    actual=f"epsilon {first:.4g} after 1 round (delta {self._delta:.3g})",
                    hint="raise the noise multiplier or lower the sampling rate "
                    "(fx.privacy.calibrate finds them)")
      self._target = float(target_epsilon)

  @classmethod
  def from_factory(cls, factory: AggregationFactory, sampling: Any = None,
                   **kwargs: Any) -> PrivacyAccountant:
    """The accountant of training aggregated by `factory` (`fx.privacy.dp_event_of`).

    Example:
      >>> sampler = fx.simulation.PoissonSampler([str(i) for i in range(1000)], 0.05, seed=0)
      >>> factory = fx.learning.dp_aggregator(noise_multiplier=1.0, clients_per_round=50)
      >>> accountant = fx.privacy.PrivacyAccountant.from_factory(factory, sampler)
      >>> accountant.delta == 1000**-1.1, accountant.rounds
      (True, 0)
    """
    return cls(dp_event_of(factory), sampling, **kwargs)

  def __repr__(self) -> str:
    return (f"PrivacyAccountant({self._kind}, {self._sampling.describe()}, rounds="
            f"{self._rounds}, epsilon={self.epsilon:.4g}, delta={self._delta:.3g})")

  @property
  def sampling(self) -> Sampling:
    return self._sampling

  @property
  def accountant(self) -> str:
    """'rdp' or 'pld'."""
    return self._kind

  @property
  def dp_event(self) -> Any:
    """One round's event, sampling included (what is composed each round)."""
    return self._event

  @property
  def delta(self) -> float:
    return self._delta

  @property
  def target_epsilon(self) -> Optional[float]:
    return self._target

  @property
  def rounds(self) -> int:
    """The number of rounds composed: the accountant's whole state."""
    return self._rounds

  @property
  def epsilon(self) -> float:
    """The epsilon spent by the rounds composed, at `delta` (inf without noise)."""
    return self.epsilon_after(self._rounds)

  def epsilon_after(self, rounds: int) -> float:
    """The epsilon at `delta` after `rounds` rounds in all (a function of `rounds` alone)."""
    rounds = check_int(rounds, f"{_NAME}.epsilon_after(rounds=...)", minimum=0)
    return 0.0 if rounds == 0 else self._composer.epsilon(rounds, self._delta)

  def compose(self, rounds: int = 1) -> PrivacyAccountant:
    """Adds `rounds` rounds (default one); returns the accountant."""
    rounds = check_int(rounds, f"{_NAME}.compose(rounds=...)", minimum=0)
    self._rounds += rounds
    return self

  def restore(self, rounds: int) -> PrivacyAccountant:
    """Sets the state to `rounds` rounds composed (a resumed run's completed rounds)."""
    self._rounds = check_int(rounds, f"{_NAME}.restore(rounds=...)", minimum=0)
    return self

  def check_sampler(self, sampler: Any) -> None:
    """Raises unless `sampler` draws cohorts as this accountant assumes.

    `sampler` is the training's: a `PoissonSampler`, a `UniformSampler`, or None (every
    client, in order). Its kind, rate, cohort and population must match.

    Raises:
      ValueError: another kind of sampling, or other parameters.
      TypeError: an object whose sampling is not known.
    """
    population = self._sampling.population if sampler is None else None
    actual = Sampling.of(sampler, population)
    if actual.same_as(self._sampling):
      return
    why = ("its epsilon would not hold: amplification by sampling depends on how cohorts are "
           "drawn" if actual.kind != self._sampling.kind else "the rate, cohort or population "
           "differ")
    raise error(ValueError, f"{_NAME}.check_sampler", "the accounting assumes another sampling "
                f"than the training does: {why}.", expected=self._sampling.describe(),
                actual=actual.describe(), hint="build the accountant from the sampler in use: "
                "PrivacyAccountant(dp_event, sampler)")


class _Rdp:
  """RDP: one round's Renyi curve, computed once; T rounds are T times it (additivity)."""

  def __init__(self, dp: Any, event: Any, sampling: Sampling):
    self._dp = dp
    self._orders = tuple(dp.rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS)
    self._relation = sampling.neighboring_relation()
    self._event = event
    gaussian = effective_gaussian(event)
    # No noise: no finite epsilon (dp_accounting divides by the noise multiplier).
    self._noiseless = gaussian is not None and gaussian[0] == 0 and gaussian[1] > 0
    self._curve = None
    if self._noiseless:
      return
    one = self._new()
    _compose(one, event)
    # dp_accounting has no public getter for the curve; without `_rdp` (a future version),
    # each epsilon composes T rounds afresh (the same figure, at 65 ms).
    curve = getattr(one, "_rdp", None)
    self._curve = (np.array(curve, dtype=np.float64)
                   if curve is not None and len(curve) == len(self._orders) else None)

  def _new(self) -> Any:
    return self._dp.rdp.RdpAccountant(self._orders, neighboring_relation=self._relation)

  def epsilon(self, rounds: int, delta: float) -> float:
    if self._noiseless:
      return math.inf
    if self._curve is None:
      return float(self._new().compose(self._event, rounds).get_epsilon(delta))
    return float(self._dp.rdp.compute_epsilon(self._orders, rounds * self._curve, delta)[0])


class _Pld:
  """PLD: T rounds of a Poisson-sampled Gaussian compose the distribution of T - 1 rounds with
  one round's (the latest two kept, so each round costs one convolution); a Gaussian without
  sampling has a closed form (one Gaussian of `z / sqrt(T)`); other events go through
  `PLDAccountant` composed T times."""

  def __init__(self, dp: Any, event: Any, sampling: Sampling):
    self._dp = dp
    self._relation = sampling.neighboring_relation()
    self._event = event
    self._gaussian = effective_gaussian(event)
    accountant = dp.pld.PLDAccountant(self._relation, PLD_DISCRETIZATION)
    if self._gaussian is None and not accountant.supports(event):
      hint = ("sample with PoissonSampler, or use accountant='rdp'" if sampling.kind == "uniform"
              else "use accountant='rdp'")
      raise error(ValueError, _NAME, "dp_accounting's PLD accountant does not support this "
                  "round's event.", actual=repr(event)[:200], hint=hint)
    self._one = None  # One round's distribution, for a Poisson-sampled Gaussian.
    if self._gaussian is not None and 0 < self._gaussian[0] < math.inf and (
        0 < self._gaussian[1] < 1):
      z, rate = self._gaussian
      self._one = dp.pld.privacy_loss_distribution.from_gaussian_mechanism(
          standard_deviation=z, sampling_prob=rate, neighboring_relation=self._relation,
          value_discretization_interval=PLD_DISCRETIZATION)
    self._plds: dict[int, Any] = {}
    self._epsilons: dict[tuple[int, float], float] = {}

  def epsilon(self, rounds: int, delta: float) -> float:
    key = (rounds, delta)
    if key not in self._epsilons:
      if len(self._epsilons) > 8:
        self._epsilons.clear()
      self._epsilons[key] = self._compute(rounds, delta)
    return self._epsilons[key]

  def _compute(self, rounds: int, delta: float) -> float:
    pld_module = self._dp.pld.privacy_loss_distribution
    if self._gaussian is None:
      accountant = self._dp.pld.PLDAccountant(self._relation, PLD_DISCRETIZATION)
      return float(accountant.compose(self._event, rounds).get_epsilon(delta))
    z, rate = self._gaussian
    if z == 0:
      return math.inf
    if math.isinf(z) or rate == 0:
      return 0.0
    if rate == 1:
      return float(pld_module.from_gaussian_mechanism(
          standard_deviation=z / math.sqrt(rounds), neighboring_relation=self._relation,
          value_discretization_interval=PLD_DISCRETIZATION).get_epsilon_for_delta(delta))
    return float(self._composed(rounds).get_epsilon_for_delta(delta))

  def _composed(self, rounds: int) -> Any:
    if rounds not in self._plds:
      if rounds == 1:
        pld = self._one
      elif rounds - 1 in self._plds:  # The next round: one convolution.
        pld = self._plds[rounds - 1].compose(self._one)
      else:  # A jump (a resumed run): T rounds at once.
        pld = self._one.self_compose(rounds)
      self._plds = {k: v for k, v in self._plds.items() if k == rounds - 1}
      self._plds[rounds] = pld
    return self._plds[rounds]


def _compose(accountant: Any, event: Any) -> None:
  """`accountant.compose(event)`, its unsupported-event error restated."""
  if not accountant.supports(event):
    raise error(ValueError, _NAME, "dp_accounting's RDP accountant does not support this "
                "round's event with this sampling.", actual=repr(event)[:200],
                hint="sample with PoissonSampler (fx.privacy.Sampling.poisson)")
  accountant.compose(event)
