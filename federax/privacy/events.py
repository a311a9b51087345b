"""What one round releases, as a `dp_accounting.DpEvent`: the aggregator's mechanism
(`dp_event_of`) amplified by the way the round's clients are sampled (`Sampling`)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Optional

from federax.aggregators.factory import AggregationFactory
from federax.core.errors import error
from federax.program.sampling import PoissonSampler, UniformSampler
from federax.privacy._dp import dp_accounting

__all__ = ["Sampling", "dp_event_of"]

_KINDS = ("poisson", "uniform", "full")


def dp_event_of(factory: AggregationFactory) -> Any:
  """The `dp_accounting.DpEvent` one round of `factory`'s aggregation releases.

  A differentially private factory (`fx.aggregators.DifferentiallyPrivateFactory`) describes
  itself (`factory.dp_event()`); a factory wrapping one (`fx.learning.dp_aggregator`'s
  adaptive zeroing, `zeroing_factory`, `clipping_factory`, `add_measurements`) releases what
  the wrapped one does, since it only bounds or zeroes each client's value before the DP factory
  clips it. Not accounted, as in TFF: what a wrapper releases besides (the zeroing threshold,
  estimated without noise, and the count of zeroed clients).

  Args:
    factory: an aggregation factory with a DP factory inside.

  Returns:
    One round's event, before sampling (e.g. `GaussianDpEvent(noise_multiplier)`).

  Raises:
    TypeError: `factory` is not an aggregation factory.
    ValueError: no differentially private factory is found in it.

  Example:
    >>> event = fx.privacy.dp_event_of(fx.learning.dp_aggregator(1.0, clients_per_round=100))
    >>> type(event).__name__  # the values' Gaussian and the noised clipped count's
    'ComposedDpEvent'
  """
  where = "fx.privacy.dp_event_of"
  if not isinstance(factory, AggregationFactory):
    raise error(TypeError, where, "expects an aggregation factory.", actual=repr(factory),
                hint="e.g. fx.learning.dp_aggregator(noise_multiplier, clients_per_round)")
  current = factory
  while True:
    describe = getattr(current, "dp_event", None)
    if callable(describe):
      return describe()
    # Wrapping factories (zeroing, clipping, measurements) keep the factory they wrap as
    # `_inner`: the aggregators' convention, followed here rather than edited into each.
    inner = getattr(current, "_inner", None)
    if not isinstance(inner, AggregationFactory):
      raise error(ValueError, where, "the factory adds no differential privacy noise, so there "
                  "is nothing to account.", actual=repr(factory),
                  hint="aggregate with fx.learning.dp_aggregator(...) or fx.aggregators."
                  "DifferentiallyPrivateFactory.gaussian_fixed(...)")
    current = inner


@dataclasses.dataclass(frozen=True)
class Sampling:
  """How each round's cohort is drawn from the population, as the accounting assumes it.

  Build it with `Sampling.poisson(rate, population)` (each client joins each round
  independently with probability `rate`: `fx.simulation.PoissonSampler`),
  `Sampling.uniform(clients_per_round, population)` (a fixed-size cohort drawn uniformly
  without replacement: `fx.simulation.UniformSampler(..., replace=False)`),
  `Sampling.full(population)` (every client every round), or `Sampling.of(sampler)`.

  Attributes:
    kind: 'poisson', 'uniform' or 'full'.
    population: the number of clients N.
    clients_per_round: the (expected) cohort size: `rate * N` for Poisson sampling.

  Example:
    >>> sampling = fx.privacy.Sampling.poisson(rate=0.01, population=3383)
    >>> round(sampling.clients_per_round, 2), sampling.describe()
    (33.83, 'Poisson sampling at rate q = 0.01 of 3383 clients')
  """

  kind: str
  population: int
  clients_per_round: float

  def __post_init__(self):
    if self.kind not in _KINDS:
      raise error(ValueError, "fx.privacy.Sampling", "unknown kind of sampling.",
                  expected=" or ".join(map(repr, _KINDS)), actual=repr(self.kind))

  @classmethod
  def poisson(cls, rate: float, population: int) -> Sampling:
    """Each client joins each round independently with probability `rate` in (0, 1]."""
    where = "fx.privacy.Sampling.poisson"
    n = _population(where, population)
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 < rate <= 1:
      raise error(ValueError, where, "rate must be a probability in (0, 1].",
                  expected="0 < rate <= 1", actual=repr(rate))
    return cls("poisson", n, float(rate) * n)

  @classmethod
  def uniform(cls, clients_per_round: int, population: int) -> Sampling:
    """A cohort of `clients_per_round` distinct clients, drawn uniformly each round."""
    where = "fx.privacy.Sampling.uniform"
    n = _population(where, population)
    if (isinstance(clients_per_round, bool) or not isinstance(clients_per_round, numbers.Integral)
        or not 1 <= clients_per_round <= n):
      raise error(ValueError, where, "clients_per_round must be an int in [1, population].",
                  expected=f"1 <= clients_per_round <= {n}", actual=repr(clients_per_round))
    return cls("uniform", n, int(clients_per_round))

  @classmethod
  def full(cls, population: int) -> Sampling:
    """Every client takes part in every round."""
    n = _population("fx.privacy.Sampling.full", population)
    return cls("full", n, n)

  @classmethod
  def of(cls, sampler: Any, population: Optional[int] = None) -> Sampling:
    """The sampling `sampler` does: a `PoissonSampler`, a `UniformSampler` without
    replacement, None for every client (then `population` is required), or a `Sampling`.

    Raises:
      TypeError: an object whose sampling is not known.
      ValueError: a `UniformSampler` with replacement (no accountant covers it), or None
        without `population`.
    """
    where = "fx.privacy.Sampling.of"
    if isinstance(sampler, Sampling):
      return sampler
    if isinstance(sampler, PoissonSampler):
      return cls.poisson(sampler.rate, len(sampler.client_ids))
    if isinstance(sampler, UniformSampler):
      if sampler.replace:
        raise error(ValueError, where, "sampling with replacement cannot be accounted: "
                    "dp_accounting's accountants do not support it for these mechanisms.",
                    actual=repr(sampler)[:120], hint="sample with PoissonSampler (whose "
                    "amplification the accountants know) or UniformSampler(replace=False)")
      return cls.uniform(sampler.clients_per_round, len(sampler.client_ids))
    if sampler is None:
      if population is None:
        raise error(ValueError, where, "every-client participation (sampler None) needs the "
                    "population's size.", hint="pass population=N")
      return cls.full(population)
    raise error(TypeError, where, "cannot tell how this object samples clients.",
                expected="a PoissonSampler, a UniformSampler, None (every client) or a Sampling",
                actual=repr(sampler)[:120])

  @property
  def rate(self) -> float:
    """The probability that a given client takes part in a round."""
    return self.clients_per_round / self.population

  def describe(self) -> str:
    """One line for people: which sampling, at which rate, of how many clients."""
    if self.kind == "poisson":
      return f"Poisson sampling at rate q = {self.rate:.4g} of {self.population} clients"
    if self.kind == "uniform":
      return (f"uniform sampling of {int(self.clients_per_round)} of {self.population} "
              "clients without replacement")
    return f"every one of {self.population} clients in every round"

  def same_as(self, other: Sampling) -> bool:
    return (self.kind == other.kind and self.population == other.population
            and math.isclose(self.clients_per_round, other.clients_per_round, rel_tol=1e-9))

  def neighboring_relation(self) -> Any:
    """dp_accounting's neighboring relation: add-or-remove one client for Poisson sampling and
    full participation, replace one (the population size is public) for fixed-size cohorts."""
    dp = dp_accounting("fx.privacy.Sampling")
    return (dp.NeighboringRelation.REPLACE_ONE if self.kind == "uniform"
            else dp.NeighboringRelation.ADD_OR_REMOVE_ONE)

  def round_event(self, event: Any) -> Any:
    """What one round releases: the aggregator's `event` amplified by this sampling.

    Poisson: `PoissonSampledDpEvent(rate, event)`; uniform:
    `SampledWithoutReplacementDpEvent(population, clients_per_round, event')`, where `event'`
    is `event` restated for replace-one neighbors: replacing a client moves a clipped sum by up
    to twice the clip, so each Gaussian's noise multiplier is halved; full: `event` itself.

    Raises:
      TypeError: `event` is not a `DpEvent`.
      ValueError: uniform sampling of an event that is not built from Gaussians.
    """
    dp = dp_accounting("fx.privacy.Sampling")
    if not isinstance(event, dp.DpEvent):
      raise error(TypeError, "fx.privacy.Sampling.round_event", "expects a dp_accounting "
                  "DpEvent (one round of the aggregator's mechanism).", actual=repr(event)[:120],
                  hint="fx.privacy.dp_event_of(aggregation_factory)")
    if self.kind == "poisson":
      return dp.PoissonSampledDpEvent(self.rate, event)
    if self.kind == "uniform":
      return dp.SampledWithoutReplacementDpEvent(self.population, int(self.clients_per_round),
                                                 _replace_one(dp, event, event))
    return event


def check_noise(event: Any, where: str) -> None:
  """Raises for a negative noise multiplier anywhere in `event` (dp_accounting squares it)."""
  for part in _walk(event):
    z = getattr(part, "noise_multiplier", None)
    if isinstance(z, numbers.Real) and not z >= 0:
      raise error(ValueError, where, "the event has a negative noise multiplier: noise has a "
                  "nonnegative standard deviation.", actual=repr(part),
                  hint="noise_multiplier >= 0")


def _walk(event: Any):
  yield event
  for inner in list(getattr(event, "events", None) or ()) + [getattr(event, "event", None)]:
    if inner is not None:
      yield from _walk(inner)


def effective_gaussian(event: Any) -> Optional[tuple[float, float]]:
  """`(noise_multiplier, sampling rate)` of an event equivalent to one (Poisson-sampled)
  Gaussian mechanism, or None.

  Gaussians released together on the same clients are one Gaussian mechanism in more
  dimensions, with noise multiplier `(sum_i z_i^-2)^-1/2` (Mironov et al. 2019, section 3):
  how the adaptive clip's noised count joins the values' noise.
  """
  dp = dp_accounting("fx.privacy")
  rate = 1.0
  if isinstance(event, dp.PoissonSampledDpEvent):
    rate, event = float(event.sampling_probability), event.event
  precision = _precision(dp, event)
  if precision is None:
    return None
  return (math.inf if precision == 0 else precision**-0.5 if math.isfinite(precision)
          else 0.0), rate


def _precision(dp: Any, event: Any) -> Optional[float]:
  """`sum z_i^-2` over the Gaussians of `event` (inf for a noiseless one), or None."""
  if isinstance(event, dp.GaussianDpEvent):
    z = float(event.noise_multiplier)
    return math.inf if z == 0 else z**-2
  if isinstance(event, dp.SelfComposedDpEvent):
    inner = _precision(dp, event.event)
    return None if inner is None else inner * event.count
  if isinstance(event, dp.ComposedDpEvent):
    parts = [_precision(dp, e) for e in event.events]
    return None if any(p is None for p in parts) else sum(parts)
  return None


def _replace_one(dp: Any, event: Any, whole: Any) -> Any:
  if isinstance(event, dp.GaussianDpEvent):
    return dp.GaussianDpEvent(event.noise_multiplier / 2)
  if isinstance(event, dp.SelfComposedDpEvent):
    return dp.SelfComposedDpEvent(_replace_one(dp, event.event, whole), event.count)
  if isinstance(event, dp.ComposedDpEvent):
    return dp.ComposedDpEvent([_replace_one(dp, e, whole) for e in event.events])
  raise error(ValueError, "fx.privacy.Sampling.round_event", "fixed-size (uniform) sampling is "
              "accounted for replace-one neighbors, for which federax can restate only Gaussian "
              "mechanisms.", actual=repr(whole)[:200],
              hint="sample with fx.simulation.PoissonSampler and Sampling.poisson(...)")


def _population(where: str, population: Any) -> int:
  if (isinstance(population, bool) or not isinstance(population, numbers.Integral)
      or population < 1):
    raise error(ValueError, where, "population must be a positive int (the number of clients).",
                actual=repr(population))
  return int(population)
