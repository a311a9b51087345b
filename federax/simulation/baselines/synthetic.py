"""FedProx's Synthetic(alpha, beta) task: multinomial logistic regression on generated clients.

From Li et al., "Federated Optimization in Heterogeneous Networks" (MLSys 2020), Section 5.1:
30 devices whose local models and input distributions differ by alpha and beta; 60 features,
10 classes; a 60 -> 10 softmax regression. The data come from
`federax.simulation.datasets.synthetic` (generated, so nothing is downloaded).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

import jax.numpy as jnp
import numpy as np

from federax.core.types import TensorType
from federax.learning.models import FunctionalModel
from federax.simulation.baselines import _layers as layers
from federax.simulation.baselines._classifier import classification_model
from federax.simulation.baselines._preprocessing import (check_client_spec, check_seed,
                                                        shuffle_repeat_take, task_seed)
from federax.simulation.baselines.baseline_task import BaselineTask
from federax.simulation.baselines.client_spec import ClientSpec
from federax.simulation.baselines.task_data import BaselineTaskDatasets, PreprocessFn
from federax.simulation.datasets import synthetic
from federax.data import Dataset

__all__ = ["create_logistic_regression_model", "create_preprocess_fn", "create_synthetic_task"]

NUM_FEATURES = 60
NUM_CLASSES = 10
DEFAULT_EVAL_CLIENT_SPEC = ClientSpec(num_epochs=1, batch_size=64, shuffle_buffer_size=1)


def create_preprocess_fn(preprocess_spec: ClientSpec) -> PreprocessFn:
  """Shuffle (default: the whole client, reshuffled each epoch, as FedProx's code does),
  repeat, take, `masked_batch`: `{'x': float32[B, 60], 'y': int32[B], 'mask': bool[B]}`.

  Raises:
    TypeError: if `preprocess_spec` is not a `ClientSpec`.
  """
  check_client_spec(preprocess_spec)

  def preprocess_fn(dataset: Dataset, seed: Optional[int] = None) -> Dataset:
    seed = check_seed(seed, "synthetic preprocess_fn(seed=...)")
    dataset = shuffle_repeat_take(dataset, preprocess_spec, None, seed)
    return dataset.masked_batch(preprocess_spec.batch_size)

  return preprocess_fn


def create_logistic_regression_model(num_features: int = NUM_FEATURES,
                                     num_classes: int = NUM_CLASSES, *,
                                     input_spec: Optional[Any] = None) -> FunctionalModel:
  """Multinomial logistic regression from zero weights: logits `x @ W + b`, softmax
  cross-entropy, sparse categorical accuracy. The initial loss is ln(num_classes).

  (FedProx's own code starts from a glorot-uniform kernel; zeros make runs independent of any
  initialization seed and are the usual convex-baseline start.)

  Example:
    >>> [w.shape for w in create_logistic_regression_model().initial_weights.trainable]
    [(60, 10), (10,)]
  """
  if input_spec is None:
    input_spec = {"x": TensorType(np.float32, (None, num_features)),
                  "y": TensorType(np.int32, (None,)), "mask": TensorType(np.bool_, (None,))}
  weights = [layers.zeros((num_features, num_classes)), layers.zeros([num_classes])]

  def predict(w, x, training, key):
    del training, key
    return layers.dense(jnp.reshape(x, (x.shape[0], num_features)), w[0], w[1])

  return classification_model(weights, predict, from_logits=True, input_spec=input_spec)


def create_synthetic_task(
    train_client_spec: ClientSpec, eval_client_spec: Optional[ClientSpec] = None, *,
    data_dir: Optional[Union[str, os.PathLike]] = None, seed: int = 0, alpha: float = 1.0,
    beta: float = 1.0, num_clients: int = 30, iid: bool = False) -> BaselineTask:
  """FedProx's Synthetic(alpha, beta) with multinomial logistic regression 60 -> 10.

  Each client's examples are split 90% train / 10% test, as in FedProx's generator; test data
  are federated (one test client per train client). Batches: `{'x': float32[B, 60],
  'y': int32[B], 'mask': bool[B]}`.

  Args:
    train_client_spec: how training clients are preprocessed.
    eval_client_spec: how evaluation data are preprocessed (default: batches of 64).
    data_dir: not used (the data are generated); accepted so every task takes it.
    seed: seeds the generated data.
    alpha, beta: the heterogeneity of local models and of inputs (Synthetic(1, 1) default).
    num_clients: the number of devices (30 in the paper).
    iid: Synthetic-IID instead (alpha and beta ignored).

  Raises:
    ValueError: if alpha or beta is negative, or num_clients < 1.

  Example:
    >>> task = create_synthetic_task(ClientSpec(num_epochs=20, batch_size=10))
    >>> len(task.datasets.train_data.client_ids)
    30
  """
  del data_dir
  seed = task_seed(seed, "create_synthetic_task(seed=...)")
  train, test = synthetic.load_data(alpha, beta, num_clients=num_clients, seed=seed,
                                     num_features=NUM_FEATURES, num_classes=NUM_CLASSES,
                                     iid=iid)
  datasets = BaselineTaskDatasets(
      train_data=train, test_data=test, validation_data=None,
      train_preprocess_fn=create_preprocess_fn(train_client_spec),
      eval_preprocess_fn=create_preprocess_fn(eval_client_spec or DEFAULT_EVAL_CLIENT_SPEC))

  def model_fn() -> FunctionalModel:
    return create_logistic_regression_model(input_spec=datasets.element_type_structure)

  return BaselineTask(datasets, model_fn)
