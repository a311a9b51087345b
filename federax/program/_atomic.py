"""Crash-safe file writes: write a temporary sibling, fsync it, rename it into place."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator


def fsync_dir(path: str | os.PathLike[str]) -> None:
  """Makes the entries of directory `path` (a rename, a new file) durable.

  Some platforms (Windows) cannot open a directory; there, renames are durable on their own.
  """
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
  """Flushes the contents of the file at `path` to disk."""
  with open(path, "rb") as f:
    os.fsync(f.fileno())


def random_suffix() -> str:
  """Eight random hex digits, for temporary names that cannot collide."""
  return secrets.token_hex(4)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "w", **open_kwargs) -> Iterator:
  """Opens a temporary sibling of `path` for writing; on success, renames it onto `path`.

  A crash at any moment leaves either the old `path` or the new one (plus, at worst, a
  `<name>.tmp-<random>` sibling). If the body raises, the temporary file is removed and `path`
  is untouched.

  Example:
    >>> with atomic_file("metrics.csv", newline="") as f:
    ...   _ = f.write("key\\n")
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  temp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{random_suffix()}")
  try:
    with open(temp, mode, **open_kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(temp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(temp)
    raise
  fsync_dir(directory)


def remove_stale_temp_files(path: str | os.PathLike[str]) -> list[str]:
  """Removes the temporary siblings `atomic_file(path)` leaves when killed; returns their paths."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  pattern = re.compile(rf"\.{re.escape(os.path.basename(path))}\.tmp-[0-9a-f]{{8}}")
  removed = []
  with os.scandir(directory) as entries:
    for entry in entries:
      if pattern.fullmatch(entry.name) and entry.is_file():
        os.remove(entry.path)
        removed.append(entry.path)
  return removed


def remove_tree(path: str | os.PathLike[str], staging_name: str) -> None:
  """Removes directory `path` atomically: renames it to `staging_name` (a sibling), then deletes.

  A crash leaves either `path` whole or an ignorable `staging_name` directory, never a
  half-deleted `path`.
  """
  path = os.fspath(path)
  parent = os.path.dirname(path)
  staging = os.path.join(parent, staging_name)
  os.rename(path, staging)
  fsync_dir(parent)
  shutil.rmtree(staging, ignore_errors=True)
