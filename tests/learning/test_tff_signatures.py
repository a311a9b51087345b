"""The learning processes' type signatures, compared as strings with those TFF 0.87 prints.

TFF's strings come from its tutorials' outputs (docs/tutorials/*.ipynb at v0.87.0) or from
TFF 0.87 itself run on the same model. Where federax differs by design, the test says so and
edits TFF's string by exactly that difference:

* federax counts examples and batches in int32 scalars (JAX without x64); TFF's Keras counters
  are int64, held in a one-element list (`num_examples=<int64>`).
* every federax model reports 'loss', 'num_examples' and 'num_batches' besides its own metrics
  (those it does not define itself); TFF's functional and hand-written models report only
  their own.
* the training metrics end with `num_non_finite_clients=int32`, the clients dropped for a NaN
  or Inf, as TFF's do after 0.89 (`model_delta_client_work.NUM_NON_FINITE_CLIENTS_KEY`).
"""

import collections

import jax
import jax.numpy as jnp
import keras
import numpy as np

from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights, from_keras_model
from federax.learning.models import functional_model_from_keras

SPEC = collections.OrderedDict(x=(np.float32, [None, 784]), y=(np.int32, [None, 1]))
WEIGHTS = "<global_model_weights=<trainable=<float32[784,10],float32[10]>,non_trainable=<>>"
DATA = "client_data={<x=float32[?,784],y=int32[?,1]>*}@CLIENTS"


def keras_model_fn():
  keras_model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10),
                                  keras.layers.Softmax()])
  return from_keras_model(keras_model, loss=keras.losses.SparseCategoricalCrossentropy(),
                          input_spec=SPEC, metrics=[keras.metrics.SparseCategoricalAccuracy()])


def test_fed_eval_of_a_keras_model():
  # TFF: build_fed_eval(model_fn) with tff.learning.models.from_keras_model, same model.
  state = (f"{WEIGHTS},distributor=<>,client_work=<<>,<sparse_categorical_accuracy=<float32,"
           "float32>,loss=<float32,float32>,num_examples=<int64>,num_batches=<int64>>>,"
           "aggregator=<value_sum_process=<>,weight_sum_process=<>>,finalizer=<>>@SERVER")
  metrics = ("<sparse_categorical_accuracy=float32,loss=float32,num_examples=int64,"
             "num_batches=int64>")
  tff = (f"(<state={state},{DATA}> -> <state={state},metrics=<distributor=<>,client_work=<eval="
         f"<current_round_metrics={metrics},total_rounds_metrics={metrics}>>,aggregator=<"
         "mean_value=<>,mean_weight=<>>,finalizer=<>>@SERVER>)")
  ours = tff.replace("=<int64>", "=int32").replace("=int64", "=int32")
  assert str(algorithms.build_fed_eval(keras_model_fn).next.type_signature) == ours


def mnist_model():
  """TFF's hand-written MnistModel (federated_learning_for_image_classification), ported."""
  def predict_on_batch(weights, x, training):
    kernel, bias = weights.trainable
    return jax.nn.softmax(x @ kernel + bias)

  def loss_fn(predictions, labels, sample_weight):
    p = jnp.take_along_axis(predictions, labels.reshape(-1, 1), axis=1)[:, 0]
    return jnp.sum(-jnp.log(p) * sample_weight) / jnp.maximum(jnp.sum(sample_weight), 1.0)

  def initialize():
    zero = jnp.zeros([], jnp.float32)
    return collections.OrderedDict(num_examples=[zero], loss=[zero, zero], accuracy=[zero, zero])

  def update(state, labels, batch_output, sample_weight):
    n = jnp.sum(sample_weight)
    correct = jnp.argmax(batch_output.predictions, -1) == labels.reshape(-1)
    return collections.OrderedDict(
        num_examples=[state["num_examples"][0] + n],
        loss=[state["loss"][0] + batch_output.loss * n, state["loss"][1] + n],
        accuracy=[state["accuracy"][0] + jnp.sum(correct * sample_weight),
                  state["accuracy"][1] + n])

  def finalize(state):
    return collections.OrderedDict(num_examples=state["num_examples"][0],
                                   loss=state["loss"][0] / state["loss"][1],
                                   accuracy=state["accuracy"][0] / state["accuracy"][1])

  return FunctionalModel(
      initial_weights=ModelWeights([np.zeros((784, 10), np.float32), np.zeros(10, np.float32)],
                                   []),
      predict_on_batch_fn=predict_on_batch, loss_fn=loss_fn,
      metrics_fns=(initialize, update, finalize), input_spec=SPEC)


def test_fed_eval_of_the_hand_written_mnist_model():
  # The notebook's print of evaluation_process.next.type_signature, whitespace removed.
  state = (f"{WEIGHTS},distributor=<>,client_work=<<>,<num_examples=<float32>,loss=<float32,"
           "float32>,accuracy=<float32,float32>>>,aggregator=<value_sum_process=<>,"
           "weight_sum_process=<>>,finalizer=<>>@SERVER")
  metrics = "<num_examples=float32,loss=float32,accuracy=float32>"
  tff = (f"(<state={state},{DATA}> -> <state={state},metrics=<distributor=<>,client_work=<eval="
         f"<current_round_metrics={metrics},total_rounds_metrics={metrics}>>,aggregator=<"
         "mean_value=<>,mean_weight=<>>,finalizer=<>>@SERVER>)")
  # Its own metrics, as TFF's, with nothing added.
  assert str(algorithms.build_fed_eval(mnist_model()).next.type_signature) == tff


def test_fed_avg_of_a_functional_keras_model_with_a_momentum_server():
  # TFF: build_weighted_fed_avg(functional_model_from_keras(...), build_sgdm(0.02),
  # build_sgdm(1.0, momentum=0.9)), the model of building_your_own_federated_learning_algorithm.
  keras_model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10),
                                  keras.layers.Softmax()])
  model = functional_model_from_keras(
      keras_model, loss_fn=keras.losses.SparseCategoricalCrossentropy(), input_spec=SPEC,
      metrics_constructor=collections.OrderedDict(
          accuracy=keras.metrics.SparseCategoricalAccuracy))
  state = (f"{WEIGHTS},distributor=<>,client_work=<>,aggregator=<value_sum_process=<>,"
           "weight_sum_process=<>>,finalizer=<learning_rate=float32,momentum=float32,"
           "accumulator=<float32[784,10],float32[10]>>>@SERVER")
  tff = (f"(<state={state},{DATA}> -> <state={state},metrics=<distributor=<>,client_work=<"
         "train=<accuracy=float32,num_non_finite_clients=int32>>,aggregator=<mean_value=<>,"
         "mean_weight=<>>,finalizer=<"
         "update_non_finite=int32>>@SERVER>)")
  process = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.02),
                                              optimizers.build_sgdm(1.0, momentum=0.9))
  assert str(process.next.type_signature) == tff
