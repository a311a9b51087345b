"""The seed tutorial end to end: TFF's published numbers, Keras == by hand, TensorBoard, notebook."""

import json
import os
import pathlib
import struct
import subprocess
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


@pytest.mark.slow
def test_tutorial_notebook_runs_and_its_loss_falls_every_round(shared_data, tmp_path):
  notebook = json.loads((ROOT / "docs/tutorials/image_classification.ipynb").read_text())
  source = "\n\n".join("".join(cell["source"]) for cell in notebook["cells"]
                       if cell["cell_type"] == "code")
  source += ("\n\nimport json\nprint('RESULT', json.dumps({'loss': [float(h['loss']) for h in "
             "history], 'hand': [float(h['loss']) for h in hand_history], "
             "'test_examples': int(test_eval['num_examples'])}))\n")
  env = dict(os.environ, FEMNIST_DIR=str(shared_data / "femnist-leaf"), NUM_ROUNDS="10")
  run = subprocess.run([sys.executable, "-c", source], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  line = next(l for l in run.stdout.splitlines() if l.startswith("RESULT "))
  result = json.loads(line[len("RESULT "):])
  losses = result["loss"]
  assert len(losses) == 10 and all(b < a for a, b in zip(losses, losses[1:])), losses
  np.testing.assert_allclose(losses, result["hand"], atol=1e-5)
  assert result["test_examples"] > 0
  assert (tmp_path / "runs/image_classification").exists()
