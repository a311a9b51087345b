"""Simulation data: ClientData, datasets, partitioners and client sampling."""

from federax.simulation import partitioners as partitioners
from federax.simulation import sampling as sampling
from federax.simulation.client_data import ClientData as ClientData
from federax.simulation.dataset import Dataset as Dataset
from federax.simulation.dataset import INFINITE_CARDINALITY as INFINITE_CARDINALITY
from federax.simulation.dataset import RaggedElementsError as RaggedElementsError
from federax.simulation.dataset import UNKNOWN_CARDINALITY as UNKNOWN_CARDINALITY
from federax.simulation.sampling import PoissonSampler as PoissonSampler
from federax.simulation.sampling import UniformSampler as UniformSampler
from federax.simulation.sampling import build_uniform_client_sampling_fn as build_uniform_client_sampling_fn
from federax.simulation.sampling import build_uniform_sampling_fn as build_uniform_sampling_fn

from federax.simulation import datasets as datasets  # Last: its loaders use the names above.

__all__ = [
    "ClientData",
    "Dataset",
    "INFINITE_CARDINALITY",
    "PoissonSampler",
    "RaggedElementsError",
    "UNKNOWN_CARDINALITY",
    "UniformSampler",
    "build_uniform_client_sampling_fn",
    "build_uniform_sampling_fn",
    "datasets",
    "partitioners",
    "sampling",
]
