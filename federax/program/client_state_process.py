"""`ClientStateProcess`: runs a process with client states on cohorts of client ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

from federax.core.errors import error
from federax.core.type_conversions import type_of
from federax.program.client_state import ClientStateStore

__all__ = ["ClientStateProcess", "ClientStateProcessOutput"]

_NAME = "ClientStateProcess"


class ClientStateProcessOutput(NamedTuple):
  """What `ClientStateProcess.next` returns (a learning process's `(state, metrics)`)."""

  state: Any
  metrics: Any


def cohort_of(where: str, client_data: Any) -> tuple[list[str], list[Any]]:
  """`(client ids, datasets)` of a round's client data: a `{client_id: dataset}` mapping, or a
  list of datasets with a `client_ids` attribute (what `build_client_selection_fn` returns)."""
  if isinstance(client_data, Mapping):
    return list(client_data.keys()), list(client_data.values())
  ids = getattr(client_data, "client_ids", None)
  if ids is None:
    raise error(TypeError, where, "a process with client states needs each round's client ids.",
                expected="a {client_id: dataset} dict, or the list a "
                "fx.program.build_client_selection_fn returns (it has `client_ids`)",
                actual=f"a {type(client_data).__name__} without `client_ids`")
  ids, datasets = list(ids), list(client_data)
  if len(ids) != len(datasets):
    raise error(ValueError, where, "the client data has as many datasets as client ids.",
                expected=f"{len(ids)} datasets", actual=f"{len(datasets)} datasets")
  return ids, datasets


class ClientStateProcess:
  """A `fx.learning.templates.ClientStateLearningProcess` bound to a `ClientStateStore`.

  `next(state, client_data)` takes a cohort with its client ids (a `{client_id: dataset}`
  dict, or the list `build_client_selection_fn` returns, which has `client_ids`), gathers the
  cohort's states from the store (a client never seen before starts from
  `process.initial_client_state()`), runs the process's `next`, and scatters the returned
  states back; it returns `(state, metrics)` like a `LearningProcess`. `run_training_process`
  takes it as a training process and checkpoints the store with the program state.

  Args:
    process: the `ClientStateLearningProcess`.
    store: a `ClientStateStore` whose initial state has the process's client state type; by
      default an in-memory store starting from `process.initial_client_state()`.

  Raises:
    TypeError: if the store's client state type is not the process's.

  Example (`process` from `fx.learning.algorithms.build_scaffold`)::

    runner = fx.program.ClientStateProcess(process)
    state = runner.initialize()
    state, metrics = runner.next(state, {'writer_1': dataset_1, 'writer_7': dataset_7})
  """

  def __init__(self, process: Any, store: Optional[ClientStateStore] = None):
    for attr in ("initial_client_state", "client_state_type", "next", "initialize"):
      if not hasattr(process, attr):
        raise error(TypeError, _NAME, "process must be a process with client states.",
                    expected="a fx.learning.templates.ClientStateLearningProcess",
                    actual=f"{type(process).__name__} (no `{attr}`)")
    if store is None:
      store = ClientStateStore(process.initial_client_state())
    if not isinstance(store, ClientStateStore):
      raise error(TypeError, _NAME, "store must be a fx.program.ClientStateStore.",
                  actual=type(store).__name__)
    store_type = type_of(store.initial_state)
    if not process.client_state_type.is_assignable_from(store_type):
      raise error(TypeError, _NAME, "the store's client state type is not the process's.",
                  expected=process.client_state_type, actual=store_type,
                  hint="make the store from `process.initial_client_state()`")
    self._process = process
    self._store = store

  @property
  def process(self) -> Any:
    return self._process

  @property
  def client_state_store(self) -> ClientStateStore:
    """The store; `run_training_process` saves and restores it with the program state."""
    return self._store

  def initialize(self) -> Any:
    return self._process.initialize()

  def next(self, state: Any, client_data: Any) -> ClientStateProcessOutput:
    """One round on `client_data`'s clients (see the class docstring)."""
    ids, datasets = cohort_of(f"{_NAME}.next", client_data)
    output = self._process.next(state, datasets, self._store.gather(ids))
    self._store.scatter(ids, output.client_states)  # Checks the states' type every round.
    return ClientStateProcessOutput(output.state, output.metrics)

  def get_model_weights(self, state: Any) -> Any:
    return self._process.get_model_weights(state)

  def set_model_weights(self, state: Any, weights: Any) -> Any:
    return self._process.set_model_weights(state, weights)
