"""Post-processing of a released histogram: TFF's `tff.analytics.histogram_processing`."""

from __future__ import annotations

from typing import Any

import numpy as np

from federax.core.errors import error


def threshold_histogram(histogram_keys: Any, histogram_values: Any,
                        threshold: Any) -> tuple[np.ndarray, np.ndarray]:
  """The `(keys, values)` pairs whose value is at least `threshold`, in their order.

  Args:
    histogram_keys: a 1-D array of keys (strings or bytes), shape `[n]`.
    histogram_values: a 1-D array of numbers, shape `[n]`.
    threshold: a number.

  Returns:
    `(keys, values)` as NumPy arrays, shape `[m]` with `m <= n`.

  Example:
    >>> keys, values = fx.analytics.histogram_processing.threshold_histogram(
    ...     ['a', 'b', 'c'], [3.0, 1.0, 2.0], 2.0)
    >>> keys.tolist(), values.tolist()
    (['a', 'c'], [3.0, 2.0])
  """
  keys, values = np.asarray(histogram_keys), np.asarray(histogram_values)
  if keys.ndim != 1 or values.ndim != 1 or keys.shape != values.shape:
    raise error(ValueError, "threshold_histogram(histogram_keys, histogram_values, threshold)",
                "the keys and the values must be 1-D and of one length.",
                expected="two arrays of shape [n]",
                actual=f"keys {keys.shape}, values {values.shape}")
  if values.dtype.kind not in "iuf":
    raise error(TypeError, "threshold_histogram(histogram_keys, histogram_values, threshold)",
                "the values must be numbers.", expected="ints or floats",
                actual=f"dtype {values.dtype}")
  keep = values >= threshold
  return keys[keep], values[keep]
