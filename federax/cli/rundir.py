"""A run directory's ownership and files: its lock, its `config.toml`, its checkpoints' names.

One process owns a run directory at a time: `federax train` and `federax resume` hold an
advisory lock (`fcntl.flock`) on `RUN/.lock`, which holds the owner's pid, for the whole run.
The operating system releases it when the process ends, however it ends (`kill -9` included),
so a stale lock never needs removing; the file itself stays, with the last owner's pid.
`config.toml` is written atomically (a temporary sibling, fsync'ed, renamed over it), so a kill
or a full disk leaves the old file or the new one, never an empty one.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
from collections.abc import Iterator
from typing import Optional

from federax.cli import config as config_lib
from federax.cli._errors import CLIError
from federax.program import _atomic

LOCK_FILE = ".lock"
CONFIG_FILE = "config.toml"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PREFIX = "program_state_"
BUSY = 1  # The exit status when another process owns the run directory.
# Settings `federax train` always writes (the others may be unset): a config.toml without them
# was damaged, and defaults must not silently take their place.
REQUIRED_SETTINGS = ("task", "algorithm", "rounds", "clients_per_round", "epochs", "batch_size",
                     "client_lr", "server_lr", "seed", "runtime")
_VERSION = re.compile(rf"{CHECKPOINT_PREFIX}(0|[1-9][0-9]*)")


@contextlib.contextmanager
def owned(run_dir: pathlib.Path) -> Iterator[None]:
  """Holds `run_dir`'s lock for the body, or refuses if another process holds it.

  Raises:
    CLIError: (status `BUSY`) naming the owner's pid if another process holds the lock; (status
      2) if the lock file cannot be created (a read-only or missing directory).

  Example:
    >>> with owned(pathlib.Path(".")):
    ...   print(pathlib.Path(LOCK_FILE).read_text() == f"{os.getpid()}\\n")
    True
  """
  try:
    import fcntl
  except ImportError:  # Not POSIX (Windows): no advisory locks; one process is up to the user.
    yield
    return
  path = run_dir / LOCK_FILE
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise CLIError(f"cannot use run directory {os.fspath(run_dir)!r}: {e.strerror} "
                   f"({os.fspath(path)!r}); it must be a writable directory") from None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _pid(fd)
      raise CLIError(
          f"run directory {os.fspath(run_dir)!r} is in use by "
          f"{'process ' + holder if holder else 'another process'} (a federax train or "
          "resume); wait for it to end, or stop it, and try again", status=BUSY) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    yield
  finally:
    os.close(fd)  # Releases the lock.


def _pid(fd: int) -> Optional[str]:
  """The pid in an open lock file; None while its owner has not written it yet."""
  text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
  return text if text.isdigit() else None


def check_writable(run_dir: pathlib.Path) -> None:
  """Refuses a run directory (or its checkpoints) this process cannot write into."""
  for path in (run_dir, run_dir / CHECKPOINTS_DIR):
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
      raise CLIError(f"{os.fspath(path)!r} is not writable: a run writes its checkpoints and "
                     "metrics there (copy the run directory somewhere writable to continue it)")


def write_config(run_dir: pathlib.Path, config: config_lib.TrainConfig) -> None:
  """Writes `run_dir/config.toml` atomically."""
  path = run_dir / CONFIG_FILE
  try:
    with _atomic.atomic_file(path, "w", encoding="utf-8") as f:
      f.write(config_lib.to_toml(config))
  except OSError as e:
    raise CLIError(f"cannot write {os.fspath(path)!r}: {e.strerror or e}") from None


def read_config(run_dir: pathlib.Path) -> config_lib.TrainConfig:
  """The configuration in `run_dir/config.toml`, which must hold every setting train writes.

  Raises:
    CLIError: if the file is missing, not TOML, lacks a setting of `REQUIRED_SETTINGS` (an
      emptied file: defaults must not take its place) or holds a bad setting.
  """
  path = run_dir / CONFIG_FILE
  if not path.is_file():
    raise CLIError(f"{os.fspath(run_dir)!r} is not a run directory (no {CONFIG_FILE})")
  settings = config_lib.read_toml(path)
  missing = [name for name in REQUIRED_SETTINGS if name not in settings]
  if missing:
    raise CLIError(f"{os.fspath(path)!r} is {'empty' if not settings else 'incomplete'}: it "
                   f"lacks {', '.join(missing)}, which `federax train` writes (was it cut short "
                   "by a kill or a full disk?); restore it, or start a new run, rather than "
                   "resume with defaults")
  return config_lib.resolve(settings, {})


def rounds_done(run_dir: pathlib.Path) -> int:
  """The round of the latest checkpoint (0 if none), refusing a newer entry that is not one.

  A `program_state_N` newer than the latest checkpoint directory that is a plain file, or an
  empty directory, would make resuming fall back to an older round, then fail to save round N:
  the user decides what to do with it.

  Raises:
    CLIError: (status 1) naming such an entry.
  """
  root = run_dir / CHECKPOINTS_DIR
  try:
    entries = [(int(m.group(1)), entry) for entry in root.iterdir()
               if (m := _VERSION.fullmatch(entry.name))]
  except FileNotFoundError:
    return 0
  except OSError as e:
    raise CLIError(f"cannot list {os.fspath(root)!r}: {e.strerror}", status=1) from None
  versions = sorted(version for version, entry in entries
                    if entry.is_dir() and any(entry.iterdir()))
  latest = versions[-1] if versions else 0
  for version, entry in sorted(entries):
    if version not in versions and (not versions or version > latest):
      what = "an empty directory" if entry.is_dir() else "a file"
      raise CLIError(
          f"{os.fspath(entry)!r} is {what}, not a checkpoint; the latest checkpoint is "
          + (f"round {latest}" if versions else "none")
          + ". Move it out of the way to resume from there (nothing was changed)", status=1)
  return latest
