"""A client's strings as the heavy-hitters computation reads them: all, capped, unique, top.

TFF's `tff.analytics.data_processing`, on the host: a dataset is an iterable of batches
(1-D arrays or lists of strings: a list, an `fx.data.Dataset`, or what a host computation
receives for `str[?]*`). Elements come back as a NumPy `bytes` array (`S` dtype), UTF-8, cut to
`string_max_bytes` on a character boundary (TFF cuts at the byte), in order of first appearance
(as `tf.unique`). Everything after reading the batches is vectorized NumPy.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from federax.analytics import text
from federax.core.errors import error


def _check_positive(op: str, name: str, value: Any, optional: bool = False) -> None:
  if optional and value is None:
    return
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise error(ValueError, f"{op}({name}=...)", f"`{name}` must be at least 1"
                + (" when it is not None." if optional else "."),
                expected="a positive int" + (" or None" if optional else ""), actual=repr(value))


def _batch(op: str, batch: Any) -> np.ndarray:
  array = np.asarray(batch)
  if array.dtype.kind not in "USO" or (array.dtype.kind == "O" and not all(
      isinstance(x, (str, bytes)) for x in array.reshape(-1))):
    raise error(TypeError, op, "the dataset's elements must be strings.",
                expected="batches of strings (str[?])", actual=f"elements of dtype {array.dtype}")
  if array.ndim > 1:
    raise error(ValueError, op, "the dataset's elements must be 1-D batches of strings.",
                expected="str[?]", actual=f"an element of shape {array.shape}")
  return array.reshape(-1)


def get_all_elements(dataset: Any, string_max_bytes: Optional[int] = None) -> np.ndarray:
  """Every element of every batch, in order, cut to `string_max_bytes` bytes.

  Example:
    >>> get_all_elements([['a', 'bcd'], ['a']], string_max_bytes=2).tolist()
    [b'a', b'bc', b'a']
  """
  op = "get_all_elements"
  _check_positive(op, "string_max_bytes", string_max_bytes, optional=True)
  batches = [b for b in (_batch(op, b) for b in dataset) if b.size]
  if not batches:
    elements = np.zeros(0, "S1")
  elif all(b.dtype.kind == "U" for b in batches):  # Encoded at once: one call, not one a batch.
    elements = text.to_bytes(np.concatenate(batches))
  else:
    elements = np.concatenate([text.to_bytes(b) for b in batches])
  if string_max_bytes is not None:
    elements = text.truncate_utf8(elements, string_max_bytes)
  return elements


def _capped(dataset: Any, max_user_contribution: int, batch_size: int) -> list:
  """The first `max_user_contribution // batch_size` batches (TFF takes whole batches)."""
  batches = []
  for i, batch in enumerate(dataset):
    if i >= max_user_contribution // batch_size:
      break
    batches.append(batch)
  return batches


def get_capped_elements(dataset: Any, max_user_contribution: int, batch_size: int = 1,
                        string_max_bytes: Optional[int] = None) -> np.ndarray:
  """The elements of the first `max_user_contribution // batch_size` batches: whole batches,
  so possibly fewer than `max_user_contribution` elements.

  Example:
    >>> get_capped_elements([['a', 'b'], ['c', 'd']], 3, batch_size=2).tolist()
    [b'a', b'b']
  """
  op = "get_capped_elements"
  _check_positive(op, "max_user_contribution", max_user_contribution)
  _check_positive(op, "batch_size", batch_size)
  _check_positive(op, "string_max_bytes", string_max_bytes, optional=True)
  return get_all_elements(_capped(dataset, max_user_contribution, batch_size), string_max_bytes)


def unique_with_counts(elements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`(unique, counts int64)` of a `bytes` array (`S` dtype), in order of first appearance.

  The strings are compared as rows of 64-bit integers (their bytes, zero-padded), sorted
  stably, so each group's first member is its first appearance: several times faster than
  sorting the strings themselves.
  """
  n = elements.size
  if not n:
    return elements, np.zeros(0, np.int64)
  width = elements.dtype.itemsize
  words = -(-width // 8)
  raw = np.zeros((n, 8 * words), np.uint8)
  raw[:, :width] = np.ascontiguousarray(elements).view(np.uint8).reshape(n, width)
  keys = raw.view(np.uint64)  # [n, words]
  order = (np.argsort(keys[:, 0], kind="stable") if words == 1
           else np.lexsort(keys.T[::-1]))
  ranked = keys[order]
  starts = np.flatnonzero(np.concatenate([[True], np.any(ranked[1:] != ranked[:-1], axis=1)]))
  counts = np.diff(np.append(starts, n))
  first = order[starts]  # Stable sorts keep equal strings in their order: the first comes first.
  by_appearance = np.argsort(first, kind="stable")
  return elements[first[by_appearance]], counts[by_appearance].astype(np.int64)


def get_unique_elements(dataset: Any, string_max_bytes: Optional[int] = None) -> np.ndarray:
  """The distinct elements, in order of first appearance.

  Example:
    >>> get_unique_elements([['b', 'a'], ['b', 'c']]).tolist()
    [b'b', b'a', b'c']
  """
  return get_unique_elements_with_counts(dataset, string_max_bytes)[0]


def get_unique_elements_with_counts(dataset: Any, string_max_bytes: Optional[int] = None
                                    ) -> tuple[np.ndarray, np.ndarray]:
  """`(elements, counts)`: the distinct elements in order of first appearance, and how often
  each occurs.

  Example:
    >>> elements, counts = get_unique_elements_with_counts([['b', 'a'], ['b']])
    >>> elements.tolist(), counts.tolist()
    ([b'b', b'a'], [2, 1])
  """
  return unique_with_counts(get_all_elements(dataset, string_max_bytes))


def get_capped_elements_with_counts(dataset: Any, max_user_contribution: int,
                                    batch_size: int = 1, string_max_bytes: Optional[int] = None
                                    ) -> tuple[np.ndarray, np.ndarray]:
  """The distinct elements of the capped batches (`get_capped_elements`) with their counts."""
  return unique_with_counts(get_capped_elements(dataset, max_user_contribution, batch_size,
                                                string_max_bytes))


def top_with_counts(elements: np.ndarray, counts: np.ndarray,
                    k: int) -> tuple[np.ndarray, np.ndarray]:
  """The `k` most frequent of distinct `elements` (ties: the earlier first), kept in order."""
  if elements.size <= k:
    return elements, counts
  chosen = np.sort(np.lexsort((np.arange(counts.size), -counts))[:k])
  return elements[chosen], counts[chosen]


def get_top_elements_with_counts(dataset: Any, max_user_contribution: int,
                                 string_max_bytes: Optional[int] = None
                                 ) -> tuple[np.ndarray, np.ndarray]:
  """The `max_user_contribution` most frequent distinct elements and their counts; of equally
  frequent ones the earlier (as `tf.math.top_k`), in order of first appearance.

  Example:
    >>> elements, counts = get_top_elements_with_counts([['a', 'b', 'b', 'c', 'c']], 2)
    >>> elements.tolist(), counts.tolist()
    ([b'b', b'c'], [2, 2])
  """
  _check_positive("get_top_elements_with_counts", "max_user_contribution", max_user_contribution)
  elements, counts = get_unique_elements_with_counts(dataset, string_max_bytes)
  return top_with_counts(elements, counts, max_user_contribution)


def get_top_elements(dataset: Any, max_user_contribution: int,
                     string_max_bytes: Optional[int] = None) -> np.ndarray:
  """The `max_user_contribution` most frequent distinct elements, each once."""
  return get_top_elements_with_counts(dataset, max_user_contribution, string_max_bytes)[0]


def get_top_multi_elements(dataset: Any, max_user_contribution: int,
                           string_max_bytes: Optional[int] = None) -> np.ndarray:
  """The most frequent distinct elements, each repeated as often as it occurs.

  Example:
    >>> get_top_multi_elements([['a', 'b', 'b']], 1).tolist()
    [b'b', b'b']
  """
  elements, counts = get_top_elements_with_counts(dataset, max_user_contribution,
                                                  string_max_bytes)
  return np.repeat(elements, counts)
