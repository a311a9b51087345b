"""`LoggingReleaseManager`: one log line per released value."""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

from federax.program._flatten import flatten
from federax.program.release_manager import ReleaseManager


def _format(leaf: Any) -> str:
  if isinstance(leaf, np.ndarray):
    return np.array2string(leaf, separator=",", threshold=20).replace("\n", "")
  if isinstance(leaf, np.generic):
    return str(leaf)  # `1.25`, not `np.float32(1.25)`.
  return repr(leaf)


class LoggingReleaseManager(ReleaseManager):
  """Logs each released value on one line: TFF's `tff.program.LoggingReleaseManager`.

  The line reads `Released key=3: client_work/train/loss=0.52, client_work/train/num_examples=22`
  (see `flatten` for the names), logged at `level` to `logger`.

  Example:
    Logs go to the `logging` handlers (stderr by default)::

      logging.basicConfig(level=logging.INFO)
      fx.program.LoggingReleaseManager().release({"train": {"loss": 0.5}}, key=3)
      # INFO:federax.program:Released key=3: train/loss=0.5
  """

  def __init__(self, logger: Optional[logging.Logger] = None, level: int = logging.INFO):
    """Logs to `logger` (default: the `federax.program` logger) at `level`."""
    self._logger = logger if logger is not None else logging.getLogger("federax.program")
    self._level = level

  def release(self, value: Any, key: Any = None) -> None:
    """Logs `value` (flattened) and `key` as one line."""
    if not self._logger.isEnabledFor(self._level):
      return
    items = ", ".join(f"{name}={_format(leaf)}" for name, leaf in flatten(value).items())
    self._logger.log(self._level, "Released key=%s: %s", key, items)
