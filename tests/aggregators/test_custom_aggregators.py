"""TFF's custom_aggregators tutorial, ported by renaming: subclasses overriding `create`.

Each factory is the notebook's code with `tff` renamed `fx`, `tff.tensorflow.computation`
renamed `fx.computation` and `tf.nest.map_structure` renamed `jax.tree.map`; the printed
lines are compared with the outputs TFF printed in docs/tutorials/custom_aggregators.ipynb
(v0.87.0).
"""

import collections

import jax
import numpy as np
import pytest

import federax as fx


class MinimalExampleTaskFactory(fx.aggregators.UnweightedAggregationFactory):

  def create(self, value_type):
    @fx.federated_computation()
    def initialize_fn():
      return fx.federated_value((), fx.SERVER)

    @fx.federated_computation(initialize_fn.type_signature.result,
                              fx.FederatedType(value_type, fx.CLIENTS))
    def next_fn(state, value):
      scaled_value = fx.federated_map(fx.computation(lambda x: x * 2.0), value)
      summed_value = fx.federated_sum(scaled_value)
      unscaled_value = fx.federated_map(fx.computation(lambda x: x / 2.0), summed_value)
      measurements = fx.federated_value((), fx.SERVER)
      return fx.templates.MeasuredProcessOutput(
          state=state, result=unscaled_value, measurements=measurements)

    return fx.templates.AggregationProcess(initialize_fn, next_fn)


class StatefulExampleTaskFactory(fx.aggregators.UnweightedAggregationFactory):

  def create(self, value_type):
    @fx.federated_computation()
    def initialize_fn():
      return fx.federated_value(0.0, fx.SERVER)

    @fx.federated_computation(initialize_fn.type_signature.result,
                              fx.FederatedType(value_type, fx.CLIENTS))
    def next_fn(state, value):
      new_state = fx.federated_map(fx.computation(lambda x: x + 1.0), state)
      state_at_clients = fx.federated_broadcast(new_state)
      scaled_value = fx.federated_map(fx.computation(lambda x, y: x * y),
                                      (value, state_at_clients))
      summed_value = fx.federated_sum(scaled_value)
      unscaled_value = fx.federated_map(fx.computation(lambda x, y: x / y),
                                        (summed_value, new_state))
      return fx.templates.MeasuredProcessOutput(
          state=new_state, result=unscaled_value, measurements=summed_value)

    return fx.templates.AggregationProcess(initialize_fn, next_fn)


@fx.computation()
def scale(value, factor):
  return jax.tree.map(lambda x: x * factor, value)


@fx.computation()
def unscale(value, factor):
  return jax.tree.map(lambda x: x / factor, value)


@fx.computation()
def add_one(value):
  return value + 1.0


class StructuredExampleTaskFactory(fx.aggregators.UnweightedAggregationFactory):

  def create(self, value_type):
    @fx.federated_computation()
    def initialize_fn():
      return fx.federated_value(0.0, fx.SERVER)

    @fx.federated_computation(initialize_fn.type_signature.result,
                              fx.FederatedType(value_type, fx.CLIENTS))
    def next_fn(state, value):
      new_state = fx.federated_map(add_one, state)
      state_at_clients = fx.federated_broadcast(new_state)
      scaled_value = fx.federated_map(scale, (value, state_at_clients))
      summed_value = fx.federated_sum(scaled_value)
      unscaled_value = fx.federated_map(unscale, (summed_value, new_state))
      return fx.templates.MeasuredProcessOutput(
          state=new_state, result=unscaled_value, measurements=summed_value)

    return fx.templates.AggregationProcess(initialize_fn, next_fn)


class ExampleTaskFactory(fx.aggregators.UnweightedAggregationFactory):

  def __init__(self, inner_factory=None):
    if inner_factory is None:
      inner_factory = fx.aggregators.SumFactory()
    self._inner_factory = inner_factory

  def create(self, value_type):
    inner_process = self._inner_factory.create(value_type)

    @fx.federated_computation()
    def initialize_fn():
      my_state = fx.federated_value(0.0, fx.SERVER)
      inner_state = inner_process.initialize()
      return fx.federated_zip((my_state, inner_state))

    @fx.federated_computation(initialize_fn.type_signature.result,
                              fx.FederatedType(value_type, fx.CLIENTS))
    def next_fn(state, value):
      my_state, inner_state = state
      my_new_state = fx.federated_map(add_one, my_state)
      my_state_at_clients = fx.federated_broadcast(my_new_state)
      scaled_value = fx.federated_map(scale, (value, my_state_at_clients))

      # Delegation to an inner factory, returning values placed at SERVER.
      inner_output = inner_process.next(inner_state, scaled_value)

      unscaled_value = fx.federated_map(unscale, (inner_output.result, my_new_state))

      new_state = fx.federated_zip((my_new_state, inner_output.state))
      measurements = fx.federated_zip(
          collections.OrderedDict(
              scaled_value=inner_output.result,
              example_task=inner_output.measurements))

      return fx.templates.MeasuredProcessOutput(
          state=new_state, result=unscaled_value, measurements=measurements)

    return fx.templates.AggregationProcess(initialize_fn, next_fn)


def signatures(process):
  return (f"  - initialize: {process.initialize.type_signature}\n"
          f"  - next: {process.next.type_signature}\n")


def test_minimal_implementation(runtime):
  client_data = [1.0, 2.0, 5.0]
  factory = MinimalExampleTaskFactory()
  aggregation_process = factory.create(fx.TensorType(np.float32))
  assert signatures(aggregation_process) == (
      "  - initialize: ( -> <>@SERVER)\n"
      "  - next: (<state=<>@SERVER,value={float32}@CLIENTS> -> <state=<>@SERVER,"
      "result=float32@SERVER,measurements=<>@SERVER>)\n")
  state = aggregation_process.initialize()
  output = aggregation_process.next(state, client_data)
  assert f"Aggregation result: {output.result}  (expected 8.0)" == (
      "Aggregation result: 8.0  (expected 8.0)")


def test_statefulness_and_measurements(runtime):
  client_data = [1.0, 2.0, 5.0]
  factory = StatefulExampleTaskFactory()
  aggregation_process = factory.create(fx.TensorType(np.float32))
  assert signatures(aggregation_process) == (
      "  - initialize: ( -> float32@SERVER)\n"
      "  - next: (<state=float32@SERVER,value={float32}@CLIENTS> -> <state=float32@SERVER,"
      "result=float32@SERVER,measurements=float32@SERVER>)\n")
  output = aggregation_process.next(aggregation_process.initialize(), client_data)
  printed = []
  for _ in range(3):
    printed.append(f"{output.result} {output.measurements}")
    output = aggregation_process.next(output.state, client_data)
  assert printed == ["8.0 8.0", "8.0 16.0", "8.0 24.0"]


def test_structured_types(runtime):
  client_data = [[[1.0, 2.0], [3.0, 4.0, 5.0]],
                 [[1.0, 1.0], [3.0, 0.0, -5.0]]]
  factory = StructuredExampleTaskFactory()
  aggregation_process = factory.create(
      fx.to_type([(np.float32, (2,)), (np.float32, (3,))]))
  assert signatures(aggregation_process) == (
      "  - initialize: ( -> float32@SERVER)\n"
      "  - next: (<state=float32@SERVER,value={<float32[2],float32[3]>}@CLIENTS> -> "
      "<state=float32@SERVER,result=<float32[2],float32[3]>@SERVER,"
      "measurements=<float32[2],float32[3]>@SERVER>)\n")
  output = aggregation_process.next(aggregation_process.initialize(), client_data)
  assert f"[{output.result[0]}, {output.result[1]}]" == "[[2. 3.], [6. 4. 0.]]"


def test_inner_aggregations(runtime):
  client_data = [1.0, 2.0, 5.0]
  aggregation_process = ExampleTaskFactory().create(fx.TensorType(np.float32))
  output = aggregation_process.next(aggregation_process.initialize(), client_data)
  printed = [f"{output.result} {output.measurements['scaled_value']} "
             f"{output.measurements['example_task']}"]
  output = aggregation_process.next(output.state, client_data)
  printed.append(f"{output.result} {output.measurements['scaled_value']} "
                 f"{output.measurements['example_task']}")
  assert printed == ["8.0 8.0 ()", "8.0 16.0 ()"]


def test_an_inner_example_task_factory(runtime):
  # Each factory multiplies by the iteration index, so together by (1, 4, 9, ...).
  aggregation_process = ExampleTaskFactory(ExampleTaskFactory()).create(
      fx.TensorType(np.float32))
  output = aggregation_process.next(aggregation_process.initialize(), [1.0, 2.0, 5.0])
  # TFF printed with NumPy 1.25, whose scalar repr is `8.0`; NumPy 2 writes `np.float32(8.0)`.
  with np.printoptions(legacy="1.25"):
    printed = [f"{output.result} {output.measurements['scaled_value']} "
               f"{output.measurements['example_task']}"]
    output = aggregation_process.next(output.state, [1.0, 2.0, 5.0])
    printed.append(f"{output.result} {output.measurements['scaled_value']} "
                   f"{output.measurements['example_task']}")
  assert printed == [
      "8.0 8.0 OrderedDict([('scaled_value', 8.0), ('example_task', ())])",
      "8.0 16.0 OrderedDict([('scaled_value', 32.0), ('example_task', ())])"]


class ScaledMeanFactory(fx.aggregators.WeightedAggregationFactory):
  """A TFF-style weighted factory: `create(value_type, weight_type)`, sums delegated."""

  def create(self, value_type, weight_type):
    @fx.federated_computation()
    def initialize_fn():
      return fx.federated_value((), fx.SERVER)

    @fx.federated_computation(initialize_fn.type_signature.result,
                              fx.FederatedType(value_type, fx.CLIENTS),
                              fx.FederatedType(weight_type, fx.CLIENTS))
    def next_fn(state, value, weight):
      total = fx.federated_sum(fx.federated_map(scale, (value, weight)))
      mean = fx.federated_map(unscale, (total, fx.federated_sum(weight)))
      return fx.templates.MeasuredProcessOutput(
          state=state, result=mean, measurements=fx.federated_value((), fx.SERVER))

    return fx.templates.AggregationProcess(initialize_fn, next_fn)


def test_a_tff_style_weighted_factory_is_weighted_and_trains(runtime):
  factory = ScaledMeanFactory()
  assert isinstance(factory, fx.aggregators.WeightedAggregationFactory)
  assert not isinstance(fx.aggregators.SumFactory(), fx.aggregators.WeightedAggregationFactory)
  assert isinstance(fx.aggregators.MeanFactory(), fx.aggregators.WeightedAggregationFactory)
  assert isinstance(fx.aggregators.MeanFactory(), fx.aggregators.UnweightedAggregationFactory)
  assert not isinstance(fx.aggregators.UnweightedMeanFactory(),
                        fx.aggregators.WeightedAggregationFactory)
  process = factory.create(fx.TensorType(np.float32), fx.TensorType(np.float32))
  assert process.is_weighted
  output = process.next(process.initialize(), [1.0, 2.0, 4.0], [1.0, 1.0, 2.0])
  assert float(output.result) == pytest.approx(2.75)

  # The learning algorithms pass it the update and weight types, as TFF's do.
  from federax.simulation.baselines import synthetic
  model = synthetic.create_logistic_regression_model()
  custom = fx.learning.algorithms.build_weighted_fed_avg(
      model, fx.learning.optimizers.build_sgdm(0.1), model_aggregator=ScaledMeanFactory())
  default = fx.learning.algorithms.build_weighted_fed_avg(
      model, fx.learning.optimizers.build_sgdm(0.1))
  train, _ = fx.simulation.datasets.synthetic.load_data(1.0, 1.0, num_clients=3, seed=0)
  data = [train.create_dataset(c).masked_batch(10) for c in train.client_ids]
  custom_state, _ = custom.next(custom.initialize(), data)
  default_state, _ = default.next(default.initialize(), data)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               custom.get_model_weights(custom_state).trainable,
               default.get_model_weights(default_state).trainable)


def test_a_factory_without_create_cannot_be_instantiated():
  class NoCreate(fx.aggregators.UnweightedAggregationFactory):
    pass

  with pytest.raises(TypeError, match="abstract"):
    NoCreate()


def test_subclassing_a_federax_factory_and_overriding_create_keeps_working():
  class Doubled(fx.aggregators.SumFactory):

    def create(self, value_type):
      inner = super().create(value_type)

      @fx.federated_computation(inner.initialize.type_signature.result,
                                fx.FederatedType(value_type, fx.CLIENTS))
      def next_fn(state, value):
        output = inner.next(state, value)
        return fx.templates.MeasuredProcessOutput(
            output.state, fx.federated_map(add_one, output.result), output.measurements)

      return fx.templates.AggregationProcess(inner.initialize, next_fn)

  process = Doubled().create(fx.TensorType(np.float32))
  assert float(process.next(process.initialize(), [1.0, 2.0]).result) == 4.0
