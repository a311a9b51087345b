"""The algorithms `federax train --algorithm` names, as FedAvg-family `LearningProcess` builders.

FedAvgM, FedAdam, FedYogi and FedAdagrad are FedAvg with another server optimizer (Reddi et
al., "Adaptive Federated Optimization", ICLR 2021, with their epsilon 1e-3 for the adaptive
ones); FedProx adds the proximal term; FedSGD sends one gradient per client per round. Every
one aggregates with TFF's recommended `robust_aggregator`: adaptive zeroing of corrupted
updates, then adaptive L2 clipping, so no client (or diverging round) can blow the model up.

With a DP model aggregator (`federax train --dp-noise-multiplier`) the algorithms average
unweighted with it instead (`build_unweighted_fed_avg`, `build_unweighted_fed_prox`), as
central DP requires; FedSGD is weighted only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from federax.learning import algorithms, optimizers
from federax.learning.model_update_aggregator import robust_aggregator

ADAPTIVE_EPSILON = 1e-3


def _server_optimizer(name: str, config: Any) -> Any:
  lr = config.server_lr
  return {
      "fedavg": lambda: optimizers.build_sgdm(lr),
      "fedavgm": lambda: optimizers.build_sgdm(lr, momentum=config.server_momentum),
      "fedadam": lambda: optimizers.build_adam(lr, beta_2=0.99, epsilon=ADAPTIVE_EPSILON),
      "fedyogi": lambda: optimizers.build_yogi(lr, beta_2=0.99, epsilon=ADAPTIVE_EPSILON),
      "fedadagrad": lambda: optimizers.build_adagrad(lr, epsilon=ADAPTIVE_EPSILON),
      "fedprox": lambda: optimizers.build_sgdm(lr),
      "fedsgd": lambda: optimizers.build_sgdm(lr),
  }[name]()


def _build(name: str, model_fn: Callable, config: Any, aggregator: Optional[Any]) -> Any:
  server = _server_optimizer(name, config)
  if name == "fedsgd":
    if aggregator is not None:
      raise ValueError("fedsgd averages weighted by example counts: it takes no unweighted "
                       "model aggregator.")
    return algorithms.build_fed_sgd(model_fn, server_optimizer_fn=server,
                                    model_aggregator=robust_aggregator())
  client = optimizers.build_sgdm(config.client_lr)
  if aggregator is not None:
    if name == "fedprox":
      return algorithms.build_unweighted_fed_prox(model_fn, config.proximal_strength, client,
                                                  server, model_aggregator=aggregator)
    return algorithms.build_unweighted_fed_avg(model_fn, client, server,
                                               model_aggregator=aggregator)
  aggregator = robust_aggregator()
  if name == "fedprox":
    return algorithms.build_weighted_fed_prox(model_fn, config.proximal_strength, client, server,
                                              model_aggregator=aggregator)
  return algorithms.build_weighted_fed_avg(model_fn, client, server, model_aggregator=aggregator)


ALGORITHMS = ("fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "fedprox", "fedsgd")


def build_learning_process(config: Any, model_fn: Callable,
                           model_aggregator: Optional[Any] = None) -> Any:
  """The training `LearningProcess` for `config.algorithm` (one of `ALGORITHMS`); with an
  (unweighted) `model_aggregator`, its unweighted form aggregating with it."""
  if config.algorithm not in ALGORITHMS:
    raise ValueError(f"Unknown algorithm {config.algorithm!r}; expected one of "
                     f"{', '.join(ALGORITHMS)}.")
  return _build(config.algorithm, model_fn, config, model_aggregator)
