"""The deleted TFF tutorial custom_federated_algorithm_with_tff_optimizers, as of
6667ecbb (619b92271^), verbatim but for the data (the exported writers: sorted ids) and the
rounds (argv).

    benchmarks/peers/tff/.venv/bin/python tests/tutorials/tff_reference/custom_optimizers.py DIR 5

(DIR written by export_inputs.py; run from the project root.)
"""
import collections
import functools
import os
import sys
from typing import Any
import attrs
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

ROUNDS = int(sys.argv[2])
z = np.load(os.path.join(sys.argv[1], 'first_writers.npz'))  # sorted ids, file order
only_digits = True
def preprocess_fn(dataset, batch_size=16):
  def batch_format_fn(element):
    return (tf.expand_dims(element['pixels'], -1), element['label'])
  return dataset.batch(batch_size).map(batch_format_fn)
def client_ds(i):
  return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(label=z[f'train_y_{i}'],
      pixels=z[f'train_x_{i}']))
central_test_data = preprocess_fn(client_ds(0))
def create_keras_model():
  data_format = 'channels_last'
  input_shape = [28, 28, 1]
  max_pool = functools.partial(tf.keras.layers.MaxPooling2D, pool_size=(2, 2), padding='same',
      data_format=data_format)
  conv2d = functools.partial(tf.keras.layers.Conv2D, kernel_size=5, padding='same',
      data_format=data_format, activation=tf.nn.relu)
  return tf.keras.models.Sequential([
      conv2d(filters=32, input_shape=input_shape), max_pool(), conv2d(filters=64), max_pool(),
      tf.keras.layers.Flatten(), tf.keras.layers.Dense(512, activation=tf.nn.relu),
      tf.keras.layers.Dense(10 if only_digits else 62)])
def model_fn():
  keras_model = create_keras_model()
  return tff.learning.models.from_keras_model(
      keras_model, input_spec=central_test_data.element_spec,
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
@tf.function
def client_update(model, dataset, server_weights, client_optimizer):
  client_weights = model.trainable_variables
  tf.nest.map_structure(lambda x, y: x.assign(y), client_weights, server_weights)
  trainable_tensor_specs = tf.nest.map_structure(lambda v: tf.TensorSpec(v.shape, v.dtype),
      client_weights)
  optimizer_state = client_optimizer.initialize(trainable_tensor_specs)
  for batch in iter(dataset):
    with tf.GradientTape() as tape:
      outputs = model.forward_pass(batch)
    grads = tape.gradient(outputs.loss, client_weights)
    optimizer_state, updated_weights = client_optimizer.next(optimizer_state, client_weights, grads)
    tf.nest.map_structure(lambda a, b: a.assign(b), client_weights, updated_weights)
  return tf.nest.map_structure(tf.subtract, client_weights, server_weights)
@attrs.define(eq=False, frozen=True)
class ServerState(object):
  trainable_weights: Any
  optimizer_state: Any
@tf.function
def server_update(server_state, mean_model_delta, server_optimizer):
  negative_weights_delta = tf.nest.map_structure(lambda w: -1.0 * w, mean_model_delta)
  new_optimizer_state, updated_weights = server_optimizer.next(
      server_state.optimizer_state, server_state.trainable_weights, negative_weights_delta)
  return tff.structure.update_struct(server_state, trainable_weights=updated_weights,
      optimizer_state=new_optimizer_state)
server_optimizer = tff.learning.optimizers.build_sgdm(learning_rate=0.05, momentum=0.9)
client_optimizer = tff.learning.optimizers.build_sgdm(learning_rate=0.01)
@tff.tensorflow.computation
def server_init():
  model = model_fn()
  trainable_tensor_specs = tf.nest.map_structure(lambda v: tf.TensorSpec(v.shape, v.dtype),
      model.trainable_variables)
  optimizer_state = server_optimizer.initialize(trainable_tensor_specs)
  return ServerState(trainable_weights=model.trainable_variables, optimizer_state=optimizer_state)
@tff.federated_computation
def server_init_tff():
  return tff.federated_value(server_init(), tff.SERVER)
server_state_type = server_init.type_signature.result
print('server_state_type:\n', server_state_type.formatted_representation())
trainable_weights_type = server_state_type.trainable_weights
print('trainable_weights_type:\n', trainable_weights_type.formatted_representation())
@tff.tensorflow.computation(server_state_type, trainable_weights_type)
def server_update_fn(server_state, model_delta):
  return server_update(server_state, model_delta, server_optimizer)
whimsy_model = model_fn()
tf_dataset_type = tff.SequenceType(tff.types.tensorflow_to_type(whimsy_model.input_spec))
print('tf_dataset_type:\n', tf_dataset_type.formatted_representation())
@tff.tensorflow.computation(tf_dataset_type, trainable_weights_type)
def client_update_fn(dataset, server_weights):
  model = model_fn()
  return client_update(model, dataset, server_weights, client_optimizer)
federated_server_type = tff.FederatedType(server_state_type, tff.SERVER)
federated_dataset_type = tff.FederatedType(tf_dataset_type, tff.CLIENTS)
@tff.federated_computation(federated_server_type, federated_dataset_type)
def run_one_round(server_state, federated_dataset):
  server_weights_at_client = tff.federated_broadcast(server_state.trainable_weights)
  model_deltas = tff.federated_map(client_update_fn, (federated_dataset, server_weights_at_client))
  mean_model_delta = tff.federated_mean(model_deltas)
  server_state = tff.federated_map(server_update_fn, (server_state, mean_model_delta))
  return server_state
fedavg_process = tff.templates.IterativeProcess(initialize_fn=server_init_tff,
    next_fn=run_one_round)
print('type signature of `initialize`:\n',
    fedavg_process.initialize.type_signature.formatted_representation())
print('type signature of `next`:\n', fedavg_process.next.type_signature.formatted_representation())
def evaluate(server_state):
  keras_model = create_keras_model()
  tf.nest.map_structure(lambda var, t: var.assign(t), keras_model.trainable_weights,
      server_state.trainable_weights)
  metric = tf.keras.metrics.SparseCategoricalAccuracy()
  for batch in iter(central_test_data):
    preds = keras_model(batch[0], training=False)
    metric.update_state(y_true=batch[1], y_pred=preds)
  return metric.result().numpy()
server_state = fedavg_process.initialize()
acc = evaluate(server_state)
print('Initial test accuracy', acc)
sampled_train_data = [preprocess_fn(client_ds(i)) for i in range(2)]
for round in range(ROUNDS):
  server_state = fedavg_process.next(server_state, sampled_train_data)
acc = evaluate(server_state)
print('Test accuracy', acc)
