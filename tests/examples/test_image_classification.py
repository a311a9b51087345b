"""The seed tutorial as a script: TFF's published numbers, Keras == by hand, TensorBoard.

The notebook, docs/tutorials/federated_learning_for_image_classification.ipynb, is TFF's code
by renaming; tests/tutorials/test_learning_tutorials.py runs it.
"""

import os
import pathlib
import struct
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
os.environ.setdefault("KERAS_BACKEND", "jax")

pytest.importorskip("keras")
import image_classification  # noqa: E402

# TFF 0.87 and an independent float64 NumPy FedAvg, shuffling off (issue 4).
TFF_LOSS = {1: 2.93708, 2: 2.80165, 3: 2.68474, 10: 2.02720}
TFF_ACCURACY = {1: 0.12072, 10: 0.34254}


def scalar_events(logdir: pathlib.Path) -> dict:
  """Tag -> [(step, value)] from TensorBoard event files (TFRecord framing, Event protos)."""
  from tensorboardX.proto import event_pb2
  found = {}
  for path in logdir.glob("events.out.tfevents.*"):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        found.setdefault(value.tag, []).append((event.step, value.simple_value))
  return found


@pytest.mark.slow
def test_unshuffled_tutorial_reproduces_tff_and_numpy(shared_data, tmp_path):
  result = image_classification.main(
      ["--data-dir", str(shared_data / "femnist-leaf"), "--no-shuffle",
       "--logdir", str(tmp_path / "tb")])
  for history in (result["keras"], result["hand_written"]):
    for round_num, loss in TFF_LOSS.items():
      assert history[round_num - 1]["loss"] == pytest.approx(loss, abs=1e-4)
    for round_num, accuracy in TFF_ACCURACY.items():
      assert history[round_num - 1]["sparse_categorical_accuracy"] == pytest.approx(
          accuracy, abs=1e-4)
    assert all(h["num_examples"] == 3620 for h in history)
  keras_losses = [h["loss"] for h in result["keras"]]
  np.testing.assert_allclose(keras_losses, [h["loss"] for h in result["hand_written"]],
                             atol=1e-5)
  assert result["train_eval"]["sparse_categorical_accuracy"] > TFF_ACCURACY[10]
  assert result["test_eval"]["num_examples"] > 0

  events = scalar_events(tmp_path / "tb")
  assert set(events) == {"loss", "num_batches", "num_examples", "sparse_categorical_accuracy"}
  assert [step for step, _ in events["loss"]] == list(range(1, 11))
  np.testing.assert_allclose([v for _, v in events["loss"]], keras_losses, rtol=1e-6)
