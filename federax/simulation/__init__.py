"""Simulation: ClientData, data sets, partitioners, and (re-exported) sampling and the loop.

`Dataset` lives in `fx.data`; client sampling, selection and `run_training_process` live in
`fx.program`. They are re-exported here under their TFF `tff.simulation` names.
"""

from federax.data import Dataset as Dataset
from federax.data import INFINITE_CARDINALITY as INFINITE_CARDINALITY
from federax.data import RaggedElementsError as RaggedElementsError
from federax.data import UNKNOWN_CARDINALITY as UNKNOWN_CARDINALITY
from federax.simulation import sampling as sampling  # The former module, re-exporting.
from federax.program.sampling import PoissonSampler as PoissonSampler
from federax.program.sampling import UniformSampler as UniformSampler
from federax.program.sampling import (
    build_uniform_client_sampling_fn as build_uniform_client_sampling_fn)
from federax.program.sampling import build_uniform_sampling_fn as build_uniform_sampling_fn
from federax.program.selection import build_client_selection_fn as build_client_selection_fn
from federax.program.training_loop import EVALUATION_METRICS_PREFIX as EVALUATION_METRICS_PREFIX
from federax.program.training_loop import EVALUATION_TIME_KEY as EVALUATION_TIME_KEY
from federax.program.training_loop import ROUND_NUMBER_KEY as ROUND_NUMBER_KEY
from federax.program.training_loop import TRAINING_TIME_KEY as TRAINING_TIME_KEY
from federax.program.training_loop import run_training_process as run_training_process
from federax.simulation import iterative_process_compositions as iterative_process_compositions
from federax.simulation import partitioners as partitioners
from federax.simulation._finite import NonFiniteWarning as NonFiniteWarning
from federax.simulation.client_data import ClientData as ClientData
from federax.simulation.iterative_process_compositions import (
    compose_dataset_computation_with_computation as compose_dataset_computation_with_computation)
from federax.simulation.iterative_process_compositions import (
    compose_dataset_computation_with_iterative_process as
    compose_dataset_computation_with_iterative_process)
from federax.simulation.iterative_process_compositions import (
    compose_dataset_computation_with_learning_process as
    compose_dataset_computation_with_learning_process)

from federax.simulation import datasets as datasets  # Last: its loaders use the names above.
from federax.simulation import baselines as baselines  # TFF's tff.simulation.baselines.

__all__ = [
    "ClientData",
    "Dataset",
    "EVALUATION_METRICS_PREFIX",
    "EVALUATION_TIME_KEY",
    "INFINITE_CARDINALITY",
    "NonFiniteWarning",
    "PoissonSampler",
    "ROUND_NUMBER_KEY",
    "RaggedElementsError",
    "TRAINING_TIME_KEY",
    "UNKNOWN_CARDINALITY",
    "UniformSampler",
    "baselines",
    "build_client_selection_fn",
    "build_uniform_client_sampling_fn",
    "build_uniform_sampling_fn",
    "compose_dataset_computation_with_computation",
    "compose_dataset_computation_with_iterative_process",
    "compose_dataset_computation_with_learning_process",
    "datasets",
    "iterative_process_compositions",
    "partitioners",
    "run_training_process",
    "sampling",
]
