"""ClientSpec, BaselineTaskDatasets and BaselineTask on small hand-made clients (no data files)."""

import collections
import re

import numpy as np
import pytest

from federax.core.types import TensorType
from federax.learning.models import FunctionalModel
from federax.simulation import ClientData, Dataset
from federax.simulation.baselines import (BaselineTask, BaselineTaskDatasets, ClientSpec,
                                          derive_seed)
from federax.simulation.baselines import synthetic


def _clients(sizes=(7, 12, 3, 30)):
  rng = np.random.default_rng(0)
  data = {}
  for k, n in enumerate(sizes):
    data[f"c{k}"] = collections.OrderedDict(
        x=rng.normal(size=(n, 60)).astype(np.float32),
        y=np.arange(n, dtype=np.int32) + 100 * k)  # Labels name the example: order is visible.
  return ClientData.from_dict(data)


def _datasets(spec=ClientSpec(num_epochs=2, batch_size=4), test=None):
  clients = _clients()
  return BaselineTaskDatasets(clients, clients if test is None else test,
                              train_preprocess_fn=synthetic.create_preprocess_fn(spec),
                              eval_preprocess_fn=synthetic.create_preprocess_fn(
                                  ClientSpec(1, 8, shuffle_buffer_size=1)))


# --- ClientSpec -----------------------------------------------------------------------------------


def test_client_spec_keeps_valid_values_and_is_frozen():
  spec = ClientSpec(num_epochs=np.int64(2), batch_size=20, max_elements=100,
                    shuffle_buffer_size=1)
  assert (spec.num_epochs, spec.batch_size, spec.max_elements, spec.shuffle_buffer_size) == (
      2, 20, 100, 1)
  assert type(spec.num_epochs) is int
  with pytest.raises(AttributeError):
    spec.batch_size = 3


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(num_epochs=0, batch_size=1), ValueError,
     "ClientSpec(num_epochs=...) expects a positive int, got 0."),
    (dict(num_epochs=1, batch_size=-3), ValueError,
     "ClientSpec(batch_size=...) expects a positive int, got -3."),
    (dict(num_epochs=1, batch_size=2.5), TypeError,
     "ClientSpec(batch_size=...) expects a positive int, got 2.5 (a float)."),
    (dict(num_epochs=True, batch_size=2), TypeError,
     "ClientSpec(num_epochs=...) expects a positive int, got the bool True."),
    (dict(num_epochs=1, batch_size=2, max_elements=0), ValueError,
     "ClientSpec(max_elements=...) expects a positive int or None, got 0."),
    (dict(num_epochs=1, batch_size=2, shuffle_buffer_size="10"), TypeError,
     "ClientSpec(shuffle_buffer_size=...) expects a positive int or None, got '10' (a str)."),
])
def test_client_spec_rejects_bad_values_naming_the_field(kwargs, error, message):
  with pytest.raises(error) as e:
    ClientSpec(**kwargs)
  assert str(e.value) == message


# --- BaselineTaskDatasets -------------------------------------------------------------------------


def test_element_type_structure_is_the_batch_spec_with_an_unknown_batch_dimension():
  datasets = _datasets()
  assert dict(datasets.element_type_structure) == {
      "x": TensorType(np.float32, (None, 60)), "y": TensorType(np.int32, (None,)),
      "mask": TensorType(np.bool_, (None,))}


def test_preprocessing_follows_tff_order_shuffle_repeat_take_then_masked_batch():
  clients = _clients()
  spec = ClientSpec(num_epochs=3, batch_size=5, max_elements=17, shuffle_buffer_size=1)
  datasets = BaselineTaskDatasets(clients, clients,
                                  train_preprocess_fn=synthetic.create_preprocess_fn(spec))
  batches = datasets.create_train_dataset("c0").to_stacked()  # 7 examples, no shuffle.
  expected = np.concatenate([np.arange(7)] * 3)[:17]  # repeat 3, then take 17.
  assert batches["mask"].shape == (4, 5)
  assert batches["mask"].sum() == 17 and not batches["mask"].reshape(-1)[17:].any()
  np.testing.assert_array_equal(batches["y"].reshape(-1)[:17], expected)


def test_shuffle_reshuffles_every_epoch_and_keeps_each_epoch_a_permutation():
  datasets = _datasets(ClientSpec(num_epochs=2, batch_size=4))
  labels = datasets.create_train_dataset("c3", seed=5).to_stacked()["y"].reshape(-1)[:60]
  first, second = labels[:30], labels[30:]
  assert sorted(first) == sorted(second) == list(range(300, 330))
  assert list(first) != list(second)


def test_same_seed_same_batches_other_seed_other_order():
  datasets = _datasets()
  a = datasets.create_train_dataset("c3", seed=derive_seed(7, 1, 3)).to_stacked()
  b = datasets.create_train_dataset("c3", seed=derive_seed(7, 1, 3)).to_stacked()
  c = datasets.create_train_dataset("c3", seed=derive_seed(7, 2, 3)).to_stacked()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["y"], c["y"])
  assert sorted(a["y"][a["mask"]]) == sorted(c["y"][c["mask"]])


def test_seed_none_draws_fresh_randomness_like_tff():
  datasets = _datasets()
  orders = {tuple(datasets.create_train_dataset("c3").to_stacked()["y"].reshape(-1))
            for _ in range(3)}
  assert len(orders) > 1


def test_sample_train_clients_draws_as_tff_and_is_reproducible_with_a_seed():
  datasets = _datasets()
  chosen = np.random.RandomState(3).choice(4, size=3, replace=False)
  first = datasets.sample_train_clients(3, random_seed=3)
  again = datasets.sample_train_clients(3, random_seed=3)
  for k, a, b in zip(chosen, first, again):
    ya, yb = a.to_stacked()["y"], b.to_stacked()["y"]
    np.testing.assert_array_equal(ya, yb)
    assert set(ya[a.to_stacked()["mask"]].tolist()) <= set(range(100 * k, 100 * k + 100))
  # Each client's preprocessing has its own seed: derive_seed(random_seed, position).
  expected = datasets.create_train_dataset(f"c{chosen[0]}", seed=derive_seed(3, 0))
  np.testing.assert_array_equal(first[0].to_stacked()["y"], expected.to_stacked()["y"])
  assert len(datasets.sample_train_clients(10, replace=True, random_seed=2**40)) == 10


def test_sample_train_clients_errors():
  datasets = _datasets()
  with pytest.raises(ValueError) as e:
    datasets.sample_train_clients(5)
  assert str(e.value) == ("sample_train_clients(num_clients=5) draws without replacement from "
                          "4 training clients; pass num_clients <= 4, or replace=True.")
  with pytest.raises(ValueError, match=r"expects num_clients >= 1, got 0"):
    datasets.sample_train_clients(0)
  with pytest.raises(ValueError, match=r"expects a non-negative int or None, got -1"):
    datasets.sample_train_clients(1, random_seed=-1)


def test_centralized_test_data_concatenates_clients_in_order_then_preprocesses():
  datasets = _datasets()
  batches = datasets.get_centralized_test_data().to_stacked()
  expected = np.concatenate([np.arange(n) + 100 * k for k, n in enumerate((7, 12, 3, 30))])
  assert batches["y"].shape == (7, 8)  # 52 examples in batches of 8.
  np.testing.assert_array_equal(batches["y"][batches["mask"]], expected)
  centralized = Dataset.from_tensor_slices({"x": np.zeros((3, 60), np.float32),
                                            "y": np.arange(3, dtype=np.int32)})
  central = _datasets(test=centralized)
  assert central.get_centralized_test_data().to_stacked()["mask"].sum() == 3
  with pytest.raises(TypeError, match="centralized"):
    central.create_test_dataset("c0")


def test_summary_prints_tffs_table():
  lines = []
  _datasets().summary(print_fn=lines.append)
  assert lines == [
      "Split |Dataset Type |Number of Clients |",
      "========================================",
      "Train |Federated    |4                 |",
      "Test  |Federated    |4                 |",
      "________________________________________",
      "Train Preprocess Function: True",
      "Eval Preprocess Function: True",
  ]
  assert repr(_datasets()) == ("BaselineTaskDatasets(train=federated(4 clients), "
                               "test=federated(4 clients))")


def test_preprocess_functions_without_a_seed_work_unseeded_and_refuse_a_seed():
  clients = _clients()
  datasets = BaselineTaskDatasets(clients, clients,
                                  train_preprocess_fn=lambda ds: ds.masked_batch(4))
  assert len(datasets.create_train_dataset("c0")) == 2
  with pytest.raises(TypeError) as e:
    datasets.create_train_dataset("c0", seed=1)
  assert "takes no `seed` argument" in str(e.value) and "fn(dataset, seed=None)" in str(e.value)


def test_baseline_task_datasets_errors():
  clients = _clients()
  with pytest.raises(TypeError, match=r"train_data=...\) expects a ClientData, got a dict"):
    BaselineTaskDatasets({}, clients)
  with pytest.raises(TypeError, match=r"test_data=...\) expects a ClientData or a Dataset"):
    BaselineTaskDatasets(clients, [1, 2])
  with pytest.raises(TypeError, match=r"train_preprocess_fn=...\) expects None or a function"):
    BaselineTaskDatasets(clients, clients, train_preprocess_fn=3)
  other = ClientData.from_dict({"a": {"z": np.zeros(3, np.float32)}})
  with pytest.raises(ValueError) as e:
    BaselineTaskDatasets(clients, clients, validation_data=other)
  assert "validation_data must have the elements of test_data" in str(e.value)
  assert "'z'" in str(e.value)
  with pytest.raises(TypeError, match="train_preprocess_fn must return a Dataset, returned a list"):
    BaselineTaskDatasets(clients, clients, train_preprocess_fn=lambda ds, seed=None: [ds])


# --- BaselineTask ---------------------------------------------------------------------------------


def test_baseline_task_checks_the_model_against_the_batches():
  datasets = _datasets()
  task = BaselineTask(datasets, synthetic.create_logistic_regression_model)
  assert isinstance(task.model_fn(), FunctionalModel)
  with pytest.raises(ValueError) as e:
    BaselineTask(datasets, lambda: synthetic.create_logistic_regression_model(num_features=784))
  # Only the field that differs; the location is this line, not the dataclass's own __init__.
  assert re.fullmatch(re.escape(
      "BaselineTask: the model's input_spec does not accept the task's preprocessed batches "
      "(datasets.element_type_structure).\n"
      "  at x: expected float32[?,784], got float32[?,60]\n"
      "  hint: build the model with input_spec=datasets.element_type_structure.\n"
      f"  at {__file__}:") + r"\d+: " + re.escape(
          "BaselineTask(datasets, lambda: synthetic.create_logistic_regression_model("
          "num_features=784))"), str(e.value))
  with pytest.raises(TypeError, match="must return a fx.learning.models.FunctionalModel, "
                     "returned a str"):
    BaselineTask(datasets, lambda: "model")
  with pytest.raises(TypeError, match="expects a BaselineTaskDatasets, got a dict"):
    BaselineTask({}, synthetic.create_logistic_regression_model)
