"""Client preprocessing for the EMNIST tasks: TFF's shuffle, repeat, take, batch, reshape."""

from __future__ import annotations

from typing import Any, Optional

from federax.simulation.baselines._preprocessing import (check_client_spec, check_seed,
                                                        shuffle_repeat_take)
from federax.simulation.baselines.client_spec import ClientSpec
from federax.simulation.baselines.task_data import PreprocessFn
from federax.data import Dataset

__all__ = ["MAX_CLIENT_DATASET_SIZE", "create_preprocess_fn"]

MAX_CLIENT_DATASET_SIZE = 418
"""The largest EMNIST client: TFF's default shuffle buffer, a full shuffle of any client."""


def _to_batch(batch: dict[str, Any]) -> dict[str, Any]:
  """`{label, pixels[B, 28, 28], mask}` as the model's `{x[B, 28, 28, 1], y[B], mask[B]}`."""
  return {"x": batch["pixels"][..., None], "y": batch["label"], "mask": batch["mask"]}


def create_preprocess_fn(preprocess_spec: ClientSpec) -> PreprocessFn:
  """The preprocessing of EMNIST client datasets for character recognition.

  In TFF's order: shuffle (buffer `shuffle_buffer_size`, default 418; reshuffled each
  epoch), repeat `num_epochs`, take `max_elements`, batch, reshape. Batches are
  `Dataset.masked_batch`es: every batch has `batch_size` rows, padded ones False in 'mask'.

  Args:
    preprocess_spec: the `ClientSpec`.

  Returns:
    `preprocess_fn(dataset, seed=None)`, mapping a dataset of EMNIST elements
    `{'label': int32, 'pixels': float32[28, 28]}` to batches
    `{'x': float32[B, 28, 28, 1], 'y': int32[B], 'mask': bool[B]}`.

  Raises:
    TypeError: if `preprocess_spec` is not a `ClientSpec`.

  Example:
    >>> preprocess = create_preprocess_fn(ClientSpec(num_epochs=1, batch_size=20))
    >>> client = fx.simulation.Dataset.from_tensor_slices(
    ...     {'label': np.zeros(30, np.int32), 'pixels': np.zeros([30, 28, 28], np.float32)})
    >>> [(b['x'].shape, int(b['mask'].sum())) for b in preprocess(client, seed=0)]
    [((20, 28, 28, 1), 20), ((20, 28, 28, 1), 10)]
  """
  check_client_spec(preprocess_spec)

  def preprocess_fn(dataset: Dataset, seed: Optional[int] = None) -> Dataset:
    seed = check_seed(seed, "EMNIST preprocess_fn(seed=...)")
    dataset = shuffle_repeat_take(dataset, preprocess_spec, MAX_CLIENT_DATASET_SIZE, seed)
    return dataset.masked_batch(preprocess_spec.batch_size).map(_to_batch)

  return preprocess_fn
