"""Writes the inputs the tutorials feed federax, for TFF 0.87 to run on (run with federax).

    KERAS_BACKEND=jax python tests/tutorials/tff_reference/export_inputs.py DIR

DIR receives, as .npz files:
- image_classification: the first ten digit writers (train and test), each's examples in the
  order federax's `repeat(5).shuffle(100, seed=1)` gives them;
- first_writers: the first ten writers by sorted id (train, file order), every test writer's
  examples, and Keras 3's GlorotNormal(seed=0) kernel of the tutorials' Dense(10);
- client_data: the first ten writers (train, file order);
- text_generation: five unshuffled batches of THE_TRAGEDY_OF_KING_LEAR_KING (the tutorial's
  preprocessing without its shuffle) and fixed weights for the FAST 64-unit model.
Then run each TFF script of this folder with benchmarks/peers/tff/.venv/bin/python DIR ...
"""

import os
import pathlib
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np

import federax as fx

SHARED = pathlib.Path(__file__).resolve().parents[4] / "shared" / "data"


def main(out: pathlib.Path) -> None:
  out.mkdir(parents=True, exist_ok=True)
  train, test = fx.simulation.datasets.femnist.load_data(SHARED / "femnist-leaf",
                                                         only_digits=True)

  def shuffled(ds):
    elements = list(ds.repeat(5).shuffle(100, seed=1))
    return (np.stack([e["pixels"] for e in elements]),
            np.array([e["label"] for e in elements], np.int32))

  arrays = {}
  for i, c in enumerate(train.client_ids[:10]):
    arrays[f"train_x_{i}"], arrays[f"train_y_{i}"] = shuffled(train.create_dataset(c))
    arrays[f"test_x_{i}"], arrays[f"test_y_{i}"] = shuffled(test.create_dataset(c))
  np.savez_compressed(out / "image_classification.npz", **arrays)

  arrays = {}
  for i, c in enumerate(sorted(train.client_ids)[:10]):
    s = train.create_dataset(c).to_stacked()
    arrays[f"train_x_{i}"], arrays[f"train_y_{i}"] = s["pixels"], s["label"]
  stacked = [test.create_dataset(c).to_stacked() for c in test.client_ids]
  arrays["test_x"] = np.concatenate([s["pixels"] for s in stacked])
  arrays["test_y"] = np.concatenate([s["label"] for s in stacked])
  dense = keras.models.Sequential([
      keras.layers.Input(shape=(784,)),
      keras.layers.Dense(10, kernel_initializer=keras.initializers.GlorotNormal(seed=0)),
      keras.layers.Softmax()])
  arrays["kernel"], arrays["bias"] = [np.asarray(w) for w in dense.get_weights()]
  np.savez_compressed(out / "first_writers.npz", **arrays)

  arrays = {}
  for i, c in enumerate(train.client_ids[:10]):
    s = train.create_dataset(c).to_stacked()
    arrays[f"x_{i}"], arrays[f"y_{i}"] = s["pixels"], s["label"]
  np.savez_compressed(out / "client_data.npz", ids=np.array(train.client_ids[:10]), **arrays)

  # As the notebook: its vocabulary, lookup table and preprocessing, without the shuffle.
  vocab = list('dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#\'/37;?bfjnrvzBFJNRVZ"&*.26:\n'
               'aeimquyAEIMQUY]!%)-159\r')
  table = np.zeros(256, np.int64)
  table[[ord(c) for c in vocab]] = np.arange(len(vocab))
  shakespeare, _ = fx.simulation.datasets.shakespeare.load_data(
      cache_dir=SHARED / "shakespeare-tff")
  batches = list(
      shakespeare.create_dataset("THE_TRAGEDY_OF_KING_LEAR_KING")
      .map(lambda x: table[np.frombuffer(str(x["snippets"]).encode("utf-8"), np.uint8)])
      .unbatch().batch(101, drop_remainder=True).batch(8, drop_remainder=True).take(5))
  rng = np.random.default_rng(0)
  shapes = [(86, 256), (256, 192), (64, 192), (2, 192), (64, 86), (86,)]  # Keras's order.
  weights = [(0.05 * rng.standard_normal(s)).astype(np.float32) for s in shapes]
  np.savez(out / "text_generation.npz", x=np.stack([b[:, :-1] for b in batches]),
           y=np.stack([b[:, 1:] for b in batches]), *weights)


if __name__ == "__main__":
  main(pathlib.Path(sys.argv[1]))
