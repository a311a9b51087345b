"""Central DP for heavy hitters: the tutorial's Laplace scale and threshold, and the noise and
release probabilities they give, over many draws (one vectorized call)."""

import math

import jax
import numpy as np
import pytest

import federax as fx

hh = fx.analytics.heavy_hitters


@pytest.mark.parametrize("epsilon, delta, l0", [(20, 0.01, 8), (1.0, 1e-6, 1), (3.0, 0.2, 50)])
def test_scale_and_threshold_are_the_tutorials(epsilon, delta, l0):
  scale, threshold = hh.laplace_threshold(epsilon, delta, l0)
  # TFF's tutorial: scale = max_words_per_user / eps, tau = 1 + scale * log(max_words / (2 delta)).
  assert scale == pytest.approx(l0 / epsilon)
  assert threshold == pytest.approx(1 + (l0 / epsilon) * np.log(l0 / (2 * delta)))


def test_noise_has_the_laplace_spread_and_the_threshold_admits_delta():
  n, epsilon, delta, l0, linf = 200_000, 0.5, 0.2, 2, 2
  scale, threshold = hh.laplace_threshold(epsilon, delta, l0, linf)
  assert scale == pytest.approx(8.0)
  strings = np.arange(n).astype(str).astype(object)
  # Counts far above the threshold are all released: their noise's spread is Laplace(b)'s.
  kept, noisy = hh.privatize_heavy_hitters(strings, np.full(n, 1000), key=jax.random.PRNGKey(0),
                                           epsilon=epsilon, delta=delta, l0_sensitivity=l0,
                                           linf_sensitivity=linf)
  assert kept.size == n
  assert np.std(noisy - 1000) == pytest.approx(math.sqrt(2) * scale, rel=0.02)
  # A string one user alone could add (count linf) is released with probability delta / l0.
  kept, _ = hh.privatize_heavy_hitters(strings, np.full(n, linf), key=jax.random.PRNGKey(1),
                                       epsilon=epsilon, delta=delta, l0_sensitivity=l0,
                                       linf_sensitivity=linf)
  assert kept.size / n == pytest.approx(delta / l0, rel=0.03)


def test_noise_comes_from_the_key():
  words, counts = np.array([b"a", b"b", b"c"]), np.array([50, 40, 30])
  first = hh.privatize_heavy_hitters(words, counts, key=jax.random.PRNGKey(3), epsilon=1.0,
                                     delta=1e-3, l0_sensitivity=2)
  again = hh.privatize_heavy_hitters(words, counts, key=jax.random.PRNGKey(3), epsilon=1.0,
                                     delta=1e-3, l0_sensitivity=2)
  other = hh.privatize_heavy_hitters(words, counts, key=jax.random.PRNGKey(4), epsilon=1.0,
                                     delta=1e-3, l0_sensitivity=2)
  assert first[1].tolist() == again[1].tolist() != other[1].tolist()
  assert first[0].tolist() == [b"a", b"b", b"c"]
