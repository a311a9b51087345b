"""The distributed discrete Gaussian mechanism's noise: its standard deviation is the
mechanism's, within 2%, over 1,000 rounds drawn at once (tests/analytics/noise_draws.py)."""

import math

import numpy as np

from tests.analytics.noise_draws import check_noise, noise_draws


def test_distributed_discrete_gaussian_noise_has_the_mechanisms_stddev():
  # Each of the 10 clients adds discrete Gaussian noise of scale ceil(z * C / sqrt(10)).
  scale = math.ceil(1.5 * 3 * math.sqrt(5) / math.sqrt(10))
  assert scale == 4
  errors = noise_draws("distributed-discrete-gaussian", 1.5)
  assert np.all(errors == np.round(errors))  # Integers: the sum is exact, modular.
  # A discrete Gaussian of scale 4 has variance 16 up to 1e-100; ten clients sum ten of them.
  check_noise(errors, 4 * math.sqrt(10))
