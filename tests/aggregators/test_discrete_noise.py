"""The discrete noise samplers of distributed DP: the discrete Gaussian's and the Poisson's pmfs
against NumPy's exact ones (chi-square over 10^5 draws), the Skellam's against the convolution
of two Poisson pmfs, zeros at scale 0, and the same draws one client at a time or vmapped."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from federax.aggregators import _discrete_gaussian, _skellam

DRAWS = 100_000
# One compiled sampler per family, the scale traced: the tests reuse it for every scale.
dgauss = jax.jit(lambda key, scale: _discrete_gaussian.sample(key, (DRAWS,), scale))
poisson = jax.jit(lambda key, lam: _skellam.poisson_centered(key, (DRAWS,), lam))
skellam = jax.jit(lambda key, scale: _skellam.sample(key, (DRAWS,), scale))
small_skellam = jax.jit(lambda key, scale: _skellam.sample(key, (5, 40), scale))


def chi_square(samples, support, pmf, bins=None):
  """(statistic, degrees of freedom) of `samples` against `pmf` on the integers `support`;
  with `bins`, over that many equal ranges of the support; cells expecting < 5 pooled."""
  counts = np.bincount(np.asarray(samples) - support[0], minlength=len(support))
  assert counts.sum() == len(samples) and len(counts) == len(support), "draws off the support"
  expected = pmf * len(samples)
  if bins is not None:
    edges = np.linspace(0, len(support), bins + 1).astype(int)[:-1]
    counts, expected = np.add.reduceat(counts, edges), np.add.reduceat(expected, edges)
  big = expected >= 5
  observed = np.append(counts[big], counts[~big].sum())
  expected = np.append(expected[big], expected[~big].sum())
  keep = expected > 0
  statistic = np.sum((observed[keep] - expected[keep])**2 / expected[keep])
  return statistic, int(keep.sum()) - 1


def passes(statistic, df):
  """Far below what a wrong distribution gives: the mean plus 5 standard deviations."""
  return statistic < df + 5 * math.sqrt(2 * df)


def discrete_gaussian_pmf(sigma):
  k = np.arange(-int(12 * sigma) - 5, int(12 * sigma) + 6)
  log_p = -k.astype(np.float64)**2 / (2 * sigma**2)
  p = np.exp(log_p - log_p.max())
  return k, p / p.sum()


def poisson_centered_pmf(lam):
  """The pmf of P - floor(lam), P ~ Poisson(lam), in float64 from the pmf's ratios:
  `P(m + j) / P(m + j - 1) = lam / (m + j)`, summed in log space from the mode `m`."""
  lam = float(np.float32(lam))  # The sampler's mean is float32.
  mode = math.floor(lam)
  reach = int(12 * math.sqrt(lam)) + 12
  up = np.arange(1, reach + 1, dtype=np.float64)  # j = 1..reach
  down = np.arange(0, min(mode, reach), dtype=np.float64)  # j = 0, -1, ... > -mode - 1
  log_up = np.cumsum(math.log(lam) - np.log(mode + up))
  log_down = np.cumsum(np.log(mode - down) - math.log(lam))  # log P(m - 1 - i) - log P(m)
  log_p = np.concatenate([log_down[::-1], [0.0], log_up])
  k = np.arange(-len(log_down), reach + 1)
  p = np.exp(log_p - log_p.max())
  return k, p / p.sum()


@pytest.mark.parametrize("sigma, bins", [(0.5, None), (1.0, None), (3.7, None), (50.0, None),
                                         (2e4, 200)])
def test_discrete_gaussian_matches_the_exact_pmf(sigma, bins):
  k, pmf = discrete_gaussian_pmf(sigma)
  samples = dgauss(jax.random.PRNGKey(11), sigma)
  assert samples.dtype == jnp.int32
  assert passes(*chi_square(samples, k, pmf, bins))


def test_the_chi_square_rejects_a_rounded_continuous_gaussian():
  # The discrete Gaussian is not a rounded Gaussian: at sigma 1, P(0) is 0.399 against 0.383,
  # which 10^5 draws tell apart.
  k, pmf = discrete_gaussian_pmf(1.0)
  rounded = np.round(np.random.default_rng(0).normal(0.0, 1.0, DRAWS)).astype(int)
  assert not passes(*chi_square(rounded, k, pmf))


@pytest.mark.parametrize("lam, bins", [(0.3, None), (9.5, None), (37.2, None), (1000.3, None),
                                       (5e5, 200), (7.3e9, 200)])
def test_centered_poisson_matches_the_exact_pmf(lam, bins):
  # 7.3e9 does not fit int32, and float32 holds log P(m + j) to +-500: the sampler works on
  # the centered value and a cancellation-free log ratio.
  k, pmf = poisson_centered_pmf(lam)
  assert passes(*chi_square(poisson(jax.random.PRNGKey(5), lam), k, pmf, bins))


def test_the_chi_square_rejects_a_poisson_half_a_percent_off():
  k, pmf = poisson_centered_pmf(1000.3)
  off = np.asarray(poisson(jax.random.PRNGKey(5), 1005.3)) + 5  # P - 1000 for a mean 1005.3.
  assert not passes(*chi_square(off, k, pmf))


def test_skellam_matches_the_convolution_of_two_poisson_pmfs():
  scale = 3.0  # Each Poisson of mean 4.5.
  k, pmf = poisson_centered_pmf(scale**2 / 2)  # P - 4: the difference is the same.
  skellam_pmf = np.convolve(pmf, pmf[::-1])
  support = np.arange(k[0] - k[-1], k[-1] - k[0] + 1)
  assert passes(*chi_square(skellam(jax.random.PRNGKey(3), scale), support, skellam_pmf))


@pytest.mark.parametrize("scale", [0.7, 1e4])
def test_skellam_variance_and_symmetry(scale):
  x = np.asarray(skellam(jax.random.PRNGKey(4), scale), np.float64)
  se = math.sqrt(2 / DRAWS)  # The sample variance's relative standard error.
  assert abs(x.var() / scale**2 - 1) < 4 * se
  assert abs(x.mean()) < 4 * scale / math.sqrt(DRAWS)


def test_zero_scale_gives_zeros():
  assert not np.any(np.asarray(dgauss(jax.random.PRNGKey(0), 0.0)))
  assert not np.any(np.asarray(skellam(jax.random.PRNGKey(0), 0.0)))


@pytest.mark.parametrize("one_at_a_time", [True, False])
def test_a_client_draws_the_same_alone_or_vmapped(monkeypatch, one_at_a_time):
  # The sequential runtime draws each client alone, the vectorized one vmaps over the
  # clients: one client after another on CPU, or (as on accelerators) all in one loop that
  # runs as long as the slowest. The draws must agree.
  monkeypatch.setattr(_discrete_gaussian, "ONE_KEY_AT_A_TIME_ON_CPU", one_at_a_time)
  keys = jax.random.split(jax.random.PRNGKey(7), 3)
  scales = jnp.array([0.3, 2.0, 700.0])
  alone = small_skellam
  together = jax.jit(jax.vmap(alone))(keys, scales)
  for key, s, drawn in zip(keys, scales, together):
    np.testing.assert_array_equal(alone(key, s), drawn)
  assert together.shape == (3, 5, 40) and together.dtype == jnp.int32
  # An unbatched scale is broadcast: the same draws as the batched ones.
  same_scale = jax.jit(jax.vmap(alone, in_axes=(0, None)))(keys, scales[1])
  np.testing.assert_array_equal(same_scale[1], together[1])
