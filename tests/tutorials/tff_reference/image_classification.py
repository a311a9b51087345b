"""TFF 0.87's image classification tutorial, verbatim but for the data: the 10 writers'
examples in federax's repeat(5).shuffle(100, seed=1) order, so .shuffle is dropped here.

    benchmarks/peers/tff/.venv/bin/python \
        tests/tutorials/tff_reference/image_classification.py DIR 4

(DIR written by export_inputs.py; run from the project root.)
"""
import collections
import os
import sys
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

NUM_ROUNDS = int(sys.argv[2])
np.random.seed(0)
print(tff.federated_computation(lambda: 'Hello, World!')())
z = np.load(os.path.join(sys.argv[1], 'image_classification.npz'))
BATCH_SIZE = 20
def preprocess(dataset):
  def batch_format_fn(element):
    return collections.OrderedDict(
        x=tf.reshape(element['pixels'], [-1, 784]),
        y=tf.reshape(element['label'], [-1, 1]))
  return dataset.batch(BATCH_SIZE).map(batch_format_fn).prefetch(10)
def make(kind):
  return [preprocess(tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      label=z[f'{kind}_y_{i}'], pixels=z[f'{kind}_x_{i}']))) for i in range(10)]
federated_train_data = make('train')
preprocessed_example_dataset = federated_train_data[0]
def create_keras_model():
  return tf.keras.models.Sequential([
      tf.keras.layers.InputLayer(input_shape=(784,)),
      tf.keras.layers.Dense(10, kernel_initializer='zeros'),
      tf.keras.layers.Softmax(),
  ])
def model_fn():
  keras_model = create_keras_model()
  return tff.learning.models.from_keras_model(
      keras_model,
      input_spec=preprocessed_example_dataset.element_spec,
      loss=tf.keras.losses.SparseCategoricalCrossentropy(),
      metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
training_process = tff.learning.algorithms.build_weighted_fed_avg(
    model_fn,
    client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.02),
    server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=1.0))
print(training_process.initialize.type_signature.formatted_representation())
train_state = training_process.initialize()
result = training_process.next(train_state, federated_train_data)
train_state = result.state
train_metrics = result.metrics
print('round  1, metrics={}'.format(train_metrics))
for round_num in range(2, NUM_ROUNDS):
  result = training_process.next(train_state, federated_train_data)
  train_state = result.state
  train_metrics = result.metrics
  print('round {:2d}, metrics={}'.format(round_num, train_metrics))

MnistVariables = collections.namedtuple(
    'MnistVariables', 'weights bias num_examples loss_sum accuracy_sum')
def create_mnist_variables():
  return MnistVariables(
      weights=tf.Variable(lambda: tf.zeros(dtype=tf.float32, shape=(784, 10)), name='weights',
          trainable=True),
      bias=tf.Variable(lambda: tf.zeros(dtype=tf.float32, shape=(10)), name='bias', trainable=True),
      num_examples=tf.Variable(0.0, name='num_examples', trainable=False),
      loss_sum=tf.Variable(0.0, name='loss_sum', trainable=False),
      accuracy_sum=tf.Variable(0.0, name='accuracy_sum', trainable=False))
def predict_on_batch(variables, x):
  return tf.nn.softmax(tf.matmul(x, variables.weights) + variables.bias)
def mnist_forward_pass(variables, batch):
  y = predict_on_batch(variables, batch['x'])
  predictions = tf.cast(tf.argmax(y, 1), tf.int32)
  flat_labels = tf.reshape(batch['y'], [-1])
  loss = -tf.reduce_mean(tf.reduce_sum(tf.one_hot(flat_labels, 10) * tf.math.log(y), axis=[1]))
  accuracy = tf.reduce_mean(tf.cast(tf.equal(predictions, flat_labels), tf.float32))
  num_examples = tf.cast(tf.size(batch['y']), tf.float32)
  variables.num_examples.assign_add(num_examples)
  variables.loss_sum.assign_add(loss * num_examples)
  variables.accuracy_sum.assign_add(accuracy * num_examples)
  return loss, predictions
def get_local_unfinalized_metrics(variables):
  return collections.OrderedDict(
      num_examples=[variables.num_examples],
      loss=[variables.loss_sum, variables.num_examples],
      accuracy=[variables.accuracy_sum, variables.num_examples])
def get_metric_finalizers():
  return collections.OrderedDict(
      num_examples=tf.function(func=lambda x: x[0]),
      loss=tf.function(func=lambda x: x[0] / x[1]),
      accuracy=tf.function(func=lambda x: x[0] / x[1]))
class MnistModel(tff.learning.models.VariableModel):
  def __init__(self):
    self._variables = create_mnist_variables()
  @property
  def trainable_variables(self):
    return [self._variables.weights, self._variables.bias]
  @property
  def non_trainable_variables(self):
    return []
  @property
  def local_variables(self):
    return [self._variables.num_examples, self._variables.loss_sum, self._variables.accuracy_sum]
  @property
  def input_spec(self):
    return collections.OrderedDict(x=tf.TensorSpec([None, 784], tf.float32), y=tf.TensorSpec([None,
        1], tf.int32))
  @tf.function
  def predict_on_batch(self, x, training=True):
    del training
    return predict_on_batch(self._variables, x)
  @tf.function
  def forward_pass(self, batch, training=True):
    del training
    loss, predictions = mnist_forward_pass(self._variables, batch)
    num_exmaples = tf.shape(batch['x'])[0]
    return tff.learning.models.BatchOutput(loss=loss, predictions=predictions,
        num_examples=num_exmaples)
  @tf.function
  def report_local_unfinalized_metrics(self):
    return get_local_unfinalized_metrics(self._variables)
  def metric_finalizers(self):
    return get_metric_finalizers()
  @tf.function
  def reset_metrics(self):
    for var in self.local_variables:
      var.assign(tf.zeros_like(var))
training_process = tff.learning.algorithms.build_weighted_fed_avg(
    MnistModel, client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.02))
print(training_process.next.type_signature)
train_state = training_process.initialize()
result = training_process.next(train_state, federated_train_data)
train_state = result.state
metrics = result.metrics
print('round  1, metrics={}'.format(metrics))
for round_num in range(2, NUM_ROUNDS):
  result = training_process.next(train_state, federated_train_data)
  train_state = result.state
  metrics = result.metrics
  print('round {:2d}, metrics={}'.format(round_num, metrics))
evaluation_process = tff.learning.algorithms.build_fed_eval(MnistModel)
print(evaluation_process.next.type_signature.formatted_representation())
evaluation_state = evaluation_process.initialize()
model_weights = training_process.get_model_weights(train_state)
evaluation_state = evaluation_process.set_model_weights(evaluation_state, model_weights)
evaluation_output = evaluation_process.next(evaluation_state, federated_train_data)
print(str(evaluation_output.metrics))
federated_test_data = make('test')
evaluation_output = evaluation_process.next(evaluation_state, federated_test_data)
print(str(evaluation_output.metrics))
