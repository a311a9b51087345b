"""TFF 0.87's composing tutorial, verbatim but for the data (exported writers), the
initial kernel (Keras 3's GlorotNormal(seed=0)) and the update's sign (initial minus new, as
the federax notebook and TFF's own FedAvg client work compute it).

    benchmarks/peers/tff/.venv/bin/python tests/tutorials/tff_reference/composing.py DIR

(DIR written by export_inputs.py; run from the project root.)
"""
import collections
import os
import sys
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

z = np.load(os.path.join(sys.argv[1], 'first_writers.npz'))
@tf.function
def client_update(model, dataset, initial_weights, client_optimizer):
  num_examples = 0.0
  trainable_weights, non_trainable_weights = (initial_weights.trainable,
      initial_weights.non_trainable)
  optimizer_state = client_optimizer.initialize(
      tf.nest.map_structure(lambda x: tf.TensorSpec, trainable_weights))
  for batch in dataset:
    x, y = batch
    with tf.GradientTape() as tape:
      tape.watch(trainable_weights)
      logits = model.predict_on_batch(model_weights=(trainable_weights, non_trainable_weights),
          x=x, training=True)
      num_examples += tf.cast(tf.shape(y)[0], tf.float32)
      loss = model.loss(output=logits, label=y)
    grads = tape.gradient(loss, trainable_weights)
    gradient_norm = tf.linalg.global_norm(grads)
    if gradient_norm > 1:
      grads = tf.nest.map_structure(lambda x: x / gradient_norm, grads)
    optimizer_state, trainable_weights = client_optimizer.next(optimizer_state, trainable_weights,
        grads)
  client_update = tf.nest.map_structure(tf.subtract, initial_weights[0], trainable_weights)
  return tff.learning.templates.ClientResult(update=client_update, update_weight=num_examples)
def build_gradient_clipping_client_work(model, optimizer):
  data_type = tff.SequenceType(tff.types.tensorflow_to_type(model.input_spec))
  model_weights_type = tff.types.to_type(tf.nest.map_structure(
      lambda arr: tff.types.TensorType(shape=arr.shape, dtype=arr.dtype),
      tff.learning.models.ModelWeights(*model.initial_weights)))
  @tff.federated_computation
  def initialize_fn():
    return tff.federated_value((), tff.SERVER)
  @tff.tensorflow.computation(model_weights_type, data_type)
  def client_update_computation(model_weights, dataset):
    return client_update(model, dataset, model_weights, optimizer)
  @tff.federated_computation(initialize_fn.type_signature.result,
      tff.FederatedType(model_weights_type, tff.CLIENTS), tff.FederatedType(data_type, tff.CLIENTS))
  def next_fn(state, model_weights, client_dataset):
    client_result = tff.federated_map(client_update_computation, (model_weights, client_dataset))
    measurements = tff.federated_value((), tff.SERVER)
    return tff.templates.MeasuredProcessOutput(state, client_result, measurements)
  return tff.learning.templates.ClientWorkProcess(initialize_fn, next_fn)
NUM_CLIENTS = 10
BATCH_SIZE = 20
def preprocess(dataset):
  def batch_format_fn(element):
    return (tf.reshape(element['pixels'], [-1, 784]), tf.reshape(element['label'], [-1, 1]))
  return dataset.batch(BATCH_SIZE).map(batch_format_fn)
federated_train_data = [preprocess(tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
    label=z[f'train_y_{i}'], pixels=z[f'train_x_{i}']))) for i in range(NUM_CLIENTS)]
initializer = tf.keras.initializers.GlorotNormal(seed=0)
keras_model = tf.keras.models.Sequential([
    tf.keras.layers.Input(shape=(784,)),
    tf.keras.layers.Dense(10, kernel_initializer=initializer),
    tf.keras.layers.Softmax(),
])
keras_model.set_weights([z['kernel'], z['bias']])
tff_model = tff.learning.models.functional_model_from_keras(
    keras_model, loss_fn=tf.keras.losses.SparseCategoricalCrossentropy(),
    input_spec=federated_train_data[0].element_spec,
    metrics_constructor=collections.OrderedDict(
        accuracy=tf.keras.metrics.SparseCategoricalAccuracy))
client_optimizer = tff.learning.optimizers.build_sgdm(learning_rate=0.01)
server_optimizer = tff.learning.optimizers.build_sgdm(learning_rate=1.0)
@tff.tensorflow.computation
def initial_model_weights_fn():
  return tff.learning.models.ModelWeights(*tff_model.initial_weights)
model_weights_type = initial_model_weights_fn.type_signature.result
distributor = tff.learning.templates.build_broadcast_process(model_weights_type)
client_work = build_gradient_clipping_client_work(tff_model, client_optimizer)
aggregator_factory = tff.aggregators.MeanFactory()
aggregator = aggregator_factory.create(model_weights_type.trainable, tff.TensorType(np.float32))
finalizer = tff.learning.templates.build_apply_optimizer_finalizer(server_optimizer,
    model_weights_type)
fed_avg_with_clipping = tff.learning.templates.compose_learning_process(
    initial_model_weights_fn, distributor, client_work, aggregator, finalizer)
state = fed_avg_with_clipping.initialize()
print(state.client_work)
print(state.finalizer)
learning_process_output = fed_avg_with_clipping.next(state, federated_train_data)
print(learning_process_output.state.finalizer)
print(learning_process_output.metrics)
print(fed_avg_with_clipping.next.type_signature)
kernel, bias = learning_process_output.state.global_model_weights.trainable
print('WEIGHTS', float(np.sum(kernel)), float(np.sum(np.abs(kernel - z['kernel']))),
    np.asarray(bias).tolist())
