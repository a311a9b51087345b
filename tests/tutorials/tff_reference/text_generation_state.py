"""Where TFF 0.87 keeps a stateful GRU's state, and when it resets it (text-generation model).

Prints the TFF model's variables (the GRU state is in none of trainable, non_trainable or
local), the `sample_weight` TFF gives a Keras metric (None), then three rounds of FedAvg (client
SGD 0.5) from the fixed weights on the 5 unshuffled batches of THE_TRAGEDY_OF_KING_LEAR_KING
(one client, one client, then that client and its first 3 batches as a second client), and the
same rounds replayed in eager Keras 2 with the state reset at each client's pass, or carried on.

    benchmarks/peers/tff/.venv/bin/python \
        tests/tutorials/tff_reference/text_generation_state.py DIR

(DIR written by export_inputs.py; run from the project root.) TFF's rounds match the replay
that resets the state per client pass: 4.382279396057129, 4.13357400894165, 3.7943761348724365
(reset: 4.3822793, 4.1335738, 3.7943760; carried on: 4.3822793, 4.1332568, 3.7923196).
"""
import os
import sys

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

z = np.load(os.path.join(sys.argv[1], 'text_generation.npz'))
weights0 = [z[f'arr_{i}'] for i in range(6)]
vocab_size, units = 86, 64
seen = []


class FlattenedCategoricalAccuracy(tf.keras.metrics.SparseCategoricalAccuracy):
  def __init__(self, name='accuracy', dtype=tf.float32):
    super().__init__(name, dtype=dtype)

  def update_state(self, y_true, y_pred, sample_weight=None):
    seen.append(sample_weight)
    y_true = tf.reshape(y_true, [-1, 1])
    y_pred = tf.reshape(y_pred, [-1, vocab_size, 1])
    return super().update_state(y_true, y_pred, sample_weight)


def build():
  return tf.keras.Sequential([
      tf.keras.layers.Embedding(vocab_size, 256, batch_input_shape=[8, None]),
      tf.keras.layers.GRU(units, return_sequences=True, stateful=True,
                          recurrent_initializer='glorot_uniform'),
      tf.keras.layers.Dense(vocab_size)])


ds = tf.data.Dataset.from_tensor_slices((z['x'], z['y']))


def create_tff_model():
  return tff.learning.models.from_keras_model(
      build(), input_spec=ds.element_spec,
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=[FlattenedCategoricalAccuracy()])


model = create_tff_model()
print('trainable', [v.name for v in model.trainable_variables])
print('non_trainable', [v.name for v in model.non_trainable_variables])
print('local', [v.name for v in model.local_variables])
print('GRU state', [(v.name, tuple(v.shape)) for v in build().layers[1].states])
fed_avg = tff.learning.algorithms.build_weighted_fed_avg(
    model_fn=create_tff_model,
    client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.5))
state = fed_avg.set_model_weights(fed_avg.initialize(), tff.learning.models.ModelWeights(
    trainable=weights0, non_trainable=[]))
for r, clients in enumerate([[ds], [ds], [ds, ds.take(3)]]):
  result = fed_avg.next(state, clients)
  state = result.state
  m = result.metrics['client_work']['train']
  print('TFF round', r, float(m['loss']), float(m['accuracy']))
print('metric sample_weight', set(map(repr, seen)))

batches = [(z['x'][i], z['y'][i]) for i in range(5)]
loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def client(keras_model, w, data, reset):
  keras_model.set_weights(w)
  if reset:
    keras_model.reset_states()
  total = 0.0
  for x, y in data:
    with tf.GradientTape() as tape:
      loss = loss_fn(y, keras_model(x, training=True))
    grads = tape.gradient(loss, keras_model.trainable_variables)
    for v, g in zip(keras_model.trainable_variables, grads):
      v.assign_sub(0.5 * tf.convert_to_tensor(g))
    total += float(loss) * 8
  return [v.numpy() for v in keras_model.trainable_variables], total, 8 * len(data)


for reset in (True, False):
  keras_model, w = build(), weights0
  for r, clients in enumerate([[batches], [batches], [batches, batches[:3]]]):
    results = [client(keras_model, w, data, reset) for data in clients]
    n = sum(c[2] for c in results)
    w = [sum(c[0][i] * c[2] for c in results) / n for i in range(6)]
    print('eager, state ' + ('reset' if reset else 'carried on'), r,
          sum(c[1] for c in results) / n)
