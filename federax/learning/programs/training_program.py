"""`train_model`: TFF's `tff.learning.programs.train_model`, synchronous and resumable."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Optional

from federax.learning.programs.evaluation import build_evaluation_fn
from federax.simulation.client_data import ClientData
from federax.simulation.selection import build_client_selection_fn
from federax.simulation.training_loop import run_training_process

__all__ = ["ClientDataSource", "EvaluationManager", "train_model"]


@dataclasses.dataclass(frozen=True)
class ClientDataSource:
  """Clients of a `ClientData`, sampled and preprocessed per round from `(seed, round)`.

  The federax form of TFF's `FederatedDataSource`: instead of a stateful iterator that must
  be checkpointed, a selection is a pure function of the round number, so a resumed program
  selects exactly what the uninterrupted one would have.

  Attributes:
    client_data: the population.
    preprocess_fn: `(dataset, seed=None) -> dataset`, e.g. a baseline task's preprocess fn.
    seed: a non-negative int.
    replace: whether a client may appear twice in one round.

  Example:
    >>> from federax.simulation import baselines
    >>> task = baselines.create_task('synthetic', baselines.ClientSpec(num_epochs=1, batch_size=10))
    >>> source = fx.learning.programs.ClientDataSource(task.datasets.train_data,
    ...                                               task.datasets.train_preprocess_fn)
    >>> datasets = source.select(round_num=1, num_clients=10)
    >>> len(datasets)
    10
  """

  client_data: ClientData
  preprocess_fn: Optional[Callable[..., Any]] = None
  seed: int = 0
  replace: bool = False

  def selection_fn(self, num_clients: Optional[int]) -> Callable[[int], list]:
    """`round_num -> datasets` of `num_clients` clients (None: all of them, in order)."""
    return build_client_selection_fn(self.client_data, num_clients, self.preprocess_fn,
                                     seed=self.seed, replace=self.replace)

  def select(self, round_num: int, num_clients: Optional[int]) -> list:
    """The preprocessed datasets of round `round_num`'s `num_clients` clients."""
    return self.selection_fn(num_clients)(round_num)


@dataclasses.dataclass(frozen=True)
class EvaluationManager:
  """Periodic federated evaluation of the model being trained.

  Attributes:
    evaluation_process: e.g. `fx.learning.algorithms.build_fed_eval(model_fn)`.
    data_source: a `ClientDataSource` over evaluation clients.
    per_round_clients: clients per evaluation; None evaluates on every client.
  """

  evaluation_process: Any
  data_source: ClientDataSource
  per_round_clients: Optional[int] = None


def train_model(*, train_process: Any, train_data_source: ClientDataSource,
                train_per_round_clients: int, train_total_rounds: int,
                program_state_manager: Any = None, model_output_manager: Any = None,
                evaluation_manager: Optional[EvaluationManager] = None,
                train_metrics_manager: Any = None, evaluation_periodicity: int = 1,
                program_state_periodicity: int = 1,
                initial_train_state: Any = None) -> Any:
  """Trains `train_process` for `train_total_rounds` rounds; resumes from saved program state.

  Args:
    train_process: a `LearningProcess`.
    train_data_source: a `ClientDataSource` over training clients.
    train_per_round_clients: clients per round.
    train_total_rounds: rounds to run (a resumed program runs the ones not yet saved).
    program_state_manager: an `fx.program.ProgramStateManager` (e.g.
      `FileProgramStateManager(run_dir)`); None trains without checkpoints.
    model_output_manager: an `fx.program.ReleaseManager` receiving the final
      `ModelWeights`, with key `train_total_rounds`.
    evaluation_manager: an `EvaluationManager`; its metrics are released with the training
      metrics under 'evaluation/' every `evaluation_periodicity` rounds and at round 0.
    train_metrics_manager: an `fx.program.ReleaseManager` (or a list of them) for the metrics.
    evaluation_periodicity: rounds between evaluations.
    program_state_periodicity: rounds between saved states (the last round is always saved).
    initial_train_state: the state to start from instead of `train_process.initialize()`.

  Returns:
    The final training state.

  Differences from TFF: synchronous (no `async`); data sources select by round number, so
  no data iterator is checkpointed; `evaluation_periodicity` counts rounds, not time.
  """
  process = train_process
  if initial_train_state is not None:
    process = _StartingFrom(train_process, initial_train_state)
  evaluation_fn = evaluation_selection_fn = None
  if evaluation_manager is not None:
    evaluation_fn = build_evaluation_fn(evaluation_manager.evaluation_process,
                                        train_process.get_model_weights)
    evaluation_selection_fn = evaluation_manager.data_source.selection_fn(
        evaluation_manager.per_round_clients)
  managers = train_metrics_manager
  if managers is not None and not isinstance(managers, (list, tuple)):
    managers = [managers]
  state = run_training_process(
      process, train_data_source.selection_fn(train_per_round_clients), train_total_rounds,
      evaluation_fn=evaluation_fn, evaluation_selection_fn=evaluation_selection_fn,
      rounds_per_evaluation=evaluation_periodicity,
      program_state_manager=program_state_manager,
      rounds_per_saving_program_state=program_state_periodicity, metrics_managers=managers)
  if model_output_manager is not None:
    model_output_manager.release(train_process.get_model_weights(state), train_total_rounds)
  return state


@dataclasses.dataclass(frozen=True)
class _StartingFrom:
  """`process` with `initialize` returning a given state."""

  process: Any
  state: Any

  def initialize(self) -> Any:
    return self.state

  def next(self, state: Any, data: Any) -> Any:
    return self.process.next(state, data)
