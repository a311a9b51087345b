"""Shared client preprocessing: seeds, and TFF's shuffle -> repeat -> take order."""

from __future__ import annotations

from typing import Optional

import numpy as np

from federax.simulation.baselines.client_spec import ClientSpec
from federax.program.seeds import check_seed, derive_seed
from federax.data import Dataset

__all__ = ["check_client_spec", "check_seed", "derive_seed", "shuffle_repeat_take", "task_seed"]


def check_client_spec(preprocess_spec: object) -> None:
  """Raises TypeError unless `preprocess_spec` is a `ClientSpec` (every `create_preprocess_fn`)."""
  if not isinstance(preprocess_spec, ClientSpec):
    raise TypeError(f"create_preprocess_fn(preprocess_spec=...) expects a ClientSpec, got a "
                    f"{type(preprocess_spec).__name__}.")


def task_seed(seed: object, where: str) -> int:
  """A task's seed as a non-negative int; None draws one (once: the task stays deterministic)."""
  seed = check_seed(seed, where)
  return int(np.random.SeedSequence().entropy % 2**31) if seed is None else seed


def shuffle_repeat_take(dataset: Dataset, spec: ClientSpec,
                        default_shuffle_buffer_size: Optional[int],
                        seed: Optional[int]) -> Dataset:
  """The start of every TFF baseline's client pipeline: shuffle, repeat, take.

  Args:
    dataset: a client's examples.
    spec: the `ClientSpec`.
    default_shuffle_buffer_size: the buffer when `spec.shuffle_buffer_size` is None; None
      means the whole dataset (a uniform permutation per epoch).
    seed: seeds the shuffle; None draws fresh randomness, as TFF does.

  Returns:
    The shuffled (reshuffled each epoch), repeated, truncated dataset.
  """
  buffer_size = spec.shuffle_buffer_size or default_shuffle_buffer_size
  if buffer_size is None:
    buffer_size = max(len(dataset), 1)
  if buffer_size > 1:
    dataset = dataset.shuffle(buffer_size, seed=seed)
  if spec.num_epochs > 1:
    dataset = dataset.repeat(spec.num_epochs)
  if spec.max_elements is not None:
    dataset = dataset.take(spec.max_elements)
  return dataset
