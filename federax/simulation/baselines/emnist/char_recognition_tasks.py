"""EMNIST character (and digit) recognition tasks, like TFF's `baselines.emnist`."""

from __future__ import annotations

import enum
import os
import pathlib
from typing import Any, Optional, Union

from federax.learning.models import FunctionalModel
from federax.simulation.baselines import _preprocessing
from federax.simulation.baselines.baseline_task import BaselineTask
from federax.simulation.baselines.client_spec import ClientSpec
from federax.simulation.baselines.emnist import emnist_models, emnist_preprocessing
from federax.simulation.baselines.task_data import BaselineTaskDatasets
from federax.simulation.client_data import ClientData
from federax.simulation.datasets import emnist, femnist
from federax.simulation.datasets.download import DataNotFoundError

__all__ = [
    "CharacterRecognitionModel", "create_character_recognition_task",
    "create_character_recognition_task_from_datasets", "create_digit_recognition_task",
    "get_character_recognition_model", "load_data",
]

DEFAULT_EVAL_CLIENT_SPEC = ClientSpec(num_epochs=1, batch_size=64, shuffle_buffer_size=1)


class CharacterRecognitionModel(enum.Enum):
  """The EMNIST models: TFF's three, and the seed tutorial's linear model."""

  CNN_DROPOUT = "cnn_dropout"
  CNN = "cnn"
  TWO_LAYER_DNN = "2nn"
  LINEAR = "linear"


_BUILDERS = {
    CharacterRecognitionModel.CNN_DROPOUT: emnist_models.create_conv_dropout_model,
    CharacterRecognitionModel.CNN: emnist_models.create_original_fedavg_cnn_model,
    CharacterRecognitionModel.TWO_LAYER_DNN: emnist_models.create_two_hidden_layer_model,
    CharacterRecognitionModel.LINEAR: emnist_models.create_linear_model,
}


def _model_enum(model_id: Union[str, CharacterRecognitionModel]) -> CharacterRecognitionModel:
  try:
    return CharacterRecognitionModel(model_id)
  except ValueError:
    known = [m.value for m in CharacterRecognitionModel]
    raise ValueError(f"Unknown EMNIST model_id {model_id!r}; expected one of {known}.") from None


def get_character_recognition_model(model_id: Union[str, CharacterRecognitionModel],
                                    only_digits: bool, seed: int = 0,
                                    input_spec: Optional[Any] = None) -> FunctionalModel:
  """The EMNIST model named `model_id` ('cnn_dropout', 'cnn', '2nn' or 'linear').

  Raises:
    ValueError: if `model_id` is unknown (the message lists the known ones).
  """
  return _BUILDERS[_model_enum(model_id)](only_digits, seed=seed, input_spec=input_spec)


def load_data(data_dir: Optional[Union[str, os.PathLike]],
              only_digits: bool) -> tuple[ClientData, ClientData]:
  """EMNIST `(train, test)` from `data_dir`, or TFF's release (downloaded) when it is None.

  `data_dir` may hold TFF's HDF5 files (`fed_emnist_train.h5`/`_test.h5`, or the
  `fed_emnist_digitsonly_*` pair with `only_digits`), or LEAF's FEMNIST output (`train/` and
  `test/` JSON shards, or a folder of several LEAF samples such as shared/data/femnist-leaf).

  Raises:
    DataNotFoundError: if `data_dir` holds neither, or (without `data_dir`) the files are not
      cached and cannot be downloaded.
  """
  remote = emnist.DIGITS_ONLY if only_digits else emnist.ALL_CHARACTERS
  if data_dir is None:
    return emnist.load_data(only_digits=only_digits)
  path = pathlib.Path(os.path.expanduser(os.fspath(data_dir)))
  if all((path / f).is_file() for f in remote.files):
    return emnist.load_data(only_digits=only_digits, cache_dir=path)
  try:
    return femnist.load_data(path, only_digits=only_digits)
  except FileNotFoundError as e:
    raise DataNotFoundError(
        f"No EMNIST data in data_dir={os.fspath(path)!r}. Expected either TFF's HDF5 files "
        f"{list(remote.files)} in it, or LEAF's FEMNIST output (train/ and test/ folders of "
        f"JSON shards, or a folder of such LEAF samples). The LEAF reader said: {e}") from e


def create_character_recognition_task_from_datasets(
    train_client_spec: ClientSpec, eval_client_spec: Optional[ClientSpec],
    model_id: Union[str, CharacterRecognitionModel], only_digits: bool,
    train_data: ClientData, test_data: ClientData, seed: int = 0) -> BaselineTask:
  """An EMNIST character recognition task over given EMNIST-like `ClientData`.

  Args:
    train_client_spec: how training clients are preprocessed.
    eval_client_spec: how evaluation data are preprocessed; None: 1 epoch, batches of 64, no
      shuffle (TFF's default).
    model_id: 'cnn_dropout', 'cnn', '2nn' or 'linear'.
    only_digits: 10 classes (digits) or 62.
    train_data, test_data: elements `{'label': int32, 'pixels': float32[28, 28]}`.
    seed: seeds the model's initial weights (None: drawn once).

  Raises:
    ValueError: if `model_id` is unknown.
  """
  model_enum = _model_enum(model_id)
  seed = _preprocessing.task_seed(seed, "create_character_recognition_task(seed=...)")
  eval_client_spec = eval_client_spec or DEFAULT_EVAL_CLIENT_SPEC
  datasets = BaselineTaskDatasets(
      train_data=train_data, test_data=test_data, validation_data=None,
      train_preprocess_fn=emnist_preprocessing.create_preprocess_fn(train_client_spec),
      eval_preprocess_fn=emnist_preprocessing.create_preprocess_fn(eval_client_spec))

  def model_fn() -> FunctionalModel:
    return get_character_recognition_model(model_enum, only_digits, seed,
                                           datasets.element_type_structure)

  return BaselineTask(datasets, model_fn)


def create_character_recognition_task(
    train_client_spec: ClientSpec, eval_client_spec: Optional[ClientSpec] = None, *,
    data_dir: Optional[Union[str, os.PathLike]] = None, seed: int = 0,
    model_id: Union[str, CharacterRecognitionModel] = "cnn_dropout",
    only_digits: bool = False) -> BaselineTask:
  """EMNIST character recognition: TFF's `create_character_recognition_task`.

  Classify 28x28 handwritten characters, one client per writer: 62 classes (digits, upper and
  lower case), or 10 with `only_digits`. Models ('cnn_dropout', the default, 'cnn', '2nn',
  'linear') output softmax probabilities, trained with sparse categorical cross-entropy and
  reported with sparse categorical accuracy. Batches: `{'x': float32[B, 28, 28, 1],
  'y': int32[B], 'mask': bool[B]}`.

  Args:
    train_client_spec: how training clients are preprocessed.
    eval_client_spec: how evaluation data are preprocessed (default: batches of 64).
    data_dir: TFF's EMNIST HDF5 files or LEAF's FEMNIST output (see `load_data`); None
      downloads TFF's release into the cache.
    seed: seeds the model's initial weights.
    model_id: the model.
    only_digits: the 10-class digits-only version.

  Raises:
    DataNotFoundError: if the data cannot be found or downloaded.
    ValueError: if `model_id` is unknown.

  Example:
    With LEAF's FEMNIST output in `shared/data/femnist-leaf`::

      task = create_character_recognition_task(ClientSpec(num_epochs=1, batch_size=20),
                                               data_dir='shared/data/femnist-leaf')
      task.datasets.element_type_structure['x']  # TensorType(np.float32, (None, 28, 28, 1))
  """
  _model_enum(model_id)  # Fail on a bad name before loading data.
  train, test = load_data(data_dir, only_digits)
  return create_character_recognition_task_from_datasets(
      train_client_spec, eval_client_spec, model_id, only_digits, train, test, seed)


def create_digit_recognition_task(
    train_client_spec: ClientSpec, eval_client_spec: Optional[ClientSpec] = None, *,
    data_dir: Optional[Union[str, os.PathLike]] = None, seed: int = 0,
    model_id: Union[str, CharacterRecognitionModel] = "linear") -> BaselineTask:
  """EMNIST digits (10 classes) with the seed tutorial's linear softmax model by default.

  The task of TFF's "Federated Learning for Image Classification" tutorial: Dense(10) from
  zeros with a softmax, sparse categorical cross-entropy, sparse categorical accuracy.
  Otherwise as `create_character_recognition_task(..., only_digits=True)`.

  Example:
    Downloading TFF's digits-only EMNIST on first use::

      task = create_digit_recognition_task(ClientSpec(num_epochs=5, batch_size=20,
                                                      shuffle_buffer_size=100))
  """
  return create_character_recognition_task(train_client_spec, eval_client_spec,
                                           data_dir=data_dir, seed=seed, model_id=model_id,
                                           only_digits=True)
