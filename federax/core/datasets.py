"""`StackableDataset`: what a runtime may ask of a client dataset, declared where runtimes see it.

A `{T*}@CLIENTS` argument is a list with one dataset per client. A runtime reads a dataset
through the three hooks of `StackableDataset` and nothing else, so it depends on this
declaration instead of on `federax.data.Dataset` (which sits above the core and satisfies it)
or on `hasattr` checks. A dataset that lacks the hooks (e.g. a plain list of elements) is
iterated element by element. Two optional protocols add a hook each: `PaddableDataset` pads
batches of different sizes (TFF's `batch(20)`), `CohortDataset` reads a whole cohort of
datasets into one padded array per feature.

    from federax.core.datasets import StackableDataset

    ds = fx.data.Dataset.from_tensor_slices({'x': np.arange(6.0)}).masked_batch(4)
    isinstance(ds, StackableDataset)  # True
    ds.cardinality(), ds.to_stacked()['x'].shape  # (2, (2, 4))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Optional, Protocol, runtime_checkable

import numpy as np

__all__ = ["ALIGNMENT", "INFINITE_CARDINALITY", "UNKNOWN_CARDINALITY", "CohortDataset",
           "PaddableDataset", "StackableDataset", "aligned_empty"]

INFINITE_CARDINALITY = -1
UNKNOWN_CARDINALITY = -2

ALIGNMENT = 64
"""XLA:CPU takes a host array aligned to this many bytes without copying it (it copies others:
3.5 ms for the 18 MB of a 10-client FedAvg round on this machine, against 0.04 ms aligned)."""


def aligned_empty(shape: tuple, dtype: Any) -> np.ndarray:
  """`np.empty(shape, dtype)` whose data starts at a multiple of `ALIGNMENT` bytes."""
  dtype = np.dtype(dtype)
  size = math.prod(shape) * dtype.itemsize
  raw = np.empty(size + ALIGNMENT, np.uint8)
  start = -raw.ctypes.data % ALIGNMENT
  return raw[start:start + size].view(dtype).reshape(shape)


@runtime_checkable
class StackableDataset(Protocol):
  """A client dataset: elements (pytrees of NumPy arrays) a runtime can read all at once.

  `isinstance(x, StackableDataset)` checks that the three hooks exist (not their signatures).
  The vectorized runtime stacks, pads and masks a cohort of such datasets into one array per
  feature with a leading client axis; the sequential runtime iterates them (`__iter__`).
  """

  @property
  def element_spec(self) -> Any:
    """The structure of one element (a dict, tuple, namedtuple ... of leaves), each leaf a
    `federax.core.types.TensorType(dtype, shape)`; a `None` dimension varies between elements.

    `federax.core.type_conversions.to_type` turns it into the `T` of the dataset's `T*`; the
    runtime checks it against the declared sequence type before reading any element, and
    reads the padded shapes of a cohort from it when every dimension is known.
    """
    ...

  def cardinality(self) -> int:
    """The number of elements, >= 0; or `INFINITE_CARDINALITY` (-1) for an endless dataset
    (e.g. after `repeat()`), or `UNKNOWN_CARDINALITY` (-2) when it is only known by reading
    the elements (e.g. after `filter()`).

    Cheap, reading no element: with every cohort member's count known (>= 0) a runtime can
    size and stream the cohort before reading it; with -1 or -2 it reads first.
    """
    ...

  def to_stacked(self) -> Any:
    """All elements stacked along a new leading axis: a pytree like the element whose leaves
    are NumPy arrays of shape `[cardinality(), *element_shape]`, element i being
    `tree_map(lambda a: a[i], stacked)`. An empty dataset gives leaves of shape `[0, ...]`.

    The arrays may be shared with the dataset: a cached dataset (`Dataset.cache()`) returns
    the same read-only arrays (`flags.writeable` False) on every call, which tells a runtime
    it may keep them (on the device) across rounds; writable arrays are fresh per call and
    must not be kept. A caller never writes into the result.

    Raises:
      ValueError: if the elements differ in shape (e.g. a smaller final batch), so they cannot
        be stacked, or the dataset is infinite. The runtime then reports the client.
    """
    ...


@runtime_checkable
class PaddableDataset(StackableDataset, Protocol):
  """A `StackableDataset` that can also stack batches of different sizes, padded.

  A dataset written TFF's way (`batch(20)`) ends with a short batch, so `to_stacked()` raises.
  The vectorized runtime then asks for the batches padded with zero rows to the largest one
  (and, for a dataset without this hook, reads its elements one by one and pads them itself).
  """

  def to_padded_stacked(self) -> tuple[Any, Optional[Any]]:
    """`(stacked, rows)`: like `to_stacked()`, but a leading (batch) dimension that differs
    between elements is padded with zero rows to the largest: each such leaf has shape
    `[cardinality(), B, ...]` and `rows` is bool `[cardinality(), B]`, True for real rows.
    `rows` is None when no element was padded (then `stacked` is `to_stacked()`'s).

    Raises:
      ValueError: if the elements differ in more than their number of rows.
    """
    ...


@runtime_checkable
class CohortDataset(PaddableDataset, Protocol):
  """A `PaddableDataset` whose class reads a whole cohort of its datasets at once.

  Read one by one, each client's batches land in arrays of their own, which the runtime then
  copies into the cohort's `[n, L, ...]` arrays. A cohort read gathers every client's rows
  straight into the cohort's arrays: one copy of the data instead of two.
  """

  @staticmethod
  def to_padded_cohort(datasets: list, padded_length: Callable[[int], int]
                       ) -> Optional[tuple[Any, Optional[Any], Any]]:
    """`(stacked, rows, lengths)` of `n` datasets of this class, padded to
    `L = padded_length(longest)` elements (`longest`: the most elements a dataset has): every
    leaf `[n, L, ...]`, client i's `to_padded_stacked()` in `[i, :lengths[i]]` and zeros
    after; `rows` bool `[n, L, B]` (None when no batch was padded), False for padded rows and
    after each client's elements; `lengths` int `[n]`.
    Arrays start at `ALIGNMENT` bytes and are fresh: writable, or read-only when every read of
    these datasets gives the same arrays (their sources are read-only), which the runtime may
    then keep between calls. None when the datasets cannot be read this way (the runtime then
    reads them one by one with `to_padded_stacked()`).
    """
    ...
