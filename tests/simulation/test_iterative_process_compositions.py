"""Dataset computations composed with computations and processes (TFF's compositions)."""

import collections
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights
from federax.simulation import iterative_process_compositions as compositions

FEATURES, CLASSES, BATCH = 4, 3, 5
SPEC = collections.OrderedDict(x=(np.float32, [BATCH, FEATURES]), y=(np.int32, [BATCH]),
                               mask=(np.bool_, [BATCH]))


def linear_model():
  rng = np.random.default_rng(0)
  weights = ModelWeights([rng.normal(size=(FEATURES, CLASSES)).astype(np.float32) * 0.3,
                          rng.normal(size=CLASSES).astype(np.float32) * 0.1], [])

  def predict(weights, x, training):
    kernel, bias = weights.trainable
    return x @ kernel + bias

  def loss(logits, labels, sample_weight):
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
    return jnp.sum(losses * sample_weight) / jnp.maximum(jnp.sum(sample_weight), 1.0)

  return FunctionalModel(initial_weights=weights, predict_on_batch_fn=predict, loss_fn=loss,
                         input_spec=SPEC)


def client_data(sizes=(7, 12, 3)):
  """Clients with plain-dict features: their elements' keys sort as <mask,x,y>, unlike SPEC."""
  rng = np.random.default_rng(1)
  return fx.simulation.ClientData.from_dict({
      f"client_{i}": {"x": rng.normal(size=(n, FEATURES)).astype(np.float32),
                      "y": rng.integers(0, CLASSES, n).astype(np.int32)}
      for i, n in enumerate(sizes)}).preprocess(lambda ds: ds.masked_batch(BATCH))


def fed_avg():
  return algorithms.build_weighted_fed_avg(linear_model(), optimizers.build_sgdm(0.3),
                                           optimizers.build_sgdm(0.7))


def test_fed_avg_composed_with_a_dataset_computation_takes_client_ids():
  cd, process = client_data(), fed_avg()
  dataset_type = "<mask=bool[5],x=float32[5,4],y=int32[5]>*"
  assert str(cd.dataset_computation.type_signature) == f"(str -> {dataset_type})"
  composed = fx.simulation.compose_dataset_computation_with_learning_process(
      cd.dataset_computation, process)
  assert isinstance(composed, fx.learning.templates.LearningProcess)
  expected = str(process.next.type_signature).replace(
      "client_data={<x=float32[5,4],y=int32[5],mask=bool[5]>*}@CLIENTS",
      "client_data={str}@CLIENTS")
  assert "client_data={str}@CLIENTS" in expected
  assert str(composed.next.type_signature) == expected
  assert str(composed.next.type_signature.parameter[1]) == "{str}@CLIENTS"
  assert composed.initialize is process.initialize
  assert composed.get_model_weights is process.get_model_weights


def test_training_on_client_ids_gives_the_numbers_of_training_on_datasets(runtime):
  cd, process = client_data(), fed_avg()
  composed = fx.simulation.compose_dataset_computation_with_learning_process(
      cd.dataset_computation, process)
  ids = cd.client_ids
  by_ids = by_datasets = process.initialize()
  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    for _ in range(3):
      by_ids, metrics_ids = composed.next(by_ids, ids)
      by_datasets, metrics = process.next(by_datasets, [cd.create_dataset(c) for c in ids])
      assert metrics_ids == metrics
  assert metrics["client_work"]["train"]["num_examples"] == 22
  for got, want in zip(composed.get_model_weights(by_ids).trainable,
                       process.get_model_weights(by_datasets).trainable):
    np.testing.assert_array_equal(got, want)


def test_on_the_vectorized_runtime_the_round_on_client_ids_reuses_the_compiled_round():
  cd, process = client_data(), fed_avg()
  composed = fx.simulation.compose_dataset_computation_with_learning_process(
      cd.dataset_computation, process)
  runtime = fx.runtime.vectorized()
  with runtime, warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    state = process.initialize()
    traced = runtime.programs_traced
    state, _ = process.next(state, [cd.create_dataset(c) for c in cd.client_ids])
    assert runtime.programs_traced == traced + 1  # The round: one program.
    for _ in range(2):
      state, _ = composed.next(state, cd.client_ids)
    explained = fx.runtime.explain(composed.next, state, cd.client_ids)
  assert runtime.programs_traced == traced + 1  # Datasets built on the host; the round compiled.
  assert explained.startswith("next_fn_with_datasets: runs on the host")


def test_a_dataset_computation_maps_over_client_ids(runtime):
  cd = fx.simulation.ClientData.from_dict({"a": {"v": np.arange(3, dtype=np.int32)},
                                           "b": {"v": np.arange(5, dtype=np.int32)}})

  @fx.federated_computation(fx.FederatedType(np.str_, fx.CLIENTS))
  def totals(client_ids):
    return fx.sequence_sum(fx.federated_map(cd.dataset_computation, client_ids))

  assert str(totals.type_signature) == "({str}@CLIENTS -> {<v=int32>}@CLIENTS)"
  assert [int(r["v"]) for r in totals(["b", "a", "b"])] == [10, 3, 10]


def test_a_nested_dataset_parameter_is_found_and_replaced(runtime):
  dataset = fx.computation(np.int32, result=fx.SequenceType(np.float32))(
      lambda n: [np.float32(i) for i in range(int(n))])

  @fx.federated_computation(fx.FederatedType(np.float32, fx.SERVER),
                            fx.StructType([("data", fx.FederatedType(fx.SequenceType(np.float32),
                                                                     fx.CLIENTS)),
                                           ("weight", fx.FederatedType(np.float32, fx.CLIENTS))]))
  def body(scale, clients):
    totals = fx.sequence_sum(clients.data)
    return scale, fx.federated_mean(totals, clients.weight)

  composed = fx.simulation.compose_dataset_computation_with_computation(dataset, body)
  assert str(composed.type_signature) == (
      "(<scale=float32@SERVER,clients=<data={int32}@CLIENTS,weight={float32}@CLIENTS>> -> "
      "<float32@SERVER,float32@SERVER>)")
  scale, mean = composed(2.0, {"data": [3, 4], "weight": [1.0, 3.0]})
  assert scale == 2.0 and mean == pytest.approx((3.0 * 1 + 6.0 * 3) / 4)


def test_an_iterative_process_keeps_its_initialize():
  dataset = fx.computation(np.int32, result=fx.SequenceType(np.int32))(
      lambda n: list(range(int(n))))
  initialize = fx.federated_computation(lambda: fx.federated_value(np.int32(0), fx.SERVER))

  @fx.federated_computation(fx.FederatedType(np.int32, fx.SERVER),
                            fx.FederatedType(fx.SequenceType(np.int32), fx.CLIENTS))
  def next_fn(state, data):
    return fx.federated_map(fx.computation(lambda a, b: a + b),
                            (state, fx.federated_sum(fx.sequence_sum(data))))

  process = fx.simulation.compose_dataset_computation_with_iterative_process(
      dataset, fx.templates.IterativeProcess(initialize, next_fn))
  assert str(process.next.type_signature) == (
      "(<state=int32@SERVER,data={int32}@CLIENTS> -> int32@SERVER)")
  state = process.initialize()
  for _ in range(2):
    state = process.next(state, [3, 4])
  assert state == 2 * (3 + 6)


# --- Errors, with TFF's classes ---

DATASET = fx.computation(np.str_, result=fx.SequenceType(np.float32))(lambda _: [])


def test_a_body_without_client_sequences_is_refused():
  body = fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))(
      lambda x: fx.federated_sum(x))
  with pytest.raises(compositions.SequenceTypeNotFoundError,
                     match=r"compose_dataset_computation_with_computation: the computation "
                           r"takes no client sequence.*\n  expected: \{float32\*\}@CLIENTS"):
    fx.simulation.compose_dataset_computation_with_computation(DATASET, body)


def test_a_body_whose_sequences_have_another_type_is_refused():
  body = fx.federated_computation(fx.FederatedType(fx.SequenceType(np.int32), fx.CLIENTS))(
      lambda d: fx.federated_sum(fx.sequence_sum(d)))
  with pytest.raises(compositions.SequenceTypeNotAssignableError,
                     match=r"none of the computation's client sequences has the dataset "
                           r"computation's type.\n  expected: float32\*\n  actual:   int32\*"):
    fx.simulation.compose_dataset_computation_with_computation(DATASET, body)


def test_a_body_with_two_matching_sequences_is_refused():
  sequences = fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS)
  body = fx.federated_computation(sequences, sequences)(
      lambda a, b: fx.federated_sum(fx.sequence_sum(a)))
  with pytest.raises(compositions.MultipleMatchingSequenceTypesError,
                     match="more than one client sequence of the dataset type"):
    fx.simulation.compose_dataset_computation_with_computation(DATASET, body)


def test_a_dataset_computation_must_take_an_id_and_return_a_sequence():
  body = fx.federated_computation(fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS))(
      lambda d: fx.federated_sum(fx.sequence_sum(d)))
  not_a_dataset = fx.computation(np.str_)(lambda s: len(s))
  with pytest.raises(fx.FederatedTypeError, match=r"dataset_computation must return a sequence"
                     r".*\n  expected: \(T -> U\*\)\n  actual:   \(str -> int32\)"):
    fx.simulation.compose_dataset_computation_with_computation(not_a_dataset, body)
  no_argument = fx.computation(result=fx.SequenceType(np.float32))(lambda: [])
  with pytest.raises(fx.FederatedTypeError, match="dataset_computation must take an argument"):
    fx.simulation.compose_dataset_computation_with_computation(no_argument, body)
  with pytest.raises(TypeError, match="must be an fx computation"):
    fx.simulation.compose_dataset_computation_with_computation(lambda s: [], body)


def test_a_process_whose_initialize_returns_a_dataset_is_refused():
  initialize = fx.computation(result=fx.SequenceType(np.float32))(lambda: [])

  @fx.federated_computation(fx.SequenceType(np.float32),
                            fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS))
  def next_fn(state, data):
    return state

  process = fx.templates.IterativeProcess(initialize, next_fn)
  with pytest.raises(fx.FederatedTypeError, match=r"initialize must not return a dataset.\n"
                     r"  actual:   float32\*"):
    fx.simulation.compose_dataset_computation_with_iterative_process(DATASET, process)


def test_processes_of_the_wrong_kind_are_refused():
  initialize = fx.federated_computation(lambda: fx.federated_value(np.int32(0), fx.SERVER))
  body = fx.federated_computation(fx.FederatedType(np.int32, fx.SERVER),
                                  fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS))(
      lambda state, data: state)
  process = fx.templates.IterativeProcess(initialize, body)
  with pytest.raises(TypeError, match="expected an IterativeProcess"):
    fx.simulation.compose_dataset_computation_with_iterative_process(DATASET, body)
  with pytest.raises(TypeError, match="expected a LearningProcess"):
    fx.simulation.compose_dataset_computation_with_learning_process(DATASET, process)
