"""Federated evaluation of a training state's model with an evaluation `LearningProcess`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["build_evaluation_fn"]


def build_evaluation_fn(evaluation_process: Any,
                        get_model_weights: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
  """Returns `(training_state, client_data) -> metrics` for `run_training_process`.

  Each call evaluates the training state's model weights from a fresh evaluation state, so
  the metrics are those of this evaluation's clients alone (in TFF's structure:
  `client_work/eval/current_round_metrics/...`).

  Args:
    evaluation_process: e.g. `fx.learning.algorithms.build_fed_eval(model_fn)`.
    get_model_weights: the training process's `get_model_weights`.

  Example:
    With `process` a training process, `state` its state and `test_datasets` a list of client
    datasets::

      evaluate = build_evaluation_fn(build_fed_eval(model_fn), process.get_model_weights)
      metrics = evaluate(state, test_datasets)
  """
  if not hasattr(evaluation_process, "set_model_weights"):
    raise TypeError(f"build_evaluation_fn expects a LearningProcess with set_model_weights "
                    f"(e.g. build_fed_eval(model_fn)), got {type(evaluation_process).__name__}.")

  def evaluate(training_state: Any, client_data: Any) -> Any:
    state = evaluation_process.set_model_weights(evaluation_process.initialize(),
                                                 get_model_weights(training_state))
    return evaluation_process.next(state, client_data).metrics

  return evaluate
