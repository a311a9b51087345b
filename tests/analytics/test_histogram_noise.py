"""The central Gaussian mechanism's noise: its standard deviation is the mechanism's, within 2%,
over 1,000 rounds drawn at once (tests/analytics/noise_draws.py); and its keys."""

import math

import numpy as np

import federax as fx
from tests.analytics.noise_draws import RECORDS, check_noise, histogram_process, noise_draws


def test_central_gaussian_noise_has_the_mechanisms_stddev():
  # Sensitivity: 3 records, 5 layers, sub-sampling: 3 * sqrt(5) (TFF's L2 bound).
  check_noise(noise_draws("central-gaussian", 0.7), 0.7 * 3 * math.sqrt(5))


def test_noise_differs_across_rounds_and_repeats_for_a_seed():
  process = histogram_process("central-gaussian", 0.7)
  state = process.initialize()
  first, _ = process.next(state, RECORDS)
  second, _ = process.next(first, RECORDS)
  again, _ = process.next(state, RECORDS)
  values = [np.asarray(s.aggregated_hierarchical_histogram["flat_values"])
            for s in (first, second, again)]
  assert not np.allclose(values[0], values[1])
  np.testing.assert_array_equal(values[0], values[2])
  with fx.runtime.sequential():  # The same keys draw the same noise on the other runtime.
    sequential, _ = process.next(state, RECORDS)
  np.testing.assert_allclose(sequential.aggregated_hierarchical_histogram["flat_values"],
                             values[0], rtol=1e-6)
