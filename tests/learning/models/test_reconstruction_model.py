"""`ReconstructionModel.from_keras_model_and_layers`: the tutorial's model, partition errors."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import federax as fx  # noqa: E402

SPEC = {'x': (np.int64, [None, 1]), 'y': (np.float32, [None, 1])}


class UserEmbedding(keras.layers.Layer):
  def build(self, input_shape):
    self.embedding = self.add_weight(shape=(1, 3), initializer='uniform', name='kernel')

  def call(self, inputs):
    return keras.ops.broadcast_to(self.embedding, (keras.ops.shape(inputs)[0], 3))


def mf_keras():
  items = keras.layers.Embedding(7, 3, name='items')
  user = UserEmbedding(name='user')
  x = keras.layers.Input(shape=[1], dtype='int32')
  pred = keras.layers.Dot(1)([user(x), keras.layers.Flatten()(items(x))])
  return keras.Model(x, pred), items, user


def test_keras_model_splits_global_and_local_and_predicts():
  keras_model, items, user = mf_keras()
  model = fx.learning.models.ReconstructionModel.from_keras_model_and_layers(
      keras_model, global_layers=[items], local_layers=[user], input_spec=SPEC)
  g, l = model.global_weights, model.local_weights
  assert [w.shape for w in g.trainable] == [(7, 3)] and [w.shape for w in l.trainable] == [(1, 3)]
  assert not fx.learning.models.ReconstructionModel.has_only_global_variables(model)
  x = np.array([[0], [4], [6]])
  out = model.forward_pass(g, l, {'x': x, 'y': np.ones((3, 1), np.float32)})
  expected = np.asarray(g.trainable[0])[x[:, 0]] @ np.asarray(l.trainable[0])[0]
  np.testing.assert_allclose(np.asarray(out.predictions)[:, 0], expected, rtol=1e-5, atol=1e-6)
  # New local weights change the predictions: the model reads the ones it is given.
  other = l._replace(trainable=[np.ones((1, 3), np.float32)])
  np.testing.assert_allclose(
      np.asarray(model.predict_on_batch(g, other, x))[:, 0],
      np.asarray(g.trainable[0])[x[:, 0]].sum(axis=1), rtol=1e-5, atol=1e-6)


def test_overlapping_or_missing_layers_are_refused():
  keras_model, items, user = mf_keras()
  build = fx.learning.models.ReconstructionModel.from_keras_model_and_layers
  with pytest.raises(ValueError, match='in both a global and a local layer'):
    build(keras_model, global_layers=[items, user], local_layers=[user], input_spec=SPEC)
  with pytest.raises(ValueError, match=r"in neither the global nor the local(.|\n)*user/kernel"):
    build(keras_model, global_layers=[items], local_layers=[], input_spec=SPEC)
  stranger = keras.layers.Dense(2)
  stranger.build((None, 2))
  with pytest.raises(ValueError, match='is not a weight of keras_model'):
    build(keras_model, global_layers=[items, stranger], local_layers=[user], input_spec=SPEC)
  with pytest.raises(TypeError, match='keras_model must be a Keras model'):
    build(object(), global_layers=[], local_layers=[], input_spec=SPEC)


def test_keras_model_and_variables_partition():
  keras_model, items, user = mf_keras()
  model = fx.learning.models.ReconstructionModel.from_keras_model_and_variables(
      keras_model, global_trainable_variables=items.trainable_variables,
      global_non_trainable_variables=[], local_trainable_variables=user.trainable_variables,
      local_non_trainable_variables=[], input_spec=SPEC)
  assert [w.shape for w in model.local_weights.trainable] == [(1, 3)]
  with pytest.raises(ValueError, match='in both a global and a local layer'):
    fx.learning.models.ReconstructionModel.from_keras_model_and_variables(
        keras_model,
        global_trainable_variables=items.trainable_variables + user.trainable_variables,
        global_non_trainable_variables=[], local_trainable_variables=user.trainable_variables,
        local_non_trainable_variables=[], input_spec=SPEC)
