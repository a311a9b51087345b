"""Checks a client's raw features against what a loader's elements need, before any cast.

A corrupt file must never load silently: a cast would turn float labels into integers, NaN
pixels into pixels, and 783 values per row into a reshape error far from the file. Each check
raises `DataFormatError` naming the feature, what was expected and what was found; the readers
add the file and the client to the message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Optional

import numpy as np

from federax.simulation.formats.errors import DataFormatError, data_format_error

_KINDS = {"int": "iu", "float": "fiu", "str": "U"}
_KIND_NAMES = {"int": "integers", "float": "numbers", "str": "strings"}


def column(features: Mapping[str, np.ndarray], name: str, kind: str, dtype: np.dtype,
           shape: tuple[int, ...] = (), bounds: Optional[tuple[int, int]] = None) -> np.ndarray:
  """Feature `name` as `dtype[n, *shape]`, checked: present, of `kind`, finite, in `bounds`.

  Args:
    features: a client's raw features (feature name -> array with a leading example axis).
    name: the feature wanted.
    kind: 'int', 'float' (integers allowed) or 'str'.
    dtype: the dtype returned.
    shape: the shape of one example; a stored example may hold the same values in another
      shape (LEAF's 784 pixels for 28 x 28), never values of another example.
    bounds: `[low, high)` for integer features (a label's classes, a byte's 0..255).

  Raises:
    DataFormatError: naming the feature, what was expected and what was found.

  Example:
    >>> column({'x': np.ones((2, 4))}, 'x', 'float', np.float32, (2, 2)).shape
    (2, 2, 2)
  """
  if name not in features:
    raise data_format_error(f"feature {name!r}", "missing", expected="a feature "
                            f"{name!r}", found=f"only {sorted(features)}")
  array = np.asarray(features[name])
  where = f"feature {name!r}"
  if array.dtype.kind not in _KINDS[kind]:
    raise data_format_error(where, f"holds {array.dtype} values", expected=_KIND_NAMES[kind])
  size = math.prod(shape)
  if array.ndim == 0 or math.prod(array.shape[1:]) != size:
    wanted = "[n" + "".join(f", {d}" for d in shape) + "]"
    per = f" ({size} values per example)" if shape else ""
    raise data_format_error(where, "the wrong shape", expected=f"{wanted}{per}",
                            found=f"{list(array.shape)}")
  if array.dtype.kind == "f" and not np.isfinite(array).all():
    example = int(np.argmin(np.isfinite(array).reshape(len(array), -1).all(axis=1)))
    raise data_format_error(where, f"a non-finite value (NaN or inf) in example {example}",
                            expected="finite numbers")
  if bounds is not None and array.size:
    low, high = bounds
    outside = (array < low) | (array >= high)
    if outside.any():
      first = np.unravel_index(int(np.argmax(outside)), array.shape)
      raise data_format_error(where, f"holds {array[first]} in example {first[0]}",
                              expected=f"values in [{low}, {high - 1}]")
  return array.astype(dtype, copy=False).reshape(len(array), *shape)


def same_length(**columns: np.ndarray) -> None:
  """Checks that every feature holds one value per example (equal leading lengths).

  Raises:
    DataFormatError: listing each feature's length.
  """
  lengths = {name: len(array) for name, array in columns.items()}
  if len(set(lengths.values())) > 1:
    raise data_format_error("features", "different numbers of examples",
                            expected="one value of each feature per example",
                            found=", ".join(f"{k}: {v}" for k, v in lengths.items()))


__all__ = ["DataFormatError", "column", "same_length"]
