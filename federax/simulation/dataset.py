"""`Dataset` under its former path: it moved to `federax.data`, where new code imports it."""

from federax.data.dataset import AUTOTUNE as AUTOTUNE
from federax.data.dataset import Dataset as Dataset
from federax.data.dataset import INFINITE_CARDINALITY as INFINITE_CARDINALITY
from federax.data.dataset import RaggedElementsError as RaggedElementsError
from federax.data.dataset import UNKNOWN_CARDINALITY as UNKNOWN_CARDINALITY

__all__ = ["AUTOTUNE", "Dataset", "INFINITE_CARDINALITY", "RaggedElementsError", "UNKNOWN_CARDINALITY"]
