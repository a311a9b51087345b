"""Shakespeare next-character prediction, like TFF's `baselines.shakespeare`."""

from __future__ import annotations

import os
import pathlib
from typing import Optional, Union

from federax.learning.models import FunctionalModel
from federax.simulation.baselines import _preprocessing
from federax.simulation.baselines.baseline_task import BaselineTask
from federax.simulation.baselines.client_spec import ClientSpec
from federax.simulation.baselines.shakespeare import char_prediction_models
from federax.simulation.baselines.shakespeare import char_prediction_preprocessing as prep
from federax.simulation.baselines.task_data import BaselineTaskDatasets
from federax.simulation.client_data import ClientData
from federax.simulation.datasets import shakespeare
from federax.simulation.datasets.download import DataNotFoundError

__all__ = ["create_character_prediction_task", "create_character_prediction_task_from_datasets",
           "load_data"]

DEFAULT_SEQUENCE_LENGTH = prep.DEFAULT_SEQUENCE_LENGTH
DEFAULT_EVAL_CLIENT_SPEC = ClientSpec(num_epochs=1, batch_size=32, shuffle_buffer_size=1)


def load_data(data_dir: Optional[Union[str, os.PathLike]]) -> tuple[ClientData, ClientData]:
  """Shakespeare `(train, test)` from TFF's HDF5 files in `data_dir`, or downloaded if None.

  Raises:
    DataNotFoundError: if `data_dir` lacks `shakespeare_train.h5` or `shakespeare_test.h5`,
      or (without `data_dir`) they are not cached and cannot be downloaded.
  """
  if data_dir is None:
    return shakespeare.load_data()
  path = pathlib.Path(os.path.expanduser(os.fspath(data_dir)))
  files = shakespeare.SHAKESPEARE.files
  missing = [f for f in files if not (path / f).is_file()]
  if missing:
    raise DataNotFoundError(
        f"No Shakespeare data in data_dir={os.fspath(path)!r}: {missing} "
        f"{'is' if len(missing) == 1 else 'are'} missing. Expected TFF's HDF5 files "
        f"{list(files)} (from {shakespeare.SHAKESPEARE.url}) in it.")
  return shakespeare.load_data(cache_dir=path)


def create_character_prediction_task_from_datasets(
    train_client_spec: ClientSpec, eval_client_spec: Optional[ClientSpec],
    sequence_length: int, train_data: ClientData, test_data: ClientData,
    seed: int = 0) -> BaselineTask:
  """A Shakespeare next-character task over given `ClientData` of `{'snippets': str}`.

  Args:
    train_client_spec: how training clients are preprocessed.
    eval_client_spec: how evaluation data are preprocessed; None: 1 epoch, batches of 32,
      no shuffle (TFF's default).
    sequence_length: characters per example, >= 1.
    train_data, test_data: the clients' snippets.
    seed: seeds the model's initial weights (None: drawn once).

  Raises:
    ValueError: if `sequence_length < 1`.
  """
  if int(sequence_length) < 1:
    raise ValueError(f"create_character_prediction_task(sequence_length=...) expects a "
                     f"positive int, got {sequence_length}.")
  seed = _preprocessing.task_seed(seed, "create_character_prediction_task(seed=...)")
  eval_client_spec = eval_client_spec or DEFAULT_EVAL_CLIENT_SPEC
  datasets = BaselineTaskDatasets(
      train_data=train_data, test_data=test_data, validation_data=None,
      train_preprocess_fn=prep.create_preprocess_fn(train_client_spec, sequence_length),
      eval_preprocess_fn=prep.create_preprocess_fn(eval_client_spec, sequence_length))

  def model_fn() -> FunctionalModel:
    return char_prediction_models.create_recurrent_model(
        prep.VOCAB_SIZE, sequence_length, seed=seed, input_spec=datasets.element_type_structure)

  return BaselineTask(datasets, model_fn)


def create_character_prediction_task(
    train_client_spec: ClientSpec, eval_client_spec: Optional[ClientSpec] = None, *,
    data_dir: Optional[Union[str, os.PathLike]] = None, seed: int = 0,
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH) -> BaselineTask:
  """Shakespeare next-character prediction: TFF's `create_character_prediction_task`.

  One client per speaking role in a play; each example is `sequence_length` characters
  (TFF's vocabulary of 86 plus pad/oov/bos/eos tokens) and the target is the same sequence
  shifted by one. The model is TFF's Embedding(90, 8) -> LSTM(256) -> LSTM(256) -> Dense(90)
  (logits); see `char_prediction_models.create_recurrent_model` for its loss and metrics.
  Batches: `{'x': int32[B, L], 'y': int32[B, L], 'mask': bool[B]}`.

  Args:
    train_client_spec: how training clients are preprocessed (counts are snippets).
    eval_client_spec: how evaluation data are preprocessed (default: batches of 32).
    data_dir: a directory with TFF's `shakespeare_train.h5` and `shakespeare_test.h5`; None
      downloads them into the cache.
    seed: seeds the model's initial weights.
    sequence_length: characters per example (80, as in TFF and McMahan et al.).

  Raises:
    DataNotFoundError: if the data cannot be found or downloaded.
    ValueError: if `sequence_length < 1`.

  Example:
    With TFF's Shakespeare HDF5 files in `shared/data/shakespeare-tff`::

      task = create_character_prediction_task(ClientSpec(num_epochs=1, batch_size=4),
                                              data_dir='shared/data/shakespeare-tff')
      task.datasets.element_type_structure['x']  # TensorType(np.int32, (None, 80))
  """
  train, test = load_data(data_dir)
  return create_character_prediction_task_from_datasets(
      train_client_spec, eval_client_spec, sequence_length, train, test, seed)
