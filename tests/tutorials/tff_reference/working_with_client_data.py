"""TFF 0.87's working_with_client_data tutorial, verbatim but for the data: a
ClientData over the exported writers.

    benchmarks/peers/tff/.venv/bin/python \
        tests/tutorials/tff_reference/working_with_client_data.py DIR

(DIR written by export_inputs.py; run from the project root.)
"""
import collections
import os
import sys
import time
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

z = np.load(os.path.join(sys.argv[1], 'client_data.npz'))
ids = [str(c) for c in z['ids']]
# A TestClientData holds the arrays (dataset_computation needs serializable data).
client_data = tff.simulation.datasets.TestClientData({c: collections.OrderedDict(label=z[f'y_{i}'],
    pixels=z[f'x_{i}']) for i, c in enumerate(ids)})
first_client_id = client_data.client_ids[0]
first_client_dataset = client_data.create_tf_dataset_for_client(first_client_id)
print(first_client_dataset.element_spec)
def preprocess_dataset(dataset):
  def map_fn(input):
    return collections.OrderedDict(
        x=tf.reshape(input['pixels'], shape=(-1, 784)),
        y=tf.cast(tf.reshape(input['label'], shape=(-1, 1)), tf.int64))
  return dataset.batch(5).map(map_fn, num_parallel_calls=tf.data.experimental.AUTOTUNE).take(5)
preprocessed_client_data = client_data.preprocess(preprocess_dataset)
first_client_dataset = preprocessed_client_data.create_tf_dataset_for_client(first_client_id)
print(first_client_dataset.element_spec)
def preprocess_and_shuffle(dataset):
  preprocessed = preprocess_dataset(dataset)
  return preprocessed.shuffle(buffer_size=5)
preprocessed_and_shuffled = client_data.preprocess(preprocess_and_shuffle)
keras_model = tf.keras.models.Sequential([
    tf.keras.layers.InputLayer(input_shape=(784,)),
    tf.keras.layers.Dense(10, kernel_initializer='zeros'),
])
tff_model = tff.learning.models.functional_model_from_keras(
    keras_model,
    loss_fn=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    input_spec=collections.OrderedDict(
        x=tf.TensorSpec(shape=[None, 784], dtype=tf.float32),
        y=tf.TensorSpec(shape=[None, 1], dtype=tf.int64)),
    metrics_constructor=collections.OrderedDict(
        loss=lambda: tf.keras.metrics.SparseCategoricalCrossentropy(from_logits=True),
        accuracy=tf.keras.metrics.SparseCategoricalAccuracy))
trainer = tff.learning.algorithms.build_weighted_fed_avg(
    tff_model, client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.01))
selected_client_ids = preprocessed_and_shuffled.client_ids[:10]
preprocessed_data_for_clients = [
    preprocessed_and_shuffled.create_tf_dataset_for_client(selected_client_ids[i])
    for i in range(10)]
state = trainer.initialize()
for _ in range(5):
  result = trainer.next(state, preprocessed_data_for_clients)
  state = result.state
  train_metrics = result.metrics['client_work']['train']
  print(f'loss {train_metrics["loss"]:.2f} {train_metrics["loss"]:.6f} '
        f'{train_metrics["accuracy"]:.6f}')
print('dataset computation without preprocessing:')
print(client_data.dataset_computation.type_signature)
print('dataset computation with preprocessing:')
print(preprocessed_and_shuffled.dataset_computation.type_signature)
trainer_accepting_ids = tff.simulation.compose_dataset_computation_with_iterative_process(
    preprocessed_and_shuffled.dataset_computation, trainer)
for _ in range(5):
  result = trainer_accepting_ids.next(state, selected_client_ids)
  state = result.state
  train_metrics = result.metrics['client_work']['train']
  print(f'loss {train_metrics["loss"]:.2f} {train_metrics["loss"]:.6f} '
        f'{train_metrics["accuracy"]:.6f}')
selected_clients_type = tff.FederatedType(
    preprocessed_and_shuffled.dataset_computation.type_signature.parameter, tff.CLIENTS)
@tff.federated_computation(trainer.next.type_signature.parameter[0], selected_clients_type)
def new_next(server_state, selected_clients):
  preprocessed_data = tff.federated_map(preprocessed_and_shuffled.dataset_computation,
      selected_clients)
  return trainer.next(server_state, preprocessed_data)
manual_trainer_with_preprocessing = tff.templates.IterativeProcess(
    initialize_fn=trainer.initialize, next_fn=new_next)
print(trainer_accepting_ids.next.type_signature)
print(manual_trainer_with_preprocessing.next.type_signature)
# Reference without the shuffle (what the test's epilogue runs in federax).
unshuffled = [preprocessed_client_data.create_tf_dataset_for_client(c) for c in selected_client_ids]
state = trainer.initialize()
for _ in range(5):
  result = trainer.next(state, unshuffled)
  state = result.state
  m = result.metrics['client_work']['train']
  print('UNSHUFFLED', float(m['loss']), float(m['accuracy']))
