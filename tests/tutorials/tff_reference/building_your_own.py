"""TFF 0.87's building-your-own tutorial, verbatim but for the data (the exported
writers) and the initial kernel (Keras 3's GlorotNormal(seed=0), set into TF-Keras's model).

    benchmarks/peers/tff/.venv/bin/python tests/tutorials/tff_reference/building_your_own.py DIR 5

(DIR written by export_inputs.py; run from the project root.)
"""
import collections
import os
import sys
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

NUM_ROUNDS = int(sys.argv[2])
z = np.load(os.path.join(sys.argv[1], 'first_writers.npz'))
NUM_CLIENTS = 10
BATCH_SIZE = 20
def preprocess(dataset):
  def batch_format_fn(element):
    return (tf.reshape(element['pixels'], [-1, 784]),
            tf.reshape(element['label'], [-1, 1]))
  return dataset.batch(BATCH_SIZE).map(batch_format_fn)
federated_train_data = [preprocess(tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
    label=z[f'train_y_{i}'], pixels=z[f'train_x_{i}']))) for i in range(NUM_CLIENTS)]
def create_keras_model():
  initializer = tf.keras.initializers.GlorotNormal(seed=0)
  m = tf.keras.models.Sequential([
      tf.keras.layers.Input(shape=(784,)),
      tf.keras.layers.Dense(10, kernel_initializer=initializer),
      tf.keras.layers.Softmax(),
  ])
  m.set_weights([z['kernel'], z['bias']])
  return m
keras_model = create_keras_model()
tff_model = tff.learning.models.functional_model_from_keras(
    keras_model,
    loss_fn=tf.keras.losses.SparseCategoricalCrossentropy(),
    input_spec=federated_train_data[0].element_spec,
    metrics_constructor=collections.OrderedDict(
        accuracy=tf.keras.metrics.SparseCategoricalAccuracy),
)
@tf.function
def client_update(model, dataset, initial_weights, client_optimizer):
  client_weights = initial_weights.trainable
  optimizer_state = client_optimizer.initialize(
      tf.nest.map_structure(tf.TensorSpec.from_tensor, client_weights))
  for batch in dataset:
    x, y = batch
    with tf.GradientTape() as tape:
      tape.watch(client_weights)
      outputs = model.predict_on_batch(model_weights=(client_weights, ()), x=x, training=True)
      loss = model.loss(output=outputs, label=y)
    grads = tape.gradient(loss, client_weights)
    optimizer_state, client_weights = client_optimizer.next(
        optimizer_state, weights=client_weights, gradients=grads)
  return tff.learning.models.ModelWeights(client_weights, non_trainable=())
@tf.function
def server_update(model, mean_client_weights):
  del model
  return mean_client_weights
federated_float_on_clients = tff.FederatedType(np.float32, tff.CLIENTS)
print(str(federated_float_on_clients))
@tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
def get_average_temperature(client_temperatures):
  return tff.federated_mean(client_temperatures)
print(str(get_average_temperature.type_signature))
print(get_average_temperature([68.5, 70.3, 69.8]))
@tff.tensorflow.computation(np.float32)
def add_half(x):
  return tf.add(x, 0.5)
print(str(add_half.type_signature))
@tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
def add_half_on_clients(x):
  return tff.federated_map(add_half, x)
print(str(add_half_on_clients.type_signature))
@tff.tensorflow.computation
def server_init():
  return tff.learning.models.ModelWeights(*tff_model.initial_weights)
@tff.federated_computation
def initialize_fn():
  return tff.federated_eval(server_init, tff.SERVER)
tf_dataset_type = tff.SequenceType(tff.types.tensorflow_to_type(tff_model.input_spec))
print(str(tf_dataset_type))
model_weights_type = server_init.type_signature.result
print(str(model_weights_type))
@tff.tensorflow.computation(tf_dataset_type, model_weights_type)
def client_update_fn(tf_dataset, server_weights):
  client_optimizer = tff.learning.optimizers.build_sgdm(learning_rate=0.01)
  return client_update(tff_model, tf_dataset, server_weights, client_optimizer)
@tff.tensorflow.computation(model_weights_type)
def server_update_fn(mean_client_weights):
  return server_update(tff_model, mean_client_weights)
federated_server_type = tff.FederatedType(model_weights_type, tff.SERVER)
federated_dataset_type = tff.FederatedType(tf_dataset_type, tff.CLIENTS)
@tff.federated_computation(federated_server_type, federated_dataset_type)
def next_fn(server_weights, federated_dataset):
  server_weights_at_client = tff.federated_broadcast(server_weights)
  client_weights = tff.federated_map(client_update_fn, (federated_dataset,
      server_weights_at_client))
  mean_client_weights = tff.federated_mean(client_weights)
  server_weights = tff.federated_map(server_update_fn, mean_client_weights)
  return server_weights
federated_algorithm = tff.templates.IterativeProcess(initialize_fn=initialize_fn, next_fn=next_fn)
print(str(federated_algorithm.initialize.type_signature))
print(str(federated_algorithm.next.type_signature))
central_emnist_test = preprocess(tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
    label=z['test_y'], pixels=z['test_x'])))
def evaluate(model_weights):
  keras_model = create_keras_model()
  keras_model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
  model_weights.assign_weights_to(keras_model)
  print('EVAL', keras_model.evaluate(central_emnist_test, verbose=0))
server_state = federated_algorithm.initialize()
evaluate(server_state)
for _ in range(NUM_ROUNDS):
  server_state = federated_algorithm.next(server_state, federated_train_data)
evaluate(server_state)
