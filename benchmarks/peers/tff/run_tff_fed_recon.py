"""TensorFlow Federated 0.87 side of benchmarks/fed_recon.py: FedRecon rounds on MovieLens 100K.

    benchmarks/peers/tff/.venv/bin/python benchmarks/peers/tff/run_tff_fed_recon.py \
        --data benchmarks/.cache/fed_recon/data.npz

Reads every training user's batches (`x`, `y` concatenated, `offsets` per user, `batch`), the
cohorts (`cohorts[r]`: the users of round r) and the initial item embedding (`items`). Builds
the TFF tutorial's matrix factorization model (`ReconstructionModel.from_keras_model_and_layers`:
a global item `Embedding`, a local `UserEmbedding`, `Dot`), and
`tff.learning.algorithms.build_fed_recon` with the tutorial's optimizers (server SGD 1.0, client
SGD 0.5, reconstruction SGD 0.1), MSE loss and `RatingAccuracy`, in TFF's default execution
context (the local C++ runtime). Each user is a `tf.data.Dataset` of the same batches the
federax side trains on. The initial item embedding is federax's (set with `set_model_weights`).

It serves the driver one command per stdin line, answering one JSON line each:
- `round`: the next round (`training_process.next` on the next cohort), timed with
  `time.perf_counter()`, with its train loss;
- `quit`.
The first line it prints is `{"ready": ...}`: its start-up seconds and versions.
"""

import time

_T_TOP = time.time()

import argparse
import collections
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--data", required=True)
  args = p.parse_args()

  import numpy as np
  import tensorflow as tf
  import tensorflow_federated as tff

  data = np.load(args.data)
  x, y, offsets, cohorts = data["x"], data["y"], data["offsets"], data["cohorts"]
  items = data["items"]
  batch = int(data["batch"])
  num_items, k = items.shape
  datasets = [
      tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
          x=x[offsets[i]:offsets[i + 1]].astype(np.int64),
          y=y[offsets[i]:offsets[i + 1]].astype(np.float32))).batch(batch)
      for i in range(len(offsets) - 1)]

  class UserEmbedding(tf.keras.layers.Layer):

    def __init__(self, num_latent_factors, **kwargs):
      super().__init__(**kwargs)
      self.num_latent_factors = num_latent_factors

    def build(self, input_shape):
      self.embedding = self.add_weight(shape=(1, self.num_latent_factors),
                                       initializer="uniform", dtype=tf.float32,
                                       name="UserEmbeddingKernel")
      super().build(input_shape)

    def call(self, inputs):
      return self.embedding

    def compute_output_shape(self):
      return (1, self.num_latent_factors)

  def model_fn():
    item_input = tf.keras.layers.Input(shape=[1], name="Item")
    item_embedding_layer = tf.keras.layers.Embedding(num_items, k, name="ItemEmbedding")
    flat_item_vec = tf.keras.layers.Flatten(name="FlattenItems")(
        item_embedding_layer(item_input))
    user_embedding_layer = UserEmbedding(k, name="UserEmbedding")
    flat_user_vec = user_embedding_layer(item_input)
    pred = tf.keras.layers.Dot(1, normalize=False, name="Dot")([flat_user_vec, flat_item_vec])
    input_spec = collections.OrderedDict(x=tf.TensorSpec(shape=[None, 1], dtype=tf.int64),
                                         y=tf.TensorSpec(shape=[None, 1], dtype=tf.float32))
    model = tf.keras.Model(inputs=item_input, outputs=pred)
    return tff.learning.models.ReconstructionModel.from_keras_model_and_layers(
        keras_model=model, global_layers=[item_embedding_layer],
        local_layers=[user_embedding_layer], input_spec=input_spec)

  class RatingAccuracy(tf.keras.metrics.Mean):

    def __init__(self, name="rating_accuracy", **kwargs):
      super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
      example_accuracies = tf.less_equal(tf.abs(y_true - y_pred), 0.5)
      super().update_state(example_accuracies, sample_weight=sample_weight)

  process = tff.learning.algorithms.build_fed_recon(
      model_fn=model_fn, loss_fn=lambda: tf.keras.losses.MeanSquaredError(),
      metrics_fn=lambda: [RatingAccuracy()],
      server_optimizer_fn=tff.learning.optimizers.build_sgdm(1.0),
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.5),
      reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1))
  state = process.initialize()
  weights = process.get_model_weights(state)
  state = process.set_model_weights(
      state, tff.learning.models.ModelWeights(trainable=[items], non_trainable=[]))
  del weights
  print(json.dumps({"ready": True, "startup_s": time.time() - _T_TOP,
                    "tensorflow": tf.__version__, "tff": tff.__version__}), flush=True)
  round_num = 0
  for line in sys.stdin:
    command = line.strip()
    if command == "round":
      cohort = [datasets[i] for i in cohorts[round_num % len(cohorts)]]
      start = time.perf_counter()
      state, metrics = process.next(state, cohort)
      seconds = time.perf_counter() - start
      train = metrics["client_work"]["train"]
      print(json.dumps({"s": seconds, "loss": float(train["loss"]),
                        "rating_accuracy": float(train["rating_accuracy"])}), flush=True)
      round_num += 1
    elif command == "quit":
      break


if __name__ == "__main__":
  main()
