"""`Dataset`: a lazy, NumPy-native sequence of elements with the tf.data operations FL code uses.

An element is a pytree of NumPy arrays (usually a dict of arrays). A `Dataset` is an immutable
description of a pipeline (`from_tensor_slices(...).shuffle(...).repeat(...).batch(...)`);
nothing runs until it is iterated or stacked.

How it stays fast: every operation can describe its output as a *plan*, a source of stacked
arrays plus an integer index array (`idx[i]` is the source row of element i, or, after a batch,
`idx[i, :]` are the rows of batch i, with -1 for padding). `shuffle`, `repeat`, `take`, `skip`,
`batch`, `masked_batch`, `filter` and `unbatch` only rewrite the index array with NumPy, so
`to_stacked()` of the usual pipeline is one gather. `map` and `filter` call the user's function
once per distinct source row (unavoidable for arbitrary Python) and re-stack the results into a
new source; after a batch, `map` calls it once per batch on views of one gather, and results
that are still views of it (a reshape) are kept there, already stacked and padded. Anything that
cannot be planned (ragged elements, infinite input, `padded_batch` over ragged data) streams
element by element; both paths give the same elements in the same order, shuffles included.

Differences from tf.data, on purpose: a `Dataset` is a value, so iterating it twice gives the
same elements (a shuffle reshuffles across the epochs of a following `repeat`, not across
separate iterations); `shuffle(seed=None)` draws its seed once, when called; functions given to
`map`/`filter` must be pure (they may be called in a different order than tf would call them,
and not at all when a read can be skipped). `from_tensor_slices` keeps the arrays it is given
(tf.data copies them): a change to a writable one shows at the next read. A dataset whose
arrays are all read-only (the loaders' are; `x.setflags(write=False)`) reads the same every
time, so the vectorized runtime keeps a cohort of such datasets that a loop passes again
instead of reading it each round (docs/architecture.md, "Kept cohorts").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Optional

import jax
import numpy as np

from federax.core.errors import format_message
from federax.data._batching import Batch, MaskedBatch, PaddedBatch
from federax.data._cohort import padded_cohort
from federax.data._concat import Concat
from federax.data._elements import Element, leaf_names, merge_specs
from federax.data._elements import RaggedElementsError as RaggedElementsError
from federax.data._node import INFINITE_CARDINALITY as INFINITE_CARDINALITY
from federax.data._node import UNKNOWN_CARDINALITY as UNKNOWN_CARDINALITY
from federax.data._node import Node
from federax.data._shuffle import Shuffle
from federax.data._sources import Slices, elements_node
from federax.data._transforms import (Cache, Enumerate, Filter, Map, Repeat, Skip, Take,
                                            Unbatch)

# tf.data's `AUTOTUNE` (-1), so `map(fn, num_parallel_calls=fx.data.AUTOTUNE)` and
# `prefetch(fx.data.AUTOTUNE)` port by renaming: federax's pipelines are NumPy index
# operations, with no parallelism or buffer to tune.
AUTOTUNE = -1

__all__ = ["AUTOTUNE", "Dataset", "RaggedElementsError", "INFINITE_CARDINALITY",
           "UNKNOWN_CARDINALITY"]


class Dataset:
  """A lazy, immutable sequence of elements (pytrees of NumPy arrays), like `tf.data.Dataset`.

  Build one with `Dataset.from_tensor_slices` or `Dataset.from_elements`, chain operations, and
  iterate it or call `to_stacked()`.

  Example:
    >>> ds = Dataset.from_tensor_slices({'x': np.arange(10.0), 'y': np.arange(10)})
    >>> [b['y'].tolist() for b in ds.batch(3)]
    [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    >>> ds.shuffle(10, seed=0).repeat(2).masked_batch(4).to_stacked()['mask'].shape
    (5, 4)
  """

  __slots__ = ("_node",)

  def __init__(self, node: Node):
    object.__setattr__(self, "_node", node)

  def __setattr__(self, name, value):
    raise AttributeError("Dataset is immutable; its methods return new datasets.")

  # --- Sources ---------------------------------------------------------------------------------

  @classmethod
  def from_tensor_slices(cls, tensors: Any) -> Dataset:
    """Slices a pytree of arrays along their shared leading axis.

    Args:
      tensors: a dict, tuple, namedtuple or array (or nesting of these) of arrays of shape
        `[n, ...]`, all with the same `n`.

    Returns:
      A dataset of `n` elements; element i is the pytree of `a[i]`.

    Raises:
      ValueError: if a leaf is a scalar or the leading axes differ.

    Example:
      >>> [x.tolist() for x in Dataset.from_tensor_slices(np.arange(3)).as_numpy_iterator()]
      [0, 1, 2]
    """
    return cls(Slices.from_tree(tensors))

  @classmethod
  def from_elements(cls, elements: Sequence[Element]) -> Dataset:
    """A dataset of the given elements (stacked when they share one shape, else kept as a list).

    Args:
      elements: a non-empty sequence of pytrees with one structure.

    Raises:
      ValueError: if `elements` is empty or the structures differ.

    Example:
      >>> len(Dataset.from_elements([np.zeros(2), np.zeros(3)]))
      2
    """
    return cls(elements_node(list(elements)))

  # --- Transformations -------------------------------------------------------------------------

  def repeat(self, count: Optional[int] = None) -> Dataset:
    """Repeats the dataset `count` times (`None` or -1: forever)."""
    if count is not None and count < -1:
      raise ValueError(f"repeat(count) expects count >= 0, or None/-1 for forever; got {count}.")
    return Dataset(Repeat(self._node, None if count in (None, -1) else int(count)))

  def shuffle(self, buffer_size: int, seed: Optional[int] = None,
              reshuffle_each_iteration: bool = True) -> Dataset:
    """Shuffles with tf.data's buffer semantics, reproducibly for a given seed.

    A buffer holds the next `buffer_size` elements; each output is a uniformly random buffer
    slot, refilled by the next input; when the input ends the buffer drains in a random order.
    `buffer_size >= len(ds)` is a uniform permutation; `buffer_size=1` is the identity. With
    `reshuffle_each_iteration` a following `repeat()` gets a new order per epoch, derived from
    `(seed, epoch)`.

    Args:
      buffer_size: the number of elements in the buffer, >= 1.
      seed: a non-negative int; `None` draws one now.
      reshuffle_each_iteration: whether each epoch of an enclosing `repeat` reshuffles.

    Raises:
      ValueError: if `buffer_size < 1` or the seed is negative.
    """
    if int(buffer_size) < 1:
      raise ValueError(f"shuffle(buffer_size) expects buffer_size >= 1, got {buffer_size}.")
    if seed is None:
      seed = int(np.random.SeedSequence().entropy)
    elif int(seed) < 0:
      raise ValueError(f"shuffle(seed) expects a non-negative int, got {seed}.")
    return Dataset(Shuffle(self._node, int(buffer_size), int(seed),
                           bool(reshuffle_each_iteration)))

  def batch(self, batch_size: int, drop_remainder: bool = False) -> Dataset:
    """Stacks consecutive elements into batches of `batch_size` (the last may be smaller).

    Example:
      >>> [b.tolist() for b in Dataset.from_tensor_slices(np.arange(5)).batch(2)]
      [[0, 1], [2, 3], [4]]
    """
    return Dataset(Batch(self._node, _check_batch_size("batch", batch_size),
                         bool(drop_remainder)))

  def masked_batch(self, batch_size: int, mask_key: str = "mask") -> Dataset:
    """Batches into exactly `batch_size` rows, zero-padding the last batch, with a mask feature.

    Every batch has shape `[batch_size, ...]` and an extra bool feature `mask_key` of shape
    `[batch_size]`, True for real examples. This is what lets the vectorized runtime stack
    every client's batches without ragged shapes.

    Args:
      batch_size: rows per batch, >= 1.
      mask_key: the name of the mask feature.

    Raises:
      TypeError: if elements are not mappings (dicts).
      ValueError: if elements already have a feature named `mask_key`.

    Example:
      >>> ds = Dataset.from_tensor_slices({'x': np.arange(5)}).masked_batch(2)
      >>> [b['mask'].tolist() for b in ds]
      [[True, True], [True, True], [True, False]]
    """
    batch_size = _check_batch_size("masked_batch", batch_size)
    spec = self.element_spec
    if not isinstance(spec, Mapping):
      raise TypeError(
          "masked_batch() needs elements that are mappings (dicts), to add the "
          f"{mask_key!r} feature; got elements of type {type(spec).__name__}: {spec}. "
          "Hint: .map(lambda x, y: {'x': x, 'y': y}) first.")
    if mask_key in spec:
      raise ValueError(
          f"masked_batch() would add the feature {mask_key!r}, but elements already have it "
          f"(keys: {list(spec)}). Pass another mask_key=.")
    return Dataset(MaskedBatch(self._node, batch_size, mask_key))

  def padded_batch(self, batch_size: int, padded_shapes: Any = None, padding_values: Any = None,
                   drop_remainder: bool = False) -> Dataset:
    """Batches elements of varying shapes, padding each component (tf.data semantics).

    Args:
      batch_size: elements per batch.
      padded_shapes: a pytree like the element of shapes; `None`/-1 dimensions pad to the
        longest in the batch. Default: pad every dimension to the longest in the batch.
      padding_values: a scalar or a pytree like the element of scalars; default 0 (`''` for
        strings).
      drop_remainder: whether to drop a final smaller batch.

    Raises:
      ValueError: if an element is larger than its padded shape, or ranks differ.

    Example:
      >>> ds = Dataset.from_elements([np.ones(1), np.ones(3)]).padded_batch(2)
      >>> next(iter(ds)).tolist()
      [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    """
    return Dataset(PaddedBatch(self._node, _check_batch_size("padded_batch", batch_size),
                               padded_shapes, padding_values, bool(drop_remainder)))

  def map(self, fn: Callable[..., Element], num_parallel_calls: Any = None,
          deterministic: Optional[bool] = None, name: Optional[str] = None) -> Dataset:
    """Applies `fn` to each element (a tuple element is passed as positional arguments).

    `num_parallel_calls`, `deterministic` and `name` are tf.data's, accepted so that ported
    code (`num_parallel_calls=tf.data.AUTOTUNE`) runs; they change nothing: elements are
    produced in order, and a planned pipeline calls `fn` once per distinct source row (once
    per batch after `batch()`), every time the dataset is read (a cohort of read-only
    datasets that the vectorized runtime keeps between calls is not read again).
    Dimensions that vary upstream (the batch dimension after `batch()`) stay unknown in the
    `element_spec`, even though it is read from the first element.

    Example:
      >>> ds = Dataset.from_tensor_slices({'x': np.zeros([5, 4])}).batch(2)
      >>> ds.map(lambda e: e['x'] + 1, num_parallel_calls=-1).element_spec
      TensorType(np.float64, (None, 4))
    """
    del num_parallel_calls, deterministic, name
    return Dataset(Map(self._node, fn))

  def filter(self, predicate: Callable[..., Any]) -> Dataset:
    """Keeps the elements for which `predicate` (called like `map`'s fn) is true."""
    return Dataset(Filter(self._node, predicate))

  def take(self, count: int) -> Dataset:
    """The first `count` elements (-1: all)."""
    return self if count == -1 else Dataset(Take(self._node, _check_count("take", count)))

  def skip(self, count: int) -> Dataset:
    """All but the first `count` elements."""
    return Dataset(Skip(self._node, _check_count("skip", count)))

  def cache(self) -> Dataset:
    """Computes the elements once and keeps them in memory, as tf.data's `cache()`.

    Use it on a client's preprocessed dataset that is trained on every round: the pipeline
    (shuffles, maps, batching) runs on the first pass only, and `to_stacked()` returns the
    same read-only arrays afterwards. As in tf.data, the first pass is what is kept: a shuffle
    or a random `map` before `cache()` is not redone on later passes or epochs.

    Example:
      >>> ds = Dataset.from_tensor_slices({'x': np.arange(5)}).masked_batch(2).cache()
      >>> ds.to_stacked()['x'] is ds.to_stacked()['x']
      True
    """
    return Dataset(Cache(self._node))

  def prefetch(self, buffer_size: int = -1) -> Dataset:
    """A no-op kept for tf.data parity: elements are produced on demand."""
    del buffer_size
    return self

  def enumerate(self, start: int = 0) -> Dataset:
    """Pairs each element with its position: `(int64 counter, element)`."""
    return Dataset(Enumerate(self._node, int(start)))

  def concatenate(self, other: Dataset) -> Dataset:
    """The elements of this dataset followed by those of `other`.

    Raises:
      TypeError: if the element structures or dtypes differ.
    """
    if not isinstance(other, Dataset):
      raise TypeError(f"concatenate() expects a Dataset, got {type(other).__name__}.")
    merge_specs(self.element_spec, other.element_spec, "concatenate()")
    return Dataset(Concat.of([self._node, other._node]))

  @classmethod
  def concatenate_lazily(cls, dataset_fns: Sequence[Callable[[], Dataset]]) -> Dataset:
    """The elements of each function's dataset in turn, each created only when read.

    `ClientData.create_dataset_from_all_clients` uses this so that no client's data is loaded
    before the result is read. The cardinality is unknown; the element_spec is the first
    dataset's.

    Args:
      dataset_fns: a non-empty sequence of zero-argument functions, each returning a `Dataset`.

    Raises:
      ValueError: if `dataset_fns` is empty.

    Example:
      >>> part = lambda: Dataset.from_tensor_slices(np.arange(2))
      >>> Dataset.concatenate_lazily([part, part]).to_stacked().tolist()
      [0, 1, 0, 1]
    """
    if not dataset_fns:
      raise ValueError("concatenate_lazily() expects at least one dataset function, got none.")
    return cls(Concat([lambda fn=fn: fn()._node for fn in dataset_fns]))

  def unbatch(self) -> Dataset:
    """Splits each element along its leading axis into separate elements.

    Raises:
      ValueError: if a component of the element is a scalar.
    """
    leaves, treedef = jax.tree_util.tree_flatten(self.element_spec)
    scalars = [n for n, t in zip(leaf_names(treedef), leaves) if t.shape == ()]
    if scalars:
      raise ValueError(f"unbatch() splits along a leading axis, but {', '.join(scalars)} has "
                       "shape () (a scalar).")
    return Dataset(Unbatch(self._node))

  # --- Inspection and output -------------------------------------------------------------------

  @property
  def element_spec(self) -> Any:
    """The element structure with `TensorType(dtype, shape)` leaves; `None` dims vary.

    For `map`, the spec is inferred by calling `fn` on the first element.
    """
    return self._node.spec()

  def cardinality(self) -> int:
    """The number of elements; `INFINITE_CARDINALITY` (-1) or `UNKNOWN_CARDINALITY` (-2)."""
    return self._node.cardinality()

  def __len__(self) -> int:
    """The number of elements, when known without reading them (as tf.data's `len`).

    Raises:
      TypeError: if the dataset is infinite or its length is unknown; the message names the
        operation that made it so (`repeat()` without a count, `filter()`, ...).
    """
    n = self._node.cardinality()
    if n == INFINITE_CARDINALITY:
      raise TypeError(format_message(
          "len(dataset)", f"The dataset is infinite: {self._node.length_cause()} repeats it "
          "forever.", hint="bound it with take(n), or repeat(count) with a count"))
    if n == UNKNOWN_CARDINALITY:
      raise TypeError(format_message(
          "len(dataset)", f"The dataset length is unknown: {self._node.length_cause()} keeps a "
          "number of elements known only by reading them.",
          hint="count with sum(1 for _ in dataset), or use cardinality(), which returns -2 "
          "(UNKNOWN_CARDINALITY) instead of raising"))
    return n

  def __iter__(self) -> Iterator[Element]:
    return self._node.elements()

  def as_numpy_iterator(self) -> Iterator[Element]:
    """Iterates the elements as NumPy pytrees, as a generator.

    Keras 3 reads a generator of batches, so `keras_model.fit(ds.as_numpy_iterator())` and
    `keras_model.evaluate(ds.as_numpy_iterator(), steps=n)` read a federax dataset.

    Example:
      >>> import types
      >>> isinstance(Dataset.from_tensor_slices(np.arange(3)).take(2).as_numpy_iterator(),
      ...            types.GeneratorType)
      True
    """
    yield from self

  def reduce(self, initial_state: Any, reduce_fn: Callable[[Any, Element], Any]) -> Any:
    """Folds `reduce_fn(state, element)` over the elements.

    Example:
      >>> int(Dataset.from_tensor_slices(np.arange(5)).reduce(0, lambda s, x: s + x))
      10
    """
    state = initial_state
    for element in self:
      state = reduce_fn(state, element)
    return state

  def to_stacked(self) -> Any:
    """All elements stacked: a pytree like the element, each leaf of shape `[len(ds), ...]`.

    Element i is `tree_map(lambda a: a[i], stacked)`. The planned pipelines (slices, shuffle,
    repeat, take, skip, filter, full batches or masked_batch) cost one NumPy gather and no
    per-element Python. An empty dataset gives leaves of shape `[0, ...]` with unknown
    dimensions of its element_spec set to 0.

    Raises:
      RaggedElementsError: if elements differ in shape (a smaller final batch, ragged data).
      ValueError: if the dataset is infinite.
    """
    return self._node.stacked()

  def to_padded_stacked(self) -> tuple[Any, Optional[np.ndarray]]:
    """All elements stacked, batches of different sizes padded: `(stacked, rows)`.

    `to_stacked()` for the vectorized runtime when a pipeline ends with a short batch
    (`batch(20)`, TFF's way): every leaf whose leading (batch) dimension varies has shape
    `[len(ds), B, ...]`, the short batches padded with zero rows to the largest `B`, and
    `rows` is bool `[len(ds), B]`, True for the real rows. `rows` is None when nothing was
    padded. After `cache()`, the same read-only arrays are returned every time.

    Raises:
      RaggedElementsError: if elements differ in more than their number of rows.
      ValueError: if the dataset is infinite.

    Example:
      >>> ds = Dataset.from_tensor_slices({'x': np.arange(5)}).batch(2)
      >>> stacked, rows = ds.to_padded_stacked()
      >>> stacked['x'].tolist(), rows.tolist()
      ([[0, 1], [2, 3], [4, 0]], [[True, True], [True, True], [True, False]])
    """
    return self._node.padded_stacked()

  @staticmethod
  def to_padded_cohort(datasets: Sequence[Dataset], padded_length: Callable[[int], int]
                       ) -> Optional[tuple[Any, Optional[np.ndarray], np.ndarray]]:
    """Several datasets' `to_padded_stacked()` stacked, each padded to one length, read
    straight into the result (`federax.core.datasets.CohortDataset`).

    Args:
      datasets: the cohort, `n` datasets.
      padded_length: the length `L` to pad to, given the longest dataset's length.

    Returns:
      `(stacked, rows, lengths)`: every leaf `[n, L, ...]`, dataset i's `lengths[i]` elements
      in `[i, :lengths[i]]` and zeros after; `rows` bool `[n, L, B]`, True for real rows, or
      None when no batch was padded. None when a pipeline is not a batched one, optionally
      ending in a `map` (the datasets are then read one by one). `stacked` and `rows` are
      read-only when the datasets' source arrays are (see `Dataset`: then every read gives
      the same arrays, and the runtime keeps them between calls).

    Example:
      >>> a = Dataset.from_tensor_slices({'x': np.arange(5)}).batch(2)
      >>> b = Dataset.from_tensor_slices({'x': np.arange(2)}).batch(2)
      >>> stacked, rows, lengths = Dataset.to_padded_cohort([a, b], lambda longest: 4)
      >>> stacked['x'][:, :, 0].tolist(), lengths.tolist()
      ([[0, 2, 4, 0], [0, 0, 0, 0]], [3, 1])
      >>> rows[1].tolist()
      [[True, True], [False, False], [False, False], [False, False]]
    """
    nodes = [d._node for d in datasets]  # pylint: disable=protected-access
    return padded_cohort(nodes, padded_length)

  def __repr__(self) -> str:
    n = self._node.cardinality()
    card = {INFINITE_CARDINALITY: "inf", UNKNOWN_CARDINALITY: "unknown"}.get(n, str(n))
    return f"<Dataset {type(self._node).__name__.lower()}: cardinality={card}>"


def _check_batch_size(op: str, batch_size: int) -> int:
  if int(batch_size) < 1:
    raise ValueError(f"{op}(batch_size) expects batch_size >= 1, got {batch_size}.")
  return int(batch_size)


def _check_count(op: str, count: int) -> int:
  if int(count) < 0:
    raise ValueError(f"{op}(count) expects count >= 0, got {count}.")
  return int(count)
