"""The tasks on the real data in ../shared/data (skipped without it), the registry, and errors."""

import collections
import importlib
import shutil

import jax
import numpy as np
import pytest

import federax as fx
from federax.learning import algorithms, optimizers
from federax.simulation import ClientData
from federax.simulation.baselines import (TASKS, BaselineTask, ClientSpec, create_task,
                                          derive_seed, emnist, shakespeare)
from federax.simulation.baselines.shakespeare import char_prediction_preprocessing as prep
from federax.simulation.datasets.download import DataNotFoundError

TRAIN = ClientSpec(num_epochs=2, batch_size=8, max_elements=40)


def _sgd_losses(model, batch, learning_rate, steps=4):
  """Full-batch SGD on one batch: the loss before each of `steps` steps, then after them."""
  def loss(trainable, key):
    weights = model.initial_weights._replace(trainable=trainable)
    return model.forward_pass(weights, batch, training=True, key=key).loss

  @jax.jit
  def step(trainable, key):
    value, grads = jax.value_and_grad(loss)(trainable, key)
    return jax.tree.map(lambda w, g: w - learning_rate * g, trainable, grads), value

  trainable, losses = model.initial_weights.trainable, []
  for i in range(steps + 1):  # The last step's value is the loss after `steps` updates.
    trainable, value = step(trainable, jax.random.PRNGKey(i))
    losses.append(float(value))
  return losses


def _first_batch(dataset):
  return jax.tree.map(lambda a: a[0], dataset.to_stacked())


# --- EMNIST ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def leaf_sample(shared_data, tmp_path_factory):
  """One train shard of FEMNIST (LEAF's files, unmodified) and its test shard: 6 real writers.

  Reading a whole LEAF sample takes seconds (digits-only needs every shard parsed); this keeps
  the EMNIST tests fast while reading the real format.
  """
  root = tmp_path_factory.mktemp("femnist-leaf-one-shard")
  source = shared_data / "femnist-leaf" / "flic"
  for split in ("train", "test"):
    (root / split).mkdir()
    name = f"all_data_0_niid_05_keep_0_{split}_9.json.gz"
    shutil.copyfile(source / split / name, root / split / name)
  return root


@pytest.fixture(scope="module")
def emnist_task(leaf_sample):
  return create_task("emnist", TRAIN, data_dir=leaf_sample)


def test_emnist_task_batches_have_fixed_shapes_and_the_model_takes_them(emnist_task):
  datasets = emnist_task.datasets
  assert dict(datasets.element_type_structure) == {
      "x": fx.TensorType(np.float32, (None, 28, 28, 1)), "y": fx.TensorType(np.int32, (None,)),
      "mask": fx.TensorType(np.bool_, (None,))}
  client = datasets.train_data.client_ids[0]
  raw = datasets.train_data.create_dataset(client).to_stacked()
  batches = datasets.create_train_dataset(client, seed=1).to_stacked()
  real = min(2 * len(raw["label"]), 40)
  assert batches["x"].shape == (-(-real // 8), 8, 28, 28, 1)
  assert batches["mask"].sum() == real
  # Every real row is one of the client's images with its label.
  index = {img.tobytes(): int(lab) for img, lab in zip(raw["pixels"], raw["label"])}
  for img, lab in zip(batches["x"][batches["mask"]], batches["y"][batches["mask"]]):
    assert index[img[..., 0].tobytes()] == lab


def test_emnist_unshuffled_batches_are_the_examples_in_order(leaf_sample):
  task = emnist.create_character_recognition_task(
      ClientSpec(num_epochs=2, batch_size=16, shuffle_buffer_size=1), data_dir=leaf_sample,
      model_id="2nn")
  client = task.datasets.train_data.client_ids[2]
  raw = task.datasets.train_data.create_dataset(client).to_stacked()
  batches = task.datasets.create_train_dataset(client).to_stacked()
  mask = batches["mask"]
  np.testing.assert_array_equal(batches["y"][mask], np.tile(raw["label"], 2))
  np.testing.assert_array_equal(batches["x"][mask][..., 0], np.tile(raw["pixels"], (2, 1, 1)))
  test = task.datasets.create_test_dataset(task.datasets.test_data.client_ids[0]).to_stacked()
  assert test["x"].shape[1] == 64  # TFF's default evaluation batches.


def test_emnist_seeds_fix_the_order(emnist_task):
  datasets = emnist_task.datasets
  client = datasets.train_data.client_ids[1]
  a, b, c = (datasets.create_train_dataset(client, seed=s).to_stacked()["y"]
             for s in (derive_seed(0, 1, 2), derive_seed(0, 1, 2), derive_seed(0, 2, 2)))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_emnist_cnn_dropout_starts_near_uniform_and_sgd_reduces_its_loss(emnist_task):
  model = emnist_task.model_fn()
  assert len(model.initial_weights.trainable[-1]) == 62
  batch = _first_batch(emnist_task.datasets.sample_train_clients(1, random_seed=0)[0])
  losses = _sgd_losses(model, batch, learning_rate=0.1)
  assert abs(losses[0] - np.log(62)) < 0.3
  assert losses[-1] < losses[0]


def test_emnist_digits_task_is_the_tutorials_linear_model(leaf_sample):
  task = create_task("emnist_digits", ClientSpec(num_epochs=1, batch_size=20),
                     data_dir=leaf_sample)
  model = task.model_fn()
  assert [w.shape for w in model.initial_weights.trainable] == [(784, 10), (10,)]
  dataset = task.datasets.sample_train_clients(1, random_seed=1)[0].to_stacked()
  assert dataset["y"][dataset["mask"]].max() < 10
  losses = _sgd_losses(model, jax.tree.map(lambda a: a[0], dataset), learning_rate=0.02)
  assert losses[0] == pytest.approx(np.log(10), abs=1e-5)
  assert losses[-1] < losses[0]


# --- Shakespeare ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shakespeare_task(shared_data):
  return create_task("shakespeare", ClientSpec(num_epochs=1, batch_size=4),
                     data_dir=shared_data / "shakespeare-tff")


def _reference_sequences(snippets, sequence_length):
  """TFF's character pipeline written out plainly, one character at a time."""
  ids = {c: i + 1 for i, c in enumerate(prep.CHAR_VOCAB)}
  tokens = []
  for snippet in snippets:
    row = [88] + [ids.get(c, 87) for c in snippet] + [89]
    while len(row) % (sequence_length + 1):
      row.append(0)
    tokens += row
  chunks = [tokens[i:i + sequence_length + 1] for i in range(0, len(tokens), sequence_length + 1)]
  return [c[:-1] for c in chunks], [c[1:] for c in chunks]


def test_shakespeare_preprocessing_matches_tffs_pipeline(shakespeare_task):
  datasets = shakespeare_task.datasets
  assert dict(datasets.element_type_structure) == {
      "x": fx.TensorType(np.int32, (None, 80)), "y": fx.TensorType(np.int32, (None, 80)),
      "mask": fx.TensorType(np.bool_, (None,))}
  test_client = datasets.test_data.client_ids[5]
  snippets = datasets.test_data.create_dataset(test_client).to_stacked()["snippets"].tolist()
  batches = datasets.create_test_dataset(test_client).to_stacked()  # Unshuffled, batches of 32.
  x, y = _reference_sequences(snippets, 80)
  mask = batches["mask"]
  assert batches["x"].shape[1:] == (32, 80)
  np.testing.assert_array_equal(batches["x"][mask], x)
  np.testing.assert_array_equal(batches["y"][mask], y)
  assert prep.VOCAB_SIZE == 90 and prep.get_special_tokens() == (0, 87, 88, 89)


def test_shakespeare_training_clients_shuffle_snippets_by_seed(shakespeare_task):
  datasets = shakespeare_task.datasets
  client = "ALL_S_WELL_THAT_ENDS_WELL_ROSALIND"  # 163 snippets.
  raw = datasets.train_data.create_dataset(client).to_stacked()["snippets"].tolist()
  a = datasets.create_train_dataset(client, seed=1).to_stacked()
  b = datasets.create_train_dataset(client, seed=1).to_stacked()
  c = datasets.create_train_dataset(client, seed=2).to_stacked()
  np.testing.assert_array_equal(a["x"], b["x"])
  assert not np.array_equal(a["x"], c["x"])
  assert a["mask"].sum() == c["mask"].sum() == len(_reference_sequences(raw, 80)[0])


def test_shakespeare_model_starts_near_uniform_and_sgd_reduces_its_loss(shakespeare_task):
  model = shakespeare_task.model_fn()
  batch = _first_batch(shakespeare_task.datasets.sample_train_clients(1, random_seed=3)[0])
  losses = _sgd_losses(model, batch, learning_rate=1.0, steps=3)
  assert abs(losses[0] - np.log(90)) < 0.1
  assert losses[-1] < losses[0]


# --- Synthetic ------------------------------------------------------------------------------------


def test_synthetic_task_elements_and_learning():
  task = create_task("synthetic", ClientSpec(num_epochs=1, batch_size=10), seed=3)
  assert len(task.datasets.train_data.client_ids) == 30
  assert dict(task.datasets.element_type_structure) == {
      "x": fx.TensorType(np.float32, (None, 60)), "y": fx.TensorType(np.int32, (None,)),
      "mask": fx.TensorType(np.bool_, (None,))}
  batch = _first_batch(task.datasets.sample_train_clients(1, random_seed=0)[0])
  losses = _sgd_losses(task.model_fn(), batch, learning_rate=0.1)
  assert losses[0] == pytest.approx(np.log(10), abs=1e-5)
  assert losses[-1] < losses[0]
  again = create_task("synthetic", ClientSpec(num_epochs=1, batch_size=10), seed=3)
  np.testing.assert_array_equal(_first_batch(again.datasets.sample_train_clients(
      1, random_seed=0)[0])["x"], batch["x"])


def test_a_task_trains_with_fedavg_and_evaluates_with_other_batches():
  """Relaxed batch dimensions: training batches of 10 and evaluation batches of 32 both fit."""
  task = create_task("synthetic", ClientSpec(num_epochs=1, batch_size=10, max_elements=50),
                     ClientSpec(num_epochs=1, batch_size=32, shuffle_buffer_size=1))
  model = task.model_fn()
  process = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.01))
  state = process.initialize()
  for round_num in range(2):
    state, metrics = process.next(state, task.datasets.sample_train_clients(
        30, random_seed=derive_seed(0, round_num)))
  train = task.datasets.train_data
  sizes = [len(train.create_dataset(c)) for c in train.client_ids]
  assert int(metrics["client_work"]["train"]["num_examples"]) == sum(min(n, 50) for n in sizes)
  evaluation = algorithms.build_fed_eval(model)
  eval_state = evaluation.set_model_weights(evaluation.initialize(),
                                            process.get_model_weights(state))
  test = [task.datasets.create_test_dataset(c) for c in task.datasets.test_data.client_ids]
  _, eval_metrics = evaluation.next(eval_state, test)
  result = eval_metrics["client_work"]["eval"]["current_round_metrics"]
  assert float(result["loss"]) < np.log(10) - 0.1


# --- Registry and errors --------------------------------------------------------------------------


def test_registry_names_the_four_tasks():
  assert sorted(TASKS) == ["emnist", "emnist_digits", "shakespeare", "synthetic"]
  assert TASKS["emnist"] is emnist.create_character_recognition_task
  assert TASKS["shakespeare"] is shakespeare.create_character_prediction_task


def test_unknown_task_names_the_known_ones():
  with pytest.raises(ValueError) as e:
    create_task("emnst", TRAIN)
  assert str(e.value) == ("Unknown baseline task 'emnst'; known tasks: ['emnist', "
                          "'emnist_digits', 'shakespeare', 'synthetic']. Did you mean 'emnist'?")


def test_unknown_model_is_reported_before_any_data_is_read():
  with pytest.raises(ValueError) as e:
    create_task("emnist", TRAIN, model_id="resnet")
  assert str(e.value) == ("Unknown EMNIST model_id 'resnet'; expected one of ['cnn_dropout', "
                          "'cnn', '2nn', 'linear'].")


def test_a_data_dir_without_the_files_names_what_it_expected(tmp_path):
  with pytest.raises(DataNotFoundError) as e:
    create_task("shakespeare", TRAIN, data_dir=tmp_path)
  message = str(e.value)
  assert str(tmp_path) in message
  assert "['shakespeare_train.h5', 'shakespeare_test.h5'] are missing" in message
  with pytest.raises(DataNotFoundError) as e:
    create_task("emnist", TRAIN, data_dir=tmp_path / "nowhere")
  message = str(e.value)
  assert str(tmp_path / "nowhere") in message
  assert "['fed_emnist_train.h5', 'fed_emnist_test.h5']" in message and "LEAF" in message
  with pytest.raises(DataNotFoundError, match="fed_emnist_digitsonly_train.h5"):
    create_task("emnist_digits", TRAIN, data_dir=tmp_path)


def test_no_data_dir_and_no_download_raises_data_not_found():
  # The autouse `offline` fixture forbids downloads and empties the cache.
  for name, expected in (("shakespeare", "shakespeare_train.h5"),
                         ("emnist", "fed_emnist_train.h5")):
    with pytest.raises(DataNotFoundError) as e:
      create_task(name, TRAIN)
    assert expected in str(e.value) and "Downloads are disabled" in str(e.value)


def test_task_from_datasets_on_tiny_emnist_like_clients():
  rng = np.random.default_rng(0)
  clients = ClientData.from_dict({
      f"w{k}": collections.OrderedDict(label=rng.integers(0, 62, 5).astype(np.int32),
                                       pixels=rng.uniform(0, 1, (5, 28, 28)).astype(np.float32))
      for k in range(3)})
  task = emnist.create_character_recognition_task_from_datasets(
      ClientSpec(1, 4), None, "linear", False, clients, clients, seed=None)
  assert isinstance(task, BaselineTask)
  assert [w.shape for w in task.model_fn().initial_weights.trainable] == [(784, 62), (62,)]
  central = task.datasets.get_centralized_test_data().to_stacked()  # 15 examples, batches of 64.
  assert central["x"].shape == (1, 64, 28, 28, 1) and central["mask"].sum() == 15


def test_emnist_reads_tffs_hdf5_files_from_data_dir(tmp_path):
  h5py = pytest.importorskip("h5py")
  rng = np.random.default_rng(0)
  for split, sizes in (("train", (5, 3)), ("test", (2, 1))):
    with h5py.File(tmp_path / f"fed_emnist_digitsonly_{split}.h5", "w") as f:
      for k, n in enumerate(sizes):
        f.create_dataset(f"examples/f{k:04d}_00/label", data=rng.integers(0, 10, n))
        f.create_dataset(f"examples/f{k:04d}_00/pixels",
                         data=rng.uniform(0, 1, (n, 28, 28)).astype(np.float32))
  task = create_task("emnist_digits", ClientSpec(num_epochs=1, batch_size=4), data_dir=tmp_path)
  assert task.datasets.train_data.client_ids == ["f0000_00", "f0001_00"]
  batches = task.datasets.create_train_dataset("f0000_00", seed=0).to_stacked()
  assert batches["x"].shape == (2, 4, 28, 28, 1) and batches["mask"].sum() == 5


@pytest.mark.parametrize("module", [
    "federax.simulation.baselines.emnist.emnist_preprocessing",
    "federax.simulation.baselines.shakespeare.char_prediction_preprocessing",
    "federax.simulation.baselines.synthetic"])
def test_create_preprocess_fn_names_the_client_spec_it_expects(module):
  create = importlib.import_module(module).create_preprocess_fn
  with pytest.raises(TypeError, match=r"create_preprocess_fn\(preprocess_spec=\.\.\.\) expects a "
                     "ClientSpec, got a dict"):
    create({"num_epochs": 1, "batch_size": 20})
