"""Data: `Dataset`, a lazy, NumPy-native sequence of elements with tf.data's operations."""

from federax.data.dataset import Dataset as Dataset
from federax.data.dataset import INFINITE_CARDINALITY as INFINITE_CARDINALITY
from federax.data.dataset import RaggedElementsError as RaggedElementsError
from federax.data.dataset import UNKNOWN_CARDINALITY as UNKNOWN_CARDINALITY

# tf.data's `AUTOTUNE` (-1), so `map(fn, num_parallel_calls=fx.data.AUTOTUNE)` and
# `prefetch(fx.data.AUTOTUNE)` port by renaming; federax's pipelines are NumPy index
# operations and take no parallelism or buffer settings.
AUTOTUNE = -1

__all__ = ["AUTOTUNE", "Dataset", "INFINITE_CARDINALITY", "RaggedElementsError", "UNKNOWN_CARDINALITY"]
