"""A run's task: loaded, and checked against its settings, before a run directory is written.

Loading reads the data set (or says in one line where it looked and how to provide it); the
checks compare settings with the data before anything is allocated: more clients per round
than the task has, or a batch so large that padding it would exhaust memory, are refused.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np

from federax.cli._errors import CLIError
from federax.cli._terminal import format_bytes
from federax.cli.config import TrainConfig


def load_task(config: TrainConfig) -> Any:
  """The `BaselineTask` of `config`, checked by `check_against_data`.

  Raises:
    CLIError: for missing data (the places looked and the fix), a damaged data file (its name)
      or a setting the data cannot serve.
  """
  from federax.simulation import baselines  # Imports the models: only when training.
  train_spec = baselines.ClientSpec(num_epochs=config.epochs, batch_size=config.batch_size,
                                    max_elements=config.max_elements)
  with data_errors():
    task = baselines.create_task(config.task, train_spec, None, data_dir=config.data_dir,
                                 seed=config.seed)
  check_against_data(config, task.datasets)
  return task


@contextlib.contextmanager
def data_errors() -> Iterator[None]:
  """Turns the data layer's errors (missing, damaged or tampered files) into `CLIError`s.

  They are the user's input (status 2): each message names the file and how to fix it.
  """
  from federax.simulation.datasets.download import ChecksumError, DataNotFoundError
  from federax.simulation.formats.errors import DataFormatError
  try:
    yield
  except (DataNotFoundError, DataFormatError, ChecksumError) as e:
    raise CLIError(str(e)) from None


def _memory_bytes() -> Optional[int]:
  """This machine's physical memory; None where the platform does not say."""
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (AttributeError, OSError, ValueError):
    return None


def example_bytes(element_spec: Any) -> int:
  """Bytes of one example of batched elements (`TensorType` leaves, batch dimension first).

  Example:
    >>> from federax.core.types import TensorType
    >>> example_bytes({'x': TensorType(np.float32, (None, 60)), 'y': TensorType(np.int32, (None,))})
    244
  """
  import jax
  total = 0
  for leaf in jax.tree_util.tree_leaves(element_spec):
    dims = [d if d is not None else 1 for d in tuple(leaf.shape)[1:]]  # Unknown: at least 1.
    total += np.dtype(leaf.dtype).itemsize * math.prod(dims)
  return total


def check_against_data(config: TrainConfig, datasets: Any,
                       memory: Optional[int] = None) -> None:
  """Refuses settings the task's data cannot serve, before any array is allocated.

  Args:
    config: the run's settings.
    datasets: the task's `BaselineTaskDatasets`.
    memory: the bytes available (default: this machine's physical memory).

  Raises:
    CLIError: if `clients_per_round` exceeds the training clients, or one padded batch per
      client of a round (the vectorized runtime stacks a round's clients) exceeds `memory`.
  """
  num_clients = len(datasets.train_data.client_ids)
  if config.clients_per_round > num_clients:
    raise CLIError(f"clients_per_round {config.clients_per_round} exceeds the {num_clients} "
                   f"training clients of task {config.task}; use at most {num_clients}")
  memory = _memory_bytes() if memory is None else memory
  if memory is None:
    return
  row = example_bytes(datasets.element_type_structure)
  clients = config.clients_per_round if config.runtime == "vectorized" else 1
  needed = config.batch_size * row * clients
  if needed > memory:
    raise CLIError(
        f"batch_size {config.batch_size} is too large: every batch is padded to "
        f"{config.batch_size} examples of {row} bytes, "
        + (f"{clients} clients at once, " if clients > 1 else "")
        + f"at least {format_bytes(needed)}, more than this machine's {format_bytes(memory)} of "
        "memory; a batch larger than a client's examples only adds padding (try 10 to 100)")
