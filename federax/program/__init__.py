"""Federated programs: the training loop, data sources, checkpoints and metric releases.

TFF's `tff.program`, synchronous. `run_training_process` is the whole loop below, with
evaluation, resumption and Ctrl-C handling; a `DataSource` selects each round's clients.

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
from federax.program.client_state import ClientStateStore as ClientStateStore
from federax.program.client_state_process import ClientStateProcess as ClientStateProcess
from federax.program.client_state_process import (
    ClientStateProcessOutput as ClientStateProcessOutput)
from federax.program.csv_release_manager import CSVFileReleaseManager as CSVFileReleaseManager
from federax.program.csv_release_manager import CSVSaveMode as CSVSaveMode
from federax.program.csv_release_manager import (
    FileReleaseManagerIncompatibleFileError as FileReleaseManagerIncompatibleFileError)
from federax.program.data_source import ClientPopulation as ClientPopulation
from federax.program.data_source import DataSource as DataSource
from federax.program.data_source import SelectionFn as SelectionFn
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
from federax.program.selection import ClientDataSource as ClientDataSource
from federax.program.selection import build_client_selection_fn as build_client_selection_fn
from federax.program.tensorboard_release_manager import (
    TensorBoardReleaseManager as TensorBoardReleaseManager)
from federax.program.training_loop import EVALUATION_METRICS_PREFIX as EVALUATION_METRICS_PREFIX
from federax.program.training_loop import EVALUATION_TIME_KEY as EVALUATION_TIME_KEY
from federax.program.training_loop import PRIVACY_METRICS_KEY as PRIVACY_METRICS_KEY
from federax.program.training_loop import PrivacyAccounting as PrivacyAccounting
from federax.program.training_loop import ROUND_NUMBER_KEY as ROUND_NUMBER_KEY
from federax.program.training_loop import TRAINING_TIME_KEY as TRAINING_TIME_KEY
from federax.program.training_loop import run_training_process as run_training_process

__all__ = [
    "CSVFileReleaseManager", "CSVSaveMode", "ClientStateProcess", "ClientStateProcessOutput",
    "ClientStateStore", "ClientDataSource", "ClientPopulation", "DataSource",
    "EVALUATION_METRICS_PREFIX", "EVALUATION_TIME_KEY", "FileProgramStateManager",
    "FileReleaseManagerIncompatibleFileError", "FilteringReleaseManager",
    "GroupingReleaseManager", "LoggingReleaseManager", "MemoryReleaseManager",
    "NotFilterableError", "PRIVACY_METRICS_KEY", "PrivacyAccounting", "ProgramStateError",
    "ProgramStateExistsError", "ProgramStateManager", "ProgramStateNotFoundError",
    "ROUND_NUMBER_KEY", "ReleaseManager", "SelectionFn",
    "TRAINING_TIME_KEY", "TensorBoardReleaseManager", "build_client_selection_fn", "flatten",
    "run_training_process",
]
