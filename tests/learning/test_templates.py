"""The learning templates: what they print, and every misuse they reject, with its message."""

import re

import numpy as np
import optax
import pytest

import federax as fx
from federax import aggregators
from federax.learning import algorithms, metrics, optimizers, templates

from test_algorithms import linear_model, make_clients

FORMATTED_STATE = """( -> <
  global_model_weights=<
    trainable=<
      float32[4,3],
      float32[3]
    >,
    non_trainable=<>
  >,
  distributor=<>,
  client_work=<>,
  aggregator=<
    value_sum_process=<>,
    weight_sum_process=<>
  >,
  finalizer=<
    learning_rate=float32
  >
>@SERVER)"""


def test_fed_avg_state_prints_as_tff_prints_it():
  process = algorithms.build_weighted_fed_avg(linear_model(), optimizers.build_sgdm(0.1))
  assert process.initialize.type_signature.formatted_representation() == FORMATTED_STATE
  assert str(process.next.type_signature.result.metrics) == (
      "<distributor=<>,client_work=<train=<loss=float32,num_examples=int32,num_batches=int32,"
      "num_non_finite_clients=int32>>,aggregator=<mean_value=<>,mean_weight=<>>,finalizer=<update_non_finite=int32>>@SERVER")
  assert str(process.client_data_type) == "{<x=float32[5,4],y=int32[5],mask=bool[5]>*}@CLIENTS"


def test_set_and_get_model_weights_round_trip():
  process = algorithms.build_weighted_fed_avg(linear_model(), optimizers.build_sgdm(0.1))
  other = linear_model(seed=7).initial_weights
  state = process.set_model_weights(process.initialize(), other)
  np.testing.assert_array_equal(process.get_model_weights(state).trainable[0],
                                other.trainable[0])
  state, _ = process.next(state, make_clients())
  assert not np.array_equal(process.get_model_weights(state).trainable[0], other.trainable[0])


def test_optax_transforms_and_optimizer_factories_are_accepted():
  model, clients = linear_model(), make_clients()
  by_optax = algorithms.build_weighted_fed_avg(model, optax.sgd(0.3))
  by_factory = algorithms.build_weighted_fed_avg(model, lambda: optimizers.build_sgdm(0.3))
  a, _ = by_optax.next(by_optax.initialize(), clients)
  b, _ = by_factory.next(by_factory.initialize(), clients)
  np.testing.assert_allclose(by_optax.get_model_weights(a).trainable[0],
                             by_factory.get_model_weights(b).trainable[0], rtol=1e-6)


def test_client_weighting_by_function_of_the_metrics():
  model, clients = linear_model(), make_clients()
  by_count = algorithms.build_weighted_fed_avg(
      model, optimizers.build_sgdm(0.3),
      client_weighting=lambda unfinalized: unfinalized["num_examples"])
  stock = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.3))
  a, _ = by_count.next(by_count.initialize(), clients)
  b, _ = stock.next(stock.initialize(), clients)
  np.testing.assert_allclose(by_count.get_model_weights(a).trainable[0],
                             stock.get_model_weights(b).trainable[0], rtol=1e-6)


def test_algorithm_arguments_are_checked():
  model = linear_model()
  sgd = optimizers.build_sgdm(0.1)
  with pytest.raises(TypeError, match=r"build_weighted_fed_avg: model_fn must be a "
                     r"fx.learning.models.FunctionalModel or a no-argument function returning "
                     r"one; got 3"):
    algorithms.build_weighted_fed_avg(3, sgd)
  with pytest.raises(TypeError, match=r"which returned 'oops'"):
    algorithms.build_weighted_fed_avg(lambda: "oops", sgd)
  with pytest.raises(TypeError, match=r"optimizer_fn must be a fx.learning.optimizers optimizer"):
    algorithms.build_weighted_fed_avg(model, "sgd")
  with pytest.raises(TypeError, match=r"client_weighting must be a fx.learning.ClientWeighting"):
    algorithms.build_weighted_fed_avg(model, sgd, client_weighting="examples")
  with pytest.raises(ValueError, match=r"proximal_strength must be a number >= 0 \(0 is "
                     r"FedAvg\); got -1"):
    algorithms.build_weighted_fed_prox(model, -1, sgd)
  with pytest.raises(TypeError, match=r"model_aggregator must support weights"):
    algorithms.build_weighted_fed_avg(model, sgd,
                                      model_aggregator=aggregators.UnweightedMeanFactory())
  with pytest.raises(TypeError, match=r"model_aggregator must be an aggregation factory"):
    algorithms.build_weighted_fed_avg(model, sgd, model_aggregator=np.mean)
  with pytest.raises(TypeError, match=r"model_distributor must be a "
                     r"fx.learning.templates.DistributionProcess"):
    algorithms.build_weighted_fed_avg(model, sgd, model_distributor=object())
  with pytest.raises(TypeError, match=r"client_learning_rate_fn \(round -> rate\) and "
                     r"client_optimizer_fn \(rate -> optimizer\) must be functions"):
    algorithms.build_weighted_fed_avg_with_optimizer_schedule(model, 0.1, sgd)
  with pytest.raises(ValueError, match=r"learning_rate_fn needs an optimizer with a "
                     r"'learning_rate' hyperparameter; this one has \[\]"):
    templates.build_model_delta_client_work(model, optax.sgd(0.1),
                                            learning_rate_fn=lambda r: 0.1)
  with pytest.raises(ValueError, match=r"proximal_strength must be >= 0; got -0.5"):
    templates.build_model_delta_client_work(model, sgd, proximal_strength=-0.5)
  with pytest.raises(TypeError, match=r"metric_finalizers must be a function"):
    metrics.sum_then_finalize({"loss": None}, fx.TensorType(np.float32))
  with pytest.raises(TypeError, match=r"unfinalized metrics must be numeric tensors"):
    metrics.sum_then_finalize(lambda s: s, fx.TensorType(np.str_))


def test_blocks_are_checked_when_composed():
  model = linear_model()
  weights_type = fx.type_of(model.initial_weights)
  initial = fx.computation(lambda: model.initial_weights)
  distributor = templates.build_broadcast_process(weights_type)
  client_work = templates.build_model_delta_client_work(model, optimizers.build_sgdm(0.1))
  aggregator = aggregators.MeanFactory().create(weights_type.trainable, np.float32)
  finalizer = templates.build_apply_optimizer_finalizer(optimizers.build_sgdm(1.0), weights_type)
  templates.compose_learning_process(initial, distributor, client_work, aggregator, finalizer)

  with pytest.raises(TypeError, match=r"compose_learning_process: client_work must be a "
                     r"ClientWorkProcess"):
    templates.compose_learning_process(initial, distributor, aggregator, aggregator, finalizer)
  other = linear_model().initial_weights._replace(trainable=[np.zeros((2, 3), np.float32),
                                                             np.zeros(3, np.float32)])
  with pytest.raises(fx.FederatedTypeError, match=r"do not accept the initial model weights"):
    templates.compose_learning_process(fx.computation(lambda: other), distributor, client_work,
                                       aggregator, finalizer)
  small = aggregators.MeanFactory().create(fx.TensorType(np.float32, [3]), np.float32)
  with pytest.raises(fx.FederatedTypeError, match=r"the aggregator does not accept the client "
                     r"work's updates"):
    templates.compose_learning_process(initial, distributor, client_work, small, finalizer)
  with pytest.raises(TypeError, match=r"build_broadcast_process takes the unplaced value type"):
    templates.build_broadcast_process(fx.FederatedType(weights_type, fx.SERVER))
  with pytest.raises(TypeError, match=r"model_weights_type must be the type of "
                     r"ModelWeights\(trainable, non_trainable\)"):
    templates.build_apply_optimizer_finalizer(optimizers.build_sgdm(1.0),
                                              fx.TensorType(np.float32))


def test_template_classes_check_placements():
  @fx.federated_computation
  def initialize():
    return fx.federated_value((), fx.SERVER)

  value = fx.FederatedType(np.float32, fx.SERVER)

  @fx.federated_computation(initialize.type_signature.result, value)
  def stays_at_server(state, weights):
    return fx.templates.MeasuredProcessOutput(state, weights, fx.federated_value((), fx.SERVER))

  with pytest.raises(fx.FederatedTypeError) as info:
    templates.DistributionProcess(initialize, stays_at_server)
  # One check and one text with the aggregators (federax/templates/_checks.py).
  assert re.fullmatch(
      re.escape("DistributionProcess: the result must be placed at CLIENTS.\n"
                "  expected: {T}@CLIENTS\n"
                "  actual:   float32@SERVER\n"
                f"  at {__file__}:") + r"\d+: " + re.escape(
                    "templates.DistributionProcess(initialize, stays_at_server)"),
      str(info.value))
  with pytest.raises(fx.FederatedTypeError, match=r"next_fn must take \(state, weights, "
                     r"update\)"):
    templates.FinalizerProcess(initialize, stays_at_server)
  with pytest.raises(fx.FederatedTypeError, match=r"next_fn must take \(state, weights, "
                     r"client_data\)"):
    templates.ClientWorkProcess(initialize, stays_at_server)

  @fx.federated_computation(initialize.type_signature.result, value,
                            fx.FederatedType(np.float32, fx.CLIENTS))
  def not_a_client_result(state, weights, data):
    return fx.templates.MeasuredProcessOutput(state, data, fx.federated_value((), fx.SERVER))

  with pytest.raises(fx.FederatedTypeError, match=r"the weights must be placed at CLIENTS"):
    templates.ClientWorkProcess(initialize, not_a_client_result)

  @fx.federated_computation(initialize.type_signature.result,
                            fx.FederatedType(np.float32, fx.CLIENTS))
  def wrong_output(state, data):
    return state, fx.federated_sum(data)

  get = fx.computation(fx.StructType([]))(lambda s: s)
  with pytest.raises(fx.FederatedTypeError, match=r"next_fn must return "
                     r"LearningProcessOutput\(state, metrics\)"):
    templates.LearningProcess(initialize, wrong_output, get, get)


def test_a_learning_process_is_named_as_its_user_calls_it():
  process = algorithms.build_weighted_fed_avg(linear_model(), optimizers.build_sgdm(0.1))
  state = process.initialize()
  # It used to name `compose_learning_process.<locals>.next_fn`, a function the user never wrote.
  with pytest.raises(fx.FederatedTypeError) as info:
    process.next(state)
  assert re.fullmatch(
      re.escape("LearningProcess.next: arguments: expected fields ['state', 'client_data'], got "
                "['global_model_weights', 'distributor', 'client_work', 'aggregator', "
                "'finalizer'].\n"
                f"  expected: {process.next.type_signature.parameter}\n"
                "  actual:   LearningAlgorithmState(") + r"[^\n]*"
      + re.escape(f"\n  at {__file__}:") + r"\d+: " + re.escape("process.next(state)"),
      str(info.value))
  assert repr(process.initialize).startswith("<fx.federated_computation LearningProcess"
                                             ".initialize: ")
