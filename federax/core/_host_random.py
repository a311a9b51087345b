"""Whether code drew from the host's global generators (Python's `random`, NumPy's).

A draw made while a function is traced becomes a constant of the program: the same for every
client it is vmapped over, and different in another process. Unseeded Keras initializers
draw their seeds this way.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np


def _states() -> tuple:
  kind, keys, position, has_gauss, gauss = np.random.get_state()
  return random.getstate(), (kind, keys.tobytes(), position, has_gauss, gauss)


class Watch:
  """What `watch()` saw: `drawn` is True once the block drew from a global generator."""

  drawn: bool = False


@contextlib.contextmanager
def watch() -> Iterator[Watch]:
  """Records whether the block draws from Python's or NumPy's global random generator.

  Example:
    >>> with watch() as seen:
    ...   _ = np.random.uniform()
    >>> seen.drawn
    True
  """
  seen, before = Watch(), _states()
  try:
    yield seen
  finally:
    seen.drawn = _states() != before
