"""`FileProgramStateManager`: versioned, verified, crash-safe checkpoints in a local directory."""

from __future__ import annotations

import logging
import operator
import os
import re
import shutil
from collections.abc import Callable, Mapping
from typing import Any, Optional

from federax._checks import check_int
from federax.program import _atomic
from federax.program import _checkpoint
from federax.program.program_state_manager import ProgramState
from federax.program.program_state_manager import ProgramStateError
from federax.program.program_state_manager import ProgramStateExistsError
from federax.program.program_state_manager import ProgramStateManager
from federax.program.program_state_manager import ProgramStateNotFoundError

_logger = logging.getLogger(__name__)


class FileProgramStateManager(ProgramStateManager):
  """Saves program state as one directory per version: TFF's `tff.program.FileProgramStateManager`.

  Version `N` lives in `<root_dir>/<prefix>N/`, which holds

  * `state.npz`: the state's leaves, `leaf_0`, `leaf_1`, ... in pytree order (`np.savez`, no
    pickle); dtypes NumPy cannot store (`bfloat16`, ...) as their raw bits, typed PRNG keys as
    their `jax.random.key_data`;
  * `manifest.json`: `{"format": "federax.program_state", "format_version": 1, "version": N,
    "federax_version", "created" (ISO 8601, UTC), "treedef" (the pytree structure, for error
    messages), "leaves": [{"path", "dtype", "shape", "kind"}], "size" and "sha256" of
    state.npz}`.

  A state is any pytree (dicts, lists, tuples, namedtuples, registered dataclasses, `None` as an
  empty node) whose leaves are NumPy arrays and scalars, JAX arrays (typed PRNG keys included),
  or Python `bool/int/float/complex/str/bytes`. `load` takes a `structure` with the same tree
  (e.g. `process.initialize()`, or `jax.eval_shape` of it) and returns the structure's containers
  holding the saved leaves, each of the structure leaf's type: NumPy stays NumPy, Python scalars
  stay Python scalars, JAX arrays come back as JAX arrays (with the structure leaf's sharding;
  never weakly typed).

  Writes are atomic: a version is written into `<root_dir>/.tmp-<prefix>N-<random>/`, fsync'ed
  and renamed into place, so a crash leaves the versions as they were (plus a temporary
  directory that listing ignores and the next `save` removes); old versions are removed by
  renaming them to such a temporary name first. One program writes a `root_dir` at a time.

  Loading verifies the manifest, its format version, the sha256 of `state.npz` and every leaf's
  path, dtype and shape against `structure`, and raises `ProgramStateError` naming the file and
  the first difference. A damaged checkpoint is never repaired, replaced or deleted by `load`;
  `load_latest` does not fall back to an older version on its own.

  Example:
    A loop that resumes where it stopped (`process` a learning process, `clients` a cohort)::

      manager = fx.program.FileProgramStateManager("/tmp/run1/checkpoints", keep_total=3)
      state, version = manager.load_latest(process.initialize())
      if state is None:
        state = process.initialize()
      for round_num in range(version + 1, 11):
        state, metrics = process.next(state, clients)
        manager.save(state, round_num)
  """

  def __init__(self, root_dir: str | os.PathLike[str], prefix: str = "program_state_",
               keep_total: int = 5, keep_first: bool = True):
    """Creates a manager for `root_dir` (created if missing).

    Args:
      root_dir: the directory holding one subdirectory per saved version.
      prefix: the versions' directory names are `<prefix><version>`.
      keep_total: how many versions to keep after each save (the oldest are removed); zero or
        less keeps all (TFF's meaning).
      keep_first: keep the first (lowest) version besides the `keep_total - 1` latest, so that a
        run can be reproduced from its initial state (TFF's meaning).

    Raises:
      ValueError: if `root_dir` or `prefix` is empty, `prefix` contains a path separator, or
        `keep_total == 1` with `keep_first` (which would delete every newly saved version).
      NotADirectoryError: if `root_dir` exists and is not a directory.
    """
    if not os.fspath(root_dir):
      raise ValueError("FileProgramStateManager: `root_dir` must not be empty.")
    if not prefix or os.sep in prefix or (os.altsep and os.altsep in prefix):
      raise ValueError(f"FileProgramStateManager: `prefix` must be a non-empty file name part, "
                       f"got {prefix!r}.")
    keep_total = operator.index(keep_total)
    if keep_total == 1 and keep_first:
      raise ValueError(
          "FileProgramStateManager: keep_total=1 with keep_first=True would keep only the first "
          "version and delete each newly saved one. Use keep_total >= 2 to keep the first and "
          "the latest, or keep_first=False to keep only the latest.")
    self._root_dir = os.fspath(root_dir)
    self._prefix = prefix
    self._keep_total = keep_total
    self._keep_first = bool(keep_first)
    if os.path.exists(self._root_dir) and not os.path.isdir(self._root_dir):
      raise NotADirectoryError(f"FileProgramStateManager: root_dir {self._root_dir} exists and "
                               "is not a directory.")
    os.makedirs(self._root_dir, exist_ok=True)
    self._version_re = re.compile(rf"{re.escape(prefix)}(0|[1-9][0-9]*)")
    self._temp_re = re.compile(rf"\.tmp-{re.escape(prefix)}[0-9]+-[0-9a-f]+")

  @property
  def root_dir(self) -> str:
    return self._root_dir

  def get_versions(self) -> Optional[list[int]]:
    """Returns the saved versions in ascending order, or `None` if none is saved.

    Only directories named `<prefix><version>` count; temporary directories and other files are
    ignored. A listed version may still be damaged: `load` verifies it.
    """
    try:
      entries = os.scandir(self._root_dir)
    except FileNotFoundError:
      return None
    with entries:
      versions = [int(m.group(1)) for e in entries
                  if (m := self._version_re.fullmatch(e.name)) and e.is_dir()]
    return sorted(versions) or None

  def _path(self, version: int) -> str:
    return os.path.join(self._root_dir, f"{self._prefix}{version}")

  def load(self, version: int, structure: ProgramState) -> ProgramState:
    """Returns the state saved as `version`, in `structure`'s containers and leaf types.

    Raises:
      ProgramStateNotFoundError: if `version` is not saved.
      ProgramStateError: if the checkpoint is damaged, of an unknown format version, or does not
        match `structure` (the message names the file or the first differing leaf).
    """
    version = _check_version(version)
    path = self._path(version)
    if not os.path.isdir(path):
      raise ProgramStateNotFoundError(version, self.get_versions(), self._root_dir)
    state = _checkpoint.read(path, structure)
    _logger.info("Program state loaded: %s", path)
    return state

  def save(self, program_state: ProgramState, version: int, *,
           extras: Optional[Mapping[str, Callable[[str], None]]] = None) -> None:
    """Saves `program_state` as `version`, then removes versions beyond `keep_total`.

    Args:
      program_state: the pytree to save (see the class docstring for its leaves).
      version: a non-negative integer, larger than the saved ones (typically the round number).
      extras: optional `{name: write(directory)}`: each `write` fills the new, empty directory
        `<prefix>N/<name>/` (e.g. a `ClientStateStore.save`); it becomes visible atomically
        with the state (`extras_path` finds it), and is removed with its version.

    Raises:
      ProgramStateExistsError: if `version` is already saved (damaged or not): it is never
        overwritten.
      TypeError: if a leaf cannot be saved (an object array, an arbitrary Python object); the
        message names its path. Nothing is written then.
    """
    version = _check_version(version)
    path = self._path(version)
    if os.path.lexists(path):
      raise ProgramStateExistsError(version, path)
    self._remove_temp_dirs()
    temp = os.path.join(self._root_dir, f".tmp-{self._prefix}{version}-{_atomic.random_suffix()}")
    os.mkdir(temp)
    try:
      _checkpoint.write(temp, program_state, version)
      for name, write in (extras or {}).items():
        if not name or name in (_checkpoint.STATE_FILE, _checkpoint.MANIFEST_FILE) or \
            os.sep in name or name.startswith("."):
          raise ValueError(f"FileProgramStateManager.save: extras name {name!r} is not a "
                           "plain directory name other than the checkpoint's own files.")
        os.mkdir(os.path.join(temp, name))
        write(os.path.join(temp, name))
      _atomic.fsync_dir(temp)
      os.rename(temp, path)  # Fails rather than replaces if `path` appeared meanwhile.
    except BaseException:
      shutil.rmtree(temp, ignore_errors=True)
      raise
    _atomic.fsync_dir(self._root_dir)
    _logger.info("Program state saved: %s", path)
    self._remove_old_versions(keep=version)

  def extras_path(self, version: int, name: str) -> str:
    """The directory `save(..., extras={name: ...})` wrote for `version`.

    Raises:
      ProgramStateNotFoundError: if `version` is not saved.
      ProgramStateError: if it was saved without `name`.
    """
    version = _check_version(version)
    if not os.path.isdir(self._path(version)):
      raise ProgramStateNotFoundError(version, self.get_versions(), self._root_dir)
    path = os.path.join(self._path(version), name)
    if not os.path.isdir(path):
      raise ProgramStateError(f"Checkpoint {self._path(version)} has no {name!r} directory: it "
                              f"was saved without it (by a process without {name}?).")
    return path

  def remove_all(self) -> None:
    """Removes every saved version (TFF's `remove_all`)."""
    for version in self.get_versions() or []:
      self._remove(version)

  def _remove(self, version: int) -> None:
    staging = f".tmp-{self._prefix}{version}-{_atomic.random_suffix()}"
    _atomic.remove_tree(self._path(version), staging)
    _logger.info("Program state removed: %s", self._path(version))

  def _remove_old_versions(self, keep: int) -> None:
    versions = self.get_versions() or []
    if self._keep_total <= 0 or len(versions) <= self._keep_total:
      return
    start = 1 if self._keep_first else 0
    stop = len(versions) - (self._keep_total - start)
    for version in versions[start:stop]:
      if version != keep:  # A version saved below the latest is not removed by its own save.
        self._remove(version)

  def _remove_temp_dirs(self) -> None:
    """Removes temporary directories left by an interrupted save or removal."""
    with os.scandir(self._root_dir) as entries:
      stale = [e.path for e in entries if self._temp_re.fullmatch(e.name) and e.is_dir()]
    for path in stale:
      shutil.rmtree(path, ignore_errors=True)
      _logger.info("Removed the temporary directory of an interrupted save: %s", path)


def _check_version(version: Any) -> int:
  return check_int(version, "Program state `version`", minimum=0)
