"""`train_model`: TFF's `tff.learning.programs.train_model`, synchronous and resumable."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from federax.learning.programs.evaluation import build_evaluation_fn
from federax.program.data_source import DataSource
from federax.program.selection import ClientDataSource as ClientDataSource
from federax.program.training_loop import run_training_process

__all__ = ["ClientDataSource", "EvaluationManager", "train_model"]


@dataclasses.dataclass(frozen=True)
class EvaluationManager:
  """Periodic federated evaluation of the model being trained.

  Attributes:
    evaluation_process: e.g. `fx.learning.algorithms.build_fed_eval(model_fn)`.
    data_source: a `DataSource` over evaluation clients (e.g. a `ClientDataSource`).
    per_round_clients: clients per evaluation; None evaluates on every client.
  """

  evaluation_process: Any
  data_source: DataSource
  per_round_clients: Optional[int] = None


def train_model(*, train_process: Any, train_data_source: DataSource,
                train_per_round_clients: int, train_total_rounds: int,
                program_state_manager: Any = None, model_output_manager: Any = None,
                evaluation_manager: Optional[EvaluationManager] = None,
                train_metrics_manager: Any = None, evaluation_periodicity: int = 1,
                program_state_periodicity: int = 1,
                initial_train_state: Any = None, privacy_accountant: Any = None) -> Any:
  """Trains `train_process` for `train_total_rounds` rounds; resumes from saved program state.

  Args:
    train_process: a `LearningProcess`.
    train_data_source: a `DataSource` over training clients (e.g. a `ClientDataSource`).
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
    privacy_accountant: an `fx.privacy.PrivacyAccountant` of `train_process`'s DP aggregator:
      `privacy/epsilon` and `privacy/delta` join the metrics, and training stops before its
      `target_epsilon` would be exceeded (`run_training_process`). A `ClientDataSource` samples
      `train_per_round_clients` uniformly without replacement: build the accountant from
      `fx.privacy.Sampling.uniform(train_per_round_clients, population)`.

  Returns:
    The final training state.

  Differences from TFF: synchronous (no `async`); data sources select by round number, so
  no data iterator is checkpointed; `evaluation_periodicity` counts rounds, not time;
  `privacy_accountant` is federax's.
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
      rounds_per_saving_program_state=program_state_periodicity, metrics_managers=managers,
      privacy_accountant=privacy_accountant)
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
