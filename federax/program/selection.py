"""Per-round client selection from a `ClientData`: the cohort and each client's shuffling.

    select = build_client_selection_fn(task.datasets.train_data, clients_per_round=10,
                                       preprocess_fn=task.datasets.train_preprocess_fn, seed=0)
    datasets = select(round_num)  # A list of 10 preprocessed client datasets.

Everything a round draws is a function of `(seed, round_num)`: the cohort (a `UniformSampler`)
and the seed handed to each client's `preprocess_fn` (`derive_seed(seed, round_num,
position in the cohort)`). So round 57 selects the same data whether the run got there
directly or was resumed from a checkpoint, and every round shuffles anew, as TFF's unseeded
`tf.data` shuffles do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Optional

from federax.program.data_source import ClientPopulation, SelectionFn
from federax.program.sampling import UniformSampler
from federax.program.seeds import derive_seed, takes_seed

__all__ = ["ClientDataSource", "build_client_selection_fn"]


def build_client_selection_fn(
    client_data: ClientPopulation, clients_per_round: Optional[int],
    preprocess_fn: Optional[Callable[..., Any]] = None, *, seed: int = 0,
    replace: bool = False, sampler: Optional[Any] = None) -> SelectionFn:
  """Returns `round_num -> [preprocessed client dataset, ...]` for a training loop.

  The list has the cohort's ids in its `client_ids` attribute (for processes with client
  states).

  The function's `sampler` attribute says how it draws cohorts (the `UniformSampler`, the
  `sampler` given, or None for every client), so that a privacy accountant can check that it
  assumes the sampling that happens (`run_training_process(..., privacy_accountant=...)`).

  Args:
    client_data: the population: a `ClientData` (any `ClientPopulation`).
    clients_per_round: the cohort size, drawn uniformly each round; None selects every client,
      in `client_data.client_ids` order, every round (as evaluation on a whole test set does).
    preprocess_fn: `(dataset, seed=None) -> dataset`, e.g. a baseline task's
      `train_preprocess_fn`; it receives a per-(round, client) seed when it takes `seed`
      (a one-argument TFF-style function is called with the dataset alone).
    seed: a non-negative int; the whole selection is a function of it and the round.
    replace: whether a client may appear twice in a cohort.
    sampler: instead of `clients_per_round` (which must then be None), an object whose
      `sample(round_num)` gives the cohort's client ids, e.g. a `PoissonSampler` over
      `client_data.client_ids` (the sampling DP-FedAvg's accounting assumes).

  Raises:
    TypeError: if `client_data` is not a `ClientData` (has no `client_ids` and
      `create_dataset`).
    ValueError: for a cohort larger than the population (without replacement) or < 1, or
      both `clients_per_round` and `sampler`.

  Example:
    >>> client_data = fx.simulation.partitioners.iid({'x': np.arange(100)}, num_clients=20, seed=0)
    >>> preprocess_fn = lambda ds, seed=None: ds.shuffle(10, seed=seed).batch(2)
    >>> select = build_client_selection_fn(client_data, 10, preprocess_fn, seed=0)
    >>> [len(list(d)) for d in select(1)] == [len(list(d)) for d in select(1)]
    True
  """
  # Checked by shape, not class: the program layer does not know where data comes from.
  if not isinstance(client_data, ClientPopulation):
    raise TypeError(f"build_client_selection_fn expects a ClientData, got "
                    f"{type(client_data).__name__}.")
  if sampler is not None:
    if clients_per_round is not None:
      raise ValueError(f"build_client_selection_fn expects clients_per_round or a sampler, not "
                       f"both; got clients_per_round={clients_per_round} and a "
                       f"{type(sampler).__name__}.")
    cohort = sampler.sample
  elif clients_per_round is None:
    ids = list(client_data.client_ids)
    cohort = lambda round_num: ids  # noqa: E731
  else:
    sampler = UniformSampler(client_data.client_ids, clients_per_round, replace=replace,
                             seed=seed)
    cohort = sampler.sample
  pass_seed = preprocess_fn is not None and takes_seed(preprocess_fn)

  def select(round_num: int) -> list:
    ids = list(cohort(round_num))
    datasets = Cohort(ids)
    for position, client_id in enumerate(ids):
      dataset = client_data.create_dataset(client_id)
      if pass_seed:
        dataset = preprocess_fn(dataset, seed=derive_seed(seed, round_num, position))
      elif preprocess_fn is not None:
        dataset = preprocess_fn(dataset)
      datasets.append(dataset)
    return datasets

  select.sampler = sampler
  return select


class Cohort(list):
  """A round's datasets (a list), with the clients' ids in `client_ids` (same order).

  A process with client states (`fx.program.ClientStateProcess`) reads the ids from it.
  """

  def __init__(self, client_ids: list):
    super().__init__()
    self.client_ids = client_ids


@dataclasses.dataclass(frozen=True)
class ClientDataSource:
  """Clients of a `ClientData`, sampled and preprocessed per round from `(seed, round)`.

  The federax form of TFF's `FederatedDataSource` (a `DataSource`): instead of a stateful
  iterator that must be checkpointed, a selection is a pure function of the round number, so a
  resumed program selects exactly what the uninterrupted one would have.

  Attributes:
    client_data: the population (a `ClientData`, or any `ClientPopulation`).
    preprocess_fn: `(dataset, seed=None) -> dataset`, e.g. a baseline task's preprocess fn.
    seed: a non-negative int.
    replace: whether a client may appear twice in one round.

  Example:
    >>> from federax.simulation import baselines
    >>> task = baselines.create_task('synthetic', baselines.ClientSpec(num_epochs=1, batch_size=10))
    >>> source = ClientDataSource(task.datasets.train_data, task.datasets.train_preprocess_fn)
    >>> datasets = source.select(round_num=1, num_clients=10)
    >>> len(datasets)
    10
  """

  client_data: ClientPopulation
  preprocess_fn: Optional[Callable[..., Any]] = None
  seed: int = 0
  replace: bool = False

  def selection_fn(self, num_clients: Optional[int]) -> SelectionFn:
    """`round_num -> datasets` of `num_clients` clients (None: all of them, in order)."""
    return build_client_selection_fn(self.client_data, num_clients, self.preprocess_fn,
                                     seed=self.seed, replace=self.replace)

  def select(self, round_num: int, num_clients: Optional[int]) -> list:
    """The preprocessed datasets of round `round_num`'s `num_clients` clients."""
    return self.selection_fn(num_clients)(round_num)
