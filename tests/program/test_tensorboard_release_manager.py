"""TensorBoardReleaseManager: scalars per metric and step, read back as TensorBoard would."""

import collections

import numpy as np
import pytest

from federax import program
from tensorboard_events import events, scalars

pytest.importorskip("tensorboardX")


def round_metrics(loss):
  return collections.OrderedDict(
      client_work=collections.OrderedDict(train={"loss": np.float32(loss),
                                                 "num_examples": np.int32(22)}),
      finalizer={"update_non_finite": False})


def test_one_scalar_per_metric_and_step(tmp_path):
  with program.TensorBoardReleaseManager(tmp_path) as manager:
    for key in range(1, 4):
      manager.release(round_metrics(1.0 / key), key)
  found = scalars(tmp_path)
  assert set(found) == {"client_work/train/loss", "client_work/train/num_examples",
                        "finalizer/update_non_finite"}
  assert found["client_work/train/loss"] == [(1, 1.0), (2, 0.5), (3, np.float32(1 / 3))]
  assert found["client_work/train/num_examples"] == [(1, 22.0), (2, 22.0), (3, 22.0)]
  assert [v for _, v in found["finalizer/update_non_finite"]] == [0.0, 0.0, 0.0]
  assert len(list(tmp_path.iterdir())) == 1  # One event file per run.


def test_a_resumed_run_supersedes_the_steps_after_its_checkpoint(tmp_path):
  first_run = program.TensorBoardReleaseManager(tmp_path)
  for key in range(1, 6):
    first_run.release({"loss": float(key)}, key)
  first_run.close()
  resumed = program.TensorBoardReleaseManager(tmp_path)  # Resumed from round 2's checkpoint.
  resumed.release({"loss": 30.0}, 3)
  resumed.release({"loss": 40.0}, 4)
  resumed.close()
  assert scalars(tmp_path)["loss"] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]
  files = sorted(tmp_path.glob("events.out.tfevents.*"))
  assert len(files) == 2
  purges = [e.step for e in events(tmp_path) if e.HasField("session_log")]
  assert purges == [1, 3]  # Each writer opens with purge_step = its first key.


def test_a_rewind_within_one_run_opens_a_purging_event_file(tmp_path):
  with program.TensorBoardReleaseManager(tmp_path) as manager:
    for key in (1, 2, 3, 2):
      manager.release({"loss": float(10 * key)}, key)
  assert scalars(tmp_path)["loss"] == [(1, 10.0), (2, 20.0)]
  assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2


def test_arrays_become_histograms_and_strings_text(tmp_path):
  with program.TensorBoardReleaseManager(tmp_path) as manager:
    manager.release({"weights": np.arange(6.0).reshape(2, 3), "note": "hello",
                     "one": np.ones((1, 1), np.float32), "skip": 1j}, 1)
  kinds = {v.tag: v.WhichOneof("value") for e in events(tmp_path) for v in e.summary.value}
  assert kinds["weights"] == "histo" and kinds["one"] == "simple_value"
  assert kinds["note/text_summary"] == "tensor"  # tensorboardX's tag for text.
  assert not any(tag.startswith("skip") for tag in kinds)  # Complex numbers are skipped.
  text = next(v.tensor for e in events(tmp_path) for v in e.summary.value
              if v.tag == "note/text_summary")
  assert text.string_val == [b"hello"]
  histogram = next(v.histo for e in events(tmp_path) for v in e.summary.value
                   if v.tag == "weights")
  assert (histogram.num, histogram.sum, histogram.min, histogram.max) == (6, 15.0, 0.0, 5.0)


def test_keys_must_be_integers(tmp_path):
  manager = program.TensorBoardReleaseManager(tmp_path)
  with pytest.raises(TypeError, match=r"`key` must be an int \(the step\), got str 'a'"):
    manager.release({"loss": 1.0}, "a")


def test_an_empty_summary_dir_is_refused():
  with pytest.raises(ValueError, match="`summary_dir` must not be empty"):
    program.TensorBoardReleaseManager("")


def test_flush_writes_what_was_released_and_filtering_passes_it_on(tmp_path):
  manager = program.TensorBoardReleaseManager(tmp_path, flush_secs=1e9)
  keep_loss = program.FilteringReleaseManager(manager, lambda path: path[-1] == "loss")
  for step in (1, 2, 3):
    keep_loss.release(round_metrics(loss=step / 10), key=step)
  keep_loss.flush()
  assert scalars(tmp_path) == {"client_work/train/loss": [(1, pytest.approx(0.1)),
                                                          (2, pytest.approx(0.2)),
                                                          (3, pytest.approx(0.3))]}
  manager.close()
