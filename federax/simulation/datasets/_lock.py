"""An advisory lock on one cache entry, so that one process downloads it and the others wait.

`fcntl.flock` on a lock file beside the entry: the kernel releases it when its holder exits or is
killed, so a crash never leaves the entry locked. The holder removes the lock file when done; a
waiter that locked a file already removed (an unlinked inode) tries again on the new one. Where
`fcntl` does not exist (Windows) nothing is locked.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import time
from collections.abc import Iterator
from typing import Optional

try:
  import fcntl
except ImportError:  # pragma: no cover - Windows.
  fcntl = None

_POLL_S = 0.05


class LockTimeout(TimeoutError):
  """The entry stayed locked by another process until the deadline."""


def _holder(path: pathlib.Path) -> str:
  try:
    pid = path.read_text().strip()
  except OSError:
    pid = ""
  return f"process {pid}" if pid.isdigit() else "another process"


@contextlib.contextmanager
def locked(path: pathlib.Path, deadline: Optional[float] = None) -> Iterator[bool]:
  """Holds an exclusive lock on `path` (created if needed) while the block runs.

  Args:
    path: the lock file, e.g. `<cache>/.<archive>.lock`; its directory must exist.
    deadline: a `time.monotonic()` time after which waiting gives up; None waits forever.

  Yields:
    Whether another process held the lock first (it may have done the work meanwhile).

  Raises:
    LockTimeout: if another process still holds the lock at `deadline` (the message names it).
    OSError: if the lock file cannot be created (e.g. a read-only directory).

  Example:
    >>> with locked(pathlib.Path('.entry.lock')) as waited:
    ...   waited
    False
  """
  if fcntl is None:  # pragma: no cover - Windows.
    yield False
    return
  waited = False
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      while True:
        try:
          fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
          break
        except BlockingIOError:
          waited = True
          if deadline is not None and time.monotonic() >= deadline:
            raise LockTimeout(f"{_holder(path)} still holds {os.fspath(path)!r}") from None
          time.sleep(_POLL_S)
      try:
        current = os.stat(path)
      except FileNotFoundError:
        current = None
      if current is not None and os.path.samestat(current, os.fstat(fd)):
        break  # The live lock file: ours now.
    except BaseException:
      os.close(fd)
      raise
    os.close(fd)  # The holder removed this file after we opened it: lock the new one.
  try:
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    yield waited
  finally:
    # Unlink before unlocking: a waiter that then gets this inode sees it is gone and retries.
    with contextlib.suppress(FileNotFoundError):
      os.unlink(path)
    os.close(fd)
