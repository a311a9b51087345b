"""The baseline tasks by name (`TASKS`), and `create_task` to build one from its name."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from typing import Any, Optional, Union

from federax.simulation.baselines.baseline_task import BaselineTask
from federax.simulation.baselines.client_spec import ClientSpec
from federax.simulation.baselines.emnist import char_recognition_tasks
from federax.simulation.baselines.shakespeare import char_prediction_tasks
from federax.simulation.baselines.synthetic import create_synthetic_task

__all__ = ["TASKS", "TaskFactory", "create_task"]

TaskFactory = Callable[..., BaselineTask]
"""`factory(train_client_spec, eval_client_spec=None, *, data_dir=None, seed=0, **kwargs)`."""

TASKS: dict[str, TaskFactory] = {
    "emnist": char_recognition_tasks.create_character_recognition_task,
    "emnist_digits": char_recognition_tasks.create_digit_recognition_task,
    "shakespeare": char_prediction_tasks.create_character_prediction_task,
    "synthetic": create_synthetic_task,
}
"""The task factories by name: 'emnist' (62 classes, cnn_dropout), 'emnist_digits' (10
classes, the tutorial's linear model), 'shakespeare' (next character, stacked LSTM) and
'synthetic' (FedProx's Synthetic(1, 1), logistic regression)."""


def create_task(name: str, train_client_spec: ClientSpec,
                eval_client_spec: Optional[ClientSpec] = None, *,
                data_dir: Optional[Union[str, os.PathLike]] = None, seed: int = 0,
                **task_kwargs: Any) -> BaselineTask:
  """The baseline task called `name` (a key of `TASKS`).

  Args:
    name: 'emnist', 'emnist_digits', 'shakespeare' or 'synthetic'.
    train_client_spec: how training clients are preprocessed.
    eval_client_spec: how evaluation data are preprocessed (None: the task's default).
    data_dir: where the task's data are (None: the download cache; unused by 'synthetic').
    seed: seeds the model's initial weights (and the generated data of 'synthetic').
    **task_kwargs: passed to the factory, e.g. `model_id='cnn'` for 'emnist'.

  Raises:
    ValueError: if `name` is not a known task (the message lists them).
    DataNotFoundError: if the task's data cannot be found or downloaded.

  Example:
    >>> task = create_task('synthetic', ClientSpec(num_epochs=1, batch_size=10))
    >>> [w.shape for w in task.model_fn().initial_weights.trainable]
    [(60, 10), (10,)]

    With LEAF's FEMNIST output in `shared/data/femnist-leaf`::

      task = create_task('emnist', ClientSpec(num_epochs=1, batch_size=20),
                         data_dir='shared/data/femnist-leaf', model_id='cnn')
  """
  if name not in TASKS:
    close = difflib.get_close_matches(str(name), list(TASKS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown baseline task {name!r}; known tasks: {sorted(TASKS)}.{hint}")
  return TASKS[name](train_client_spec, eval_client_spec, data_dir=data_dir, seed=seed,
                     **task_kwargs)
