"""`ProgramStateManager`: the interface for saving and loading a program's state (checkpoints)."""

from __future__ import annotations

import abc
from typing import Any, Optional

ProgramState = Any
"""A pytree of arrays and scalars: what a program saves to resume after a failure."""


class ProgramStateNotFoundError(LookupError):
  """There is no saved program state for the requested version."""

  def __init__(self, version: int, available: Optional[list[int]] = None, where: str = ""):
    self.version = version
    listed = "none" if not available else ", ".join(map(str, available))
    location = f" in {where}" if where else ""
    super().__init__(f"No program state saved for version {version}{location}; "
                     f"saved versions: {listed}.")


class ProgramStateExistsError(FileExistsError):
  """Program state is already saved for the version being saved; it is never overwritten."""

  def __init__(self, version: int, path: str = ""):
    self.version = version
    location = f" at {path}" if path else ""
    super().__init__(
        f"Program state for version {version} is already saved{location}; saved versions are "
        "never overwritten. Save under a new (larger) version, or remove the old one first.")


class ProgramStateError(ValueError):
  """Saved program state exists but cannot be read back: damaged, foreign, or of another format.

  It is never repaired, replaced or deleted automatically; the message says what is wrong and
  which file, so that a person can decide.
  """


class ProgramStateManager(abc.ABC):
  """Saves and loads versions of a program's state: TFF's `tff.program.ProgramStateManager`.

  A version is a non-negative integer, typically the round number after which the state was
  saved. Implementations define `get_versions`, `load` and `save`; `load_latest` is derived.

  Example:
    A loop that resumes where it stopped (`manager` a program state manager, `process` a
    learning process, `clients` a cohort)::

      state, version = manager.load_latest(process.initialize())
      if state is None:
        state, version = process.initialize(), 0
      for round_num in range(version + 1, total_rounds + 1):
        state, metrics = process.next(state, clients)
        manager.save(state, round_num)
  """

  @abc.abstractmethod
  def get_versions(self) -> Optional[list[int]]:
    """Returns the saved versions in ascending order, or `None` if nothing is saved."""

  @abc.abstractmethod
  def load(self, version: int, structure: ProgramState) -> ProgramState:
    """Returns the program state saved as `version`.

    Args:
      version: a saved version.
      structure: a pytree with the saved state's structure (e.g. `process.initialize()`); its
        containers and leaf types shape the returned value.

    Raises:
      ProgramStateNotFoundError: if `version` was not saved.
      ProgramStateError: if the saved state cannot be read or does not match `structure`.
    """

  @abc.abstractmethod
  def save(self, program_state: ProgramState, version: int) -> None:
    """Saves `program_state` as `version`.

    Raises:
      ProgramStateExistsError: if `version` is already saved.
    """

  def load_latest(self, structure: ProgramState) -> tuple[Optional[ProgramState], int]:
    """Returns `(state, version)` of the latest saved version, or `(None, 0)` if none is saved.

    A latest version that cannot be read raises `ProgramStateError`: it is not skipped in favour
    of an older one, since resuming from an older round should be the user's decision.

    Args:
      structure: as for `load`.

    Raises:
      ProgramStateError: if the latest saved state cannot be read or does not match `structure`.
    """
    versions = self.get_versions()
    if not versions:
      return None, 0
    latest = max(versions)
    try:
      return self.load(latest, structure), latest
    except ProgramStateNotFoundError:  # Removed between listing and loading (TFF's behaviour).
      return None, 0
