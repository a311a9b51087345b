"""`federax train --dp-noise-multiplier ...`: a run's DP aggregator, Poisson sampler and privacy
accountant, and the (epsilon, delta) lines of its summary.

DP training is DP-FedAvg (McMahan et al. 2018) as TFF's tutorial runs it: each round every
client joins independently with probability q = clients_per_round / N (Poisson sampling), the
unweighted mean of the clipped updates gets Gaussian noise of `noise_multiplier * clip` over
`clients_per_round`, and the accountant reports the user-level (epsilon, delta) spent.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from federax import privacy
from federax.aggregators import DifferentiallyPrivateFactory
from federax.cli._errors import CLIError
from federax.cli.config import ADAPTIVE_CLIP, TrainConfig
from federax.learning import dp_aggregator
from federax.program.sampling import PoissonSampler
from federax.program.training_loop import PRIVACY_METRICS_KEY

EPSILON_COLUMN = f"{PRIVACY_METRICS_KEY}/epsilon"  # In metrics.csv.


@dataclasses.dataclass(frozen=True)
class DpSetup:
  """The pieces of a DP run: `aggregator` for the process, `sampler` for the selection."""

  aggregator: Any
  sampler: PoissonSampler
  accountant: privacy.PrivacyAccountant


def build(config: TrainConfig, client_ids: Any) -> Optional[DpSetup]:
  """The DP pieces of `config`'s run over the training clients `client_ids`; None without DP.

  The noise is seeded from `--seed`, so a run can be reproduced and resumed bit for bit: right
  for a simulation, not for a deployment, whose noise must come from a secret seed.
  """
  if not config.dp:
    return None
  population = len(client_ids)
  k = config.clients_per_round
  if k > population:
    raise CLIError(f"clients_per_round {k} exceeds the {population} training clients: Poisson "
                   "sampling needs a rate clients_per_round / clients <= 1")
  aggregator = build_aggregator(config)
  sampler = PoissonSampler(client_ids, rate=k / population, seed=config.seed)
  try:
    accountant = privacy.PrivacyAccountant.from_factory(
        aggregator, sampler, accountant=config.dp_accountant or "rdp", delta=config.dp_delta,
        target_epsilon=config.dp_target_epsilon)
  except ValueError as e:
    raise _cli_error(e) from None
  return DpSetup(aggregator, sampler, accountant)


def build_aggregator(config: TrainConfig) -> Any:
  """`gaussian_fixed(z, clients_per_round, clip)`, or `dp_aggregator(z, clients_per_round)`
  for an adaptive clip (TFF's, with adaptive zeroing); None without DP.

  Raises:
    CLIError: parameters the aggregator refuses (e.g. an adaptive clip with too few clients
      per round for its noised count).
  """
  if not config.dp:
    return None
  z, k = config.dp_noise_multiplier, config.clients_per_round
  clip = ADAPTIVE_CLIP if config.dp_clip is None else config.dp_clip
  try:
    if clip == ADAPTIVE_CLIP:
      return dp_aggregator(z, k, seed=config.seed)
    return DifferentiallyPrivateFactory.gaussian_fixed(z, k, clip, seed=config.seed)
  except ValueError as e:
    raise _cli_error(e) from None


def _cli_error(e: Exception) -> CLIError:
  """A federax error's text on one line, without the location (a CLI user's is the flags)."""
  return CLIError(" ".join(str(e).split("\n  at ")[0].split()))


def summary_fields(config: TrainConfig, setup: Optional[DpSetup], last_round: Optional[int]
                   ) -> dict:
  """The privacy entries of summary.json (None values without DP)."""
  if setup is None:
    return {"privacy": None}
  accountant = setup.accountant
  rounds = last_round or 0
  stopped = accountant.target_epsilon is not None and rounds < config.rounds
  return {"privacy": {
      "level": "user", "epsilon": accountant.epsilon_after(rounds), "delta": accountant.delta,
      "rounds": rounds, "accountant": accountant.accountant,
      "sampling": accountant.sampling.describe(),
      "noise_multiplier": config.dp_noise_multiplier,
      "clip": ADAPTIVE_CLIP if config.dp_clip is None else config.dp_clip,
      "target_epsilon": accountant.target_epsilon, "stopped_at_target": stopped}}


def summary_rows(summary: dict) -> list[tuple[str, str]]:
  """The summary table's lines on privacy: (epsilon, delta) said plainly."""
  p = summary.get("privacy")
  if not p:
    return []
  clip = p["clip"] if p["clip"] == ADAPTIVE_CLIP else f"{p['clip']:g}"
  rows = [("privacy", f"user-level ({p['epsilon']:.4g}, {p['delta']:.3g})-DP after "
                      f"{p['rounds']} rounds"),
          ("privacy accounting", f"{p['accountant'].upper()}; {p['sampling']}; noise "
                                 f"multiplier {p['noise_multiplier']:g}, clip {clip}")]
  if p["stopped_at_target"]:
    rows.append(("privacy budget", f"target epsilon {p['target_epsilon']:g} reached: stopped "
                                   f"before round {p['rounds'] + 1}"))
  return rows
