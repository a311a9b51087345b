"""The tutorials' scenarios in examples/: composed and hand-built FedAvg agree with the library's."""

import pathlib
import sys

import jax
import numpy as np
import pytest

import federax as fx
from federax.learning import algorithms, optimizers

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "examples"))
import building_your_own_algorithm  # noqa: E402
import composing_learning_algorithms as composing  # noqa: E402


@pytest.fixture(scope="module")
def data():
  return composing.client_datasets(num_clients=4, seed=0)


def run(process, data, rounds=2):
  state = process.initialize()
  for _ in range(rounds):
    output = process.next(state, data)
    is_learning = isinstance(output, fx.learning.templates.LearningProcessOutput)
    state = output.state if is_learning else output
  return state


def leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_composed_clipping_with_a_loose_bound_is_weighted_fed_avg(data):
  model = composing.logistic_regression(data[0].element_spec)
  composed = composing.build_fed_avg_with_clipping(model, 0.05, clip_norm=1e9)
  stock = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.05))
  assert str(composed.initialize.type_signature) == str(stock.initialize.type_signature)
  for got, want in zip(leaves(composed.get_model_weights(run(composed, data))),
                       leaves(stock.get_model_weights(run(stock, data)))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_composed_clipping_bounds_every_local_step(data):
  model = composing.logistic_regression(data[0].element_spec)
  clip_norm, learning_rate = 0.01, 0.05
  process = composing.build_fed_avg_with_clipping(model, learning_rate, clip_norm)
  state, metrics = process.next(process.initialize(), data)
  steps = max(len(list(d)) for d in data)
  update = np.sqrt(sum(np.sum(x ** 2) for x in leaves(process.get_model_weights(state))))
  assert 0 < update <= steps * learning_rate * clip_norm * (1 + 1e-5)
  assert set(metrics["client_work"]["train"]) == {
      "loss", "num_examples", "num_batches", "sparse_categorical_accuracy"}


def test_hand_built_fed_avg_is_unweighted_fed_avg(data):
  model = composing.logistic_regression(data[0].element_spec)
  own = building_your_own_algorithm.build_fed_avg(model, optimizers.build_sgdm(0.05),
                                                  optimizers.build_sgdm(1.0))
  stock = algorithms.build_unweighted_fed_avg(model, optimizers.build_sgdm(0.05))
  own_weights = run(own, data)[0]
  for got, want in zip(leaves(own_weights), leaves(stock.get_model_weights(run(stock, data)))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert isinstance(own, fx.templates.IterativeProcess)
