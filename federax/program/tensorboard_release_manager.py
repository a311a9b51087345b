"""`TensorBoardReleaseManager`: released metrics as TensorBoard scalars (via tensorboardX)."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import jax.numpy as jnp
import numpy as np

from federax.program._flatten import flatten
from federax.program.release_manager import ReleaseManager

_writer_count = itertools.count()


def _summary_writer_class():
  try:
    from tensorboardX import SummaryWriter  # Optional dependency: imported only when used.
  except ImportError as e:
    raise ImportError(
        "TensorBoardReleaseManager needs tensorboardX, which is not installed: "
        "`pip install tensorboardX` (or `pip install federax[tensorboard]`).") from e
  return SummaryWriter


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

  Events are flushed after each release. Call `close()` (or use the manager as a context
  manager) at the end of the program.

  Example:
    >>> with fx.program.TensorBoardReleaseManager("/tmp/run1/tb") as tensorboard:
    ...   for round_num in range(1, 11):
    ...     state, metrics = process.next(state, clients)
    ...     tensorboard.release(metrics, key=round_num)
  """

  def __init__(self, summary_dir: str | os.PathLike[str]):
    """Writes event files into `summary_dir` (created if missing).

    Raises:
      ImportError: if tensorboardX is not installed (`pip install tensorboardX`).
      ValueError: if `summary_dir` is empty.
    """
    if not os.fspath(summary_dir):
      raise ValueError("TensorBoardReleaseManager: `summary_dir` must not be empty.")
    self._writer_class = _summary_writer_class()
    self._summary_dir = os.fspath(summary_dir)
    os.makedirs(self._summary_dir, exist_ok=True)
    self._writer = None
    self._latest_key = None

  def _open(self, purge_step: int) -> None:
    self.close()
    # tensorboardX names files by the second they were opened; the suffix keeps two writers of
    # one second apart (else the second truncates the first) and in opening order, which is the
    # order TensorBoard reads them in.
    suffix = f".{time.time_ns():020d}.{os.getpid()}.{next(_writer_count)}"
    self._writer = self._writer_class(self._summary_dir, purge_step=purge_step,
                                      filename_suffix=suffix)

  def release(self, value: Any, key: int) -> None:
    """Writes each leaf of `value` as a summary at step `key` (see the class docstring)."""
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
      raise TypeError(f"TensorBoardReleaseManager: `key` must be an int (the step), got "
                      f"{type(key).__name__} {key!r}.")
    key = int(key)
    if self._writer is None or key <= self._latest_key:
      self._open(purge_step=key)
    for name, leaf in flatten(value).items():
      array = np.asarray(leaf)
      if array.dtype.kind in "US":
        self._writer.add_text(name, str(array if array.ndim else array[()]), global_step=key)
      elif not _numeric(array):
        continue
      elif array.size == 1:
        self._writer.add_scalar(name, float(array.reshape(())), global_step=key)
      elif array.size > 1:
        self._writer.add_histogram(name, array.astype(np.float64), global_step=key)
    self._writer.flush()
    self._latest_key = key

  def flush(self) -> None:
    """Writes pending events to disk."""
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    """Flushes and closes the event file; a later release opens a new one."""
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def __enter__(self) -> TensorBoardReleaseManager:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
