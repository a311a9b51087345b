"""Central differential privacy for heavy hitters: Laplace noise on the counts, then a threshold.

The mechanism of TFF's heavy-hitters tutorial, for open-set histograms: add Laplace noise to
each decoded string's count and release only the strings whose noisy count reaches a threshold
`tau`, which hides strings that one user alone could have made appear. If a user contributes
to at most `l0_sensitivity` strings with at most `linf_sensitivity` each (with
`build_iblt_computation(max_words_per_user=k, multi_contribution=False)`: `k` and 1), then
Laplace noise of scale `b = l0 * linf / epsilon` and

    tau = linf + b * ln(l0 / (2 * delta))

give (epsilon, delta)-DP: a string only one user sent has a count of at most `linf`, and
`l0 / 2 * exp(-(tau - linf) / b) = delta` bounds the chance that any of that user's strings is
released. Reference: Google's "Delta for thresholding" note,
https://github.com/google/differential-privacy/blob/main/common_docs/Delta_For_Thresholding.pdf.
Noisy counts are rounded down to integers (post-processing, as the tutorial does).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import numpy as np

from federax.core.errors import error


class LaplaceThreshold(NamedTuple):
  """The mechanism's parameters: the Laplace noise's `scale` and the release `threshold`."""

  scale: float
  threshold: float


def laplace_threshold(epsilon: float, delta: float, l0_sensitivity: int,
                      linf_sensitivity: float = 1.0) -> LaplaceThreshold:
  """The noise scale and threshold that make released heavy hitters (epsilon, delta)-DP.

  Args:
    epsilon: the privacy parameter, > 0.
    delta: the probability of a release the threshold does not cover, in (0, 1).
    l0_sensitivity: how many distinct strings one user can add to (`max_words_per_user`).
    linf_sensitivity: how much one user can add to one string's count (1 without
      multi-contribution).

  Returns:
    `LaplaceThreshold(scale=l0 * linf / epsilon, threshold=linf + scale * ln(l0 / (2 delta)))`.

  Example (the tutorial's numbers):
    >>> scale, tau = laplace_threshold(epsilon=20, delta=0.01, l0_sensitivity=8)
    >>> round(scale, 3), round(tau, 3)
    (0.4, 3.397)
  """
  op = "laplace_threshold"
  if not (isinstance(epsilon, (int, float, np.number)) and epsilon > 0):
    raise error(ValueError, f"{op}(epsilon=...)", "epsilon must be positive.", actual=epsilon)
  if not (isinstance(delta, (int, float, np.number)) and 0 < delta < 1):
    raise error(ValueError, f"{op}(delta=...)", "delta must lie in (0, 1).", actual=delta)
  if isinstance(l0_sensitivity, bool) or not isinstance(l0_sensitivity, (int, np.integer)) or (
      l0_sensitivity < 1):
    raise error(ValueError, f"{op}(l0_sensitivity=...)", "l0_sensitivity must be an int of at "
                "least 1: the number of strings one user may contribute to.",
                actual=repr(l0_sensitivity), hint="pass max_words_per_user")
  if not (isinstance(linf_sensitivity, (int, float, np.number)) and linf_sensitivity > 0):
    raise error(ValueError, f"{op}(linf_sensitivity=...)", "linf_sensitivity must be positive.",
                actual=linf_sensitivity)
  scale = l0_sensitivity * linf_sensitivity / epsilon
  return LaplaceThreshold(scale, linf_sensitivity + scale * math.log(l0_sensitivity / (2 * delta)))


def privatize_heavy_hitters(heavy_hitters: Any, counts: Any, *, key: Any, epsilon: float,
                            delta: float, l0_sensitivity: int, linf_sensitivity: float = 1.0
                            ) -> tuple[np.ndarray, np.ndarray]:
  """Heavy hitters with central DP: counts plus Laplace noise (from the JAX `key`), rounded
  down, and only those whose noisy count reaches the threshold (`laplace_threshold`).

  Args:
    heavy_hitters: the strings (e.g. `ServerOutput.heavy_hitters`), 1-D.
    counts: their counts, 1-D, as many.
    key: a JAX PRNG key (`jax.random.PRNGKey(seed)`): the same key, the same noise.
    epsilon, delta, l0_sensitivity, linf_sensitivity: as `laplace_threshold`.

  Returns:
    `(heavy_hitters, noisy_counts int64)` of the released strings, in their given order.

  Example:
    >>> words, counts = privatize_heavy_hitters(
    ...     np.array([b'the', b'a', b'rare']), np.array([80, 40, 1]), key=jax.random.PRNGKey(0),
    ...     epsilon=1.0, delta=1e-5, l0_sensitivity=1)
    >>> words.tolist()
    [b'the', b'a']
  """
  strings = np.asarray(heavy_hitters)
  counts = np.asarray(counts)
  if strings.ndim != 1 or counts.shape != strings.shape:
    raise error(ValueError, "privatize_heavy_hitters", "one count per heavy hitter is needed.",
                expected=f"counts of shape {strings.shape} (1-D)", actual=counts.shape)
  scale, threshold = laplace_threshold(epsilon, delta, l0_sensitivity, linf_sensitivity)
  noise = np.asarray(jax.random.laplace(key, counts.shape), np.float64) * scale
  noisy = counts.astype(np.float64) + noise
  released = noisy >= threshold
  return strings[released], np.floor(noisy[released]).astype(np.int64)
