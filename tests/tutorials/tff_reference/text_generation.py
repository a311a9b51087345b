"""One round of TFF 0.87's text-generation FedAvg (client SGD 0.5, the tutorial's
FlattenedCategoricalAccuracy) on the 5 unshuffled batches of THE_TRAGEDY_OF_KING_LEAR_KING,
from fixed weights (numpy default_rng(0), 0.05 * normal), for a GRU of argv[2] units;
argv[3] 'stateful' or 'stateless'.

    benchmarks/peers/tff/.venv/bin/python \
        tests/tutorials/tff_reference/text_generation.py DIR 64 stateful

(DIR written by export_inputs.py; run from the project root.)
"""
import collections
import os
import sys
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

units, mode = int(sys.argv[2]), sys.argv[3]
z = np.load(os.path.join(sys.argv[1], 'text_generation.npz'))
weights0 = [z[f'arr_{i}'] for i in range(6)]
vocab_size = 86
class FlattenedCategoricalAccuracy(tf.keras.metrics.SparseCategoricalAccuracy):
  def __init__(self, name='accuracy', dtype=tf.float32):
    super().__init__(name, dtype=dtype)
  def update_state(self, y_true, y_pred, sample_weight=None):
    y_true = tf.reshape(y_true, [-1, 1])
    y_pred = tf.reshape(y_pred, [-1, vocab_size, 1])
    return super().update_state(y_true, y_pred, sample_weight)
def build():
  return tf.keras.Sequential([
      tf.keras.layers.Embedding(vocab_size, 256, batch_input_shape=[8, None]),
      tf.keras.layers.GRU(units, return_sequences=True, stateful=(mode == 'stateful'),
                          recurrent_initializer='glorot_uniform'),
      tf.keras.layers.Dense(vocab_size)])
ds = tf.data.Dataset.from_tensor_slices((z['x'], z['y']))
def create_tff_model():
  return tff.learning.models.from_keras_model(
      build(), input_spec=ds.element_spec,
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=[FlattenedCategoricalAccuracy()])
fed_avg = tff.learning.algorithms.build_weighted_fed_avg(
    model_fn=create_tff_model,
    client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.5))
state = fed_avg.initialize()
state = fed_avg.set_model_weights(state, tff.learning.models.ModelWeights(trainable=weights0,
    non_trainable=[]))
result = fed_avg.next(state, [ds])
m = result.metrics['client_work']['train']
print(mode, 'UNSHUFFLED', float(m['loss']), float(m['accuracy']))
