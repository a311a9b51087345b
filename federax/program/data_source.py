"""Data sources: what a program asks for each round's client data (TFF's `FederatedDataSource`).

TFF 0.87 has a `FederatedDataSource` whose `iterator()` is a stateful
`FederatedDataSourceIterator` with `select(k)`, checkpointed with the program. federax keeps the
two levels and drops the state: a `DataSource` gives, for a cohort size, a `SelectionFn`, and a
selection function is a pure function of the round number. A resumed program therefore selects
exactly what the uninterrupted one would have, and nothing but the round is checkpointed.

    source = fx.program.ClientDataSource(client_data, preprocess_fn, seed=0)  # A DataSource.
    select = source.selection_fn(10)                                          # A SelectionFn.
    datasets = select(round_num)  # Round `round_num`'s 10 client datasets, every time.

The program layer knows these declarations, not where data comes from: `fx.simulation`'s
`ClientData` is one `ClientPopulation`; any object with the same two members is another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Protocol, runtime_checkable

__all__ = ["ClientPopulation", "DataSource", "SelectionFn"]


@runtime_checkable
class SelectionFn(Protocol):
  """`round_num -> client data`: the data of round `round_num`'s cohort (TFF's
  `FederatedDataSourceIterator.select`, as a function of the round).

  What `run_training_process` takes as `training_selection_fn` and `evaluation_selection_fn`,
  and what `build_client_selection_fn` returns. Calling it twice with one round gives the same
  clients and the same data, so that a resumed run repeats no randomness.
  """

  def __call__(self, round_num: int) -> Sequence[Any]:
    """The client data of round `round_num` (>= 0): usually a list with one dataset per
    client, the `{T*}@CLIENTS` argument of the process's `next`."""
    ...


@runtime_checkable
class DataSource(Protocol):
  """Where a program's client data comes from, cohort by cohort (TFF's `FederatedDataSource`).

  `train_model` takes one for training and one for evaluation; `ClientDataSource` over a
  `ClientData` is the usual one.
  """

  def selection_fn(self, num_clients: Optional[int]) -> SelectionFn:
    """The `SelectionFn` of cohorts of `num_clients` clients (None: every client, each round)."""
    ...


@runtime_checkable
class ClientPopulation(Protocol):
  """The clients a data source selects from: ids, and a dataset for each (a `ClientData`)."""

  @property
  def client_ids(self) -> Sequence[str]:
    """The distinct client ids, in a fixed order."""
    ...

  def create_dataset(self, client_id: str) -> Any:
    """The dataset of client `client_id` (created lazily; an `fx.data.Dataset`)."""
    ...
