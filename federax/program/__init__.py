"""Federated programs: checkpoints and metric releases (TFF's `tff.program`), synchronous.

    manager = fx.program.FileProgramStateManager("/tmp/run1/checkpoints")
    metrics_out = fx.program.GroupingReleaseManager([
        fx.program.CSVFileReleaseManager("/tmp/run1/metrics.csv"),
        fx.program.LoggingReleaseManager()])
    state, version = manager.load_latest(process.initialize())
    state = process.initialize() if state is None else state
    for round_num in range(version + 1, 11):
      state, metrics = process.next(state, clients)
      metrics_out.release(metrics, key=round_num)
      manager.save(state, round_num)
"""

from federax.program._flatten import flatten as flatten
from federax.program.csv_release_manager import CSVFileReleaseManager as CSVFileReleaseManager
from federax.program.csv_release_manager import CSVSaveMode as CSVSaveMode
from federax.program.csv_release_manager import (
    FileReleaseManagerIncompatibleFileError as FileReleaseManagerIncompatibleFileError)
from federax.program.file_program_state_manager import (
    FileProgramStateManager as FileProgramStateManager)
from federax.program.logging_release_manager import LoggingReleaseManager as LoggingReleaseManager
from federax.program.memory_release_manager import MemoryReleaseManager as MemoryReleaseManager
from federax.program.program_state_manager import ProgramStateError as ProgramStateError
from federax.program.program_state_manager import ProgramStateExistsError as ProgramStateExistsError
from federax.program.program_state_manager import ProgramStateManager as ProgramStateManager
from federax.program.program_state_manager import (
    ProgramStateNotFoundError as ProgramStateNotFoundError)
from federax.program.release_manager import FilteringReleaseManager as FilteringReleaseManager
from federax.program.release_manager import GroupingReleaseManager as GroupingReleaseManager
from federax.program.release_manager import NotFilterableError as NotFilterableError
from federax.program.release_manager import ReleaseManager as ReleaseManager
from federax.program.tensorboard_release_manager import (
    TensorBoardReleaseManager as TensorBoardReleaseManager)

__all__ = [
    "CSVFileReleaseManager", "CSVSaveMode", "FileProgramStateManager",
    "FileReleaseManagerIncompatibleFileError", "FilteringReleaseManager",
    "GroupingReleaseManager", "LoggingReleaseManager", "MemoryReleaseManager",
    "NotFilterableError", "ProgramStateError", "ProgramStateExistsError", "ProgramStateManager",
    "ProgramStateNotFoundError", "ReleaseManager", "TensorBoardReleaseManager", "flatten",
]
