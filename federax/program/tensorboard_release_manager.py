"""`TensorBoardReleaseManager`: released metrics as TensorBoard scalars (via tensorboardX)."""

from __future__ import annotations

import functools
import itertools
import os
import socket
import time
from typing import Any

import jax.numpy as jnp
import numpy as np

from federax.program._flatten import flatten
from federax.program.release_manager import ReleaseManager

_writer_count = itertools.count()


@functools.cache
def _tensorflow_buckets() -> tuple[float, ...]:
  """TensorFlow's default histogram bucket limits: +-1e-12 * 1.1^k up to 1e20, and 0."""
  positive = 1e-12 * 1.1 ** np.arange(int(np.ceil(np.log(1e32) / np.log(1.1))))
  positive = positive[positive < 1e20].tolist()
  return tuple([-v for v in reversed(positive)] + [0.0] + positive)


def _tensorboardx():
  try:
    import tensorboardX  # Optional dependency: imported only when used.
    import tensorboardX.summary  # pylint: disable=unused-import
  except ImportError as e:
    raise ImportError(
        "TensorBoardReleaseManager needs tensorboardX, which is not installed: "
        "`pip install tensorboardX` (or `pip install federax[tensorboard]`).") from e
  return tensorboardX


def _numeric(array: np.ndarray) -> bool:
  return array.dtype == np.bool_ or jnp.issubdtype(array.dtype, jnp.integer) or \
      jnp.issubdtype(array.dtype, jnp.floating)


class TensorBoardReleaseManager(ReleaseManager):
  """Writes released values as TensorBoard summaries: TFF's `tff.program.TensorBoardReleaseManager`.

  Each leaf of a released value (named by `flatten`, e.g. `client_work/train/loss`) becomes a
  summary at step `key`: a scalar for a one-element bool, integer or float leaf (TensorBoard
  stores scalars as float32), a histogram for a larger numeric array, text for a string (under
  tensorboardX's tag `<name>/text_summary`). Other leaves (complex numbers, objects) are skipped,
  as TFF skips them.

  The event file is opened at the first release with `purge_step=key`; releasing a key less than
  or equal to the latest one opens a new event file with `purge_step=key` too. TensorBoard then
  discards the events of steps `>= key` written before it, so a program resumed from round `k`
  replaces the curves after `k` instead of doubling them back.

  Each release is one event holding all its summaries (one record, one checksum: writing a
  summary per leaf made TensorBoard the costliest part of a fast round). The file is flushed
  (and fsync'ed) by the first release `flush_secs` or more after the previous flush, by
  `flush()` (which `run_training_process` calls before each checkpoint) and by `close()`.
  Call `close()` (or use the manager as a context manager) at the end of the program.

  Example:
    With `process` a learning process, `state` its state and `clients` a cohort::

      with fx.program.TensorBoardReleaseManager("/tmp/run1/tb") as tensorboard:
        for round_num in range(1, 11):
          state, metrics = process.next(state, clients)
          tensorboard.release(metrics, key=round_num)
  """

  def __init__(self, summary_dir: str | os.PathLike[str], flush_secs: float = 2.0):
    """Writes event files into `summary_dir` (created if missing).

    Args:
      summary_dir: the log directory (`tensorboard --logdir` it or a parent).
      flush_secs: how long released events may wait in memory while releases go on.

    Raises:
      ImportError: if tensorboardX is not installed (`pip install tensorboardX`).
      ValueError: if `summary_dir` is empty.
    """
    if not os.fspath(summary_dir):
      raise ValueError("TensorBoardReleaseManager: `summary_dir` must not be empty.")
    self._tbx = _tensorboardx()
    self._summary_dir = os.fspath(summary_dir)
    os.makedirs(self._summary_dir, exist_ok=True)
    self._writer = None
    self._latest_key = None
    self._flush_secs = float(flush_secs)
    self._flushed_at = time.monotonic()

  def _open(self, purge_step: int) -> None:
    self.close()
    # TensorBoard's file name, by the second it was opened; the suffix keeps two files of one
    # second apart and in opening order, which is the order TensorBoard reads them in.
    name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
            f".{time.time_ns():020d}.{os.getpid()}.{next(_writer_count)}")
    # tensorboardX's synchronous record writer: its SummaryWriter queues events to a thread
    # whose flush() does not wait for the queue, so it could not promise durability.
    self._writer = self._tbx.RecordWriter(os.path.join(self._summary_dir, name))
    # What SummaryWriter(purge_step=...) writes: TensorBoard drops the events of steps
    # >= purge_step read before a SessionLog START.
    event_pb2 = self._tbx.proto.event_pb2
    self._write(event_pb2.Event(step=purge_step, file_version="brain.Event:2"))
    self._write(event_pb2.Event(
        step=purge_step, session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

  def _write(self, event: Any) -> None:
    event.wall_time = time.time()
    self._writer.write(event.SerializeToString())

  def release(self, value: Any, key: int) -> None:
    """Writes each leaf of `value` as a summary at step `key` (see the class docstring)."""
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
      raise TypeError(f"TensorBoardReleaseManager: `key` must be an int (the step), got "
                      f"{type(key).__name__} {key!r}.")
    key = int(key)
    if self._writer is None or key <= self._latest_key:
      self._open(purge_step=key)
    summaries = self._tbx.summary
    values = []
    for name, leaf in flatten(value).items():
      array = np.asarray(leaf)
      if array.dtype.kind in "US":
        part = summaries.text(name, str(array if array.ndim else array[()]))
      elif not _numeric(array):
        continue
      elif array.size == 1:
        part = summaries.scalar(name, float(array.reshape(())))
      elif array.size > 1:
        part = summaries.histogram(name, array.astype(np.float64), _tensorflow_buckets())
      else:
        continue
      values.extend(part.value)
    summary = self._tbx.proto.summary_pb2.Summary(value=values)
    self._write(self._tbx.proto.event_pb2.Event(step=key, summary=summary))
    self._latest_key = key
    if time.monotonic() - self._flushed_at >= self._flush_secs:
      self.flush()

  def flush(self) -> None:
    """Writes pending events to disk."""
    if self._writer is not None:
      self._writer.flush()
    self._flushed_at = time.monotonic()

  def close(self) -> None:
    """Flushes and closes the event file; a later release opens a new one."""
    if self._writer is not None:
      self._writer.flush()
      self._writer.close()
      self._writer = None

  def __enter__(self) -> TensorBoardReleaseManager:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
