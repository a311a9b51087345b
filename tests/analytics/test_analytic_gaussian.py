"""fx.analytics.differential_privacy: the analytic Gaussian mechanism's sigma against the
privacy profile evaluated in 50-digit arithmetic (mpmath), and TFF 0.87's figures."""

import mpmath
import pytest

import federax as fx

dp = fx.analytics.differential_privacy

CASES = [(0.1, 1e-5, 1.0), (1.0, 1e-5, 1.0), (1.0, 1e-5, 2.5), (5.0, 1e-6, 1.0),
         (50.0, 1e-9, 1.0), (0.5, 0.3, 1.0), (400.0, 1e-5, 1.0)]


def exact_delta(sigma, epsilon, norm_bound):
  """Balle and Wang (2018), Theorem 8, in 50 digits."""
  with mpmath.workdps(50):
    s, e, n = mpmath.mpf(sigma), mpmath.mpf(epsilon), mpmath.mpf(norm_bound)
    phi = lambda x: mpmath.ncdf(x)
    return phi(n / (2 * s) - e * s / n) - mpmath.exp(e) * phi(-n / (2 * s) - e * s / n)


@pytest.mark.parametrize("epsilon,delta,norm_bound", CASES)
def test_sigma_is_the_smallest_that_reaches_delta(epsilon, delta, norm_bound):
  sigma = dp.analytic_gauss_stddev(epsilon, delta, norm_bound)
  assert exact_delta(sigma, epsilon, norm_bound) <= delta * (1 + 1e-9)
  assert exact_delta(sigma * (1 - 1e-6), epsilon, norm_bound) > delta
  assert dp.gaussian_delta(sigma, epsilon, norm_bound) == pytest.approx(
      float(exact_delta(sigma, epsilon, norm_bound)), rel=1e-8)


# TFF 0.87's analytic_gauss_stddev on the same inputs. Where e^eps Phi(-x) is small against 1,
# TFF's 0.5 (1 + erf(-x / sqrt 2)) cancels to 0, and its sigma overshoots (at eps = 50, delta =
# 1e-9: 0.17659, whose delta is 0.48e-9); federax's lower tail is exact.
TFF = {(0.1, 1e-5, 1.0): 30.74956598384496, (1.0, 1e-5, 1.0): 3.730631634944469,
       (1.0, 1e-5, 2.5): 9.326579087361171, (5.0, 1e-6, 1.0): 0.9800489882550523,
       (0.5, 0.3, 1.0): 0.8658688169475189}


@pytest.mark.parametrize("case", sorted(TFF))
def test_agrees_with_tff_where_tff_is_accurate(case):
  assert dp.analytic_gauss_stddev(*case) == pytest.approx(TFF[case], rel=1e-7)


def test_tff_overshoots_at_large_epsilon():
  sigma = dp.analytic_gauss_stddev(50.0, 1e-9, 1.0)
  assert sigma < 0.17658637224722556 * 0.995
  assert exact_delta(0.17658637224722556, 50.0, 1.0) < 0.5e-9


def test_sigma_scales_with_the_norm_bound():
  assert dp.analytic_gauss_stddev(1.0, 1e-5, 3.0) == pytest.approx(
      3 * dp.analytic_gauss_stddev(1.0, 1e-5, 1.0), rel=1e-10)


@pytest.mark.parametrize("kwargs,name", [
    (dict(epsilon=0.0, delta=1e-5, norm_bound=1.0), "epsilon"),
    (dict(epsilon=500.0, delta=1e-5, norm_bound=1.0), "epsilon"),
    (dict(epsilon=1.0, delta=1.0, norm_bound=1.0), "delta"),
    (dict(epsilon=1.0, delta=1e-5, norm_bound=0.0), "norm_bound"),
    (dict(epsilon=1.0, delta=1e-5, norm_bound=1.0, tol=0.0), "tol")])
def test_out_of_range_arguments_are_named(kwargs, name):
  with pytest.raises(ValueError, match=f"`{name}` is out of range"):
    dp.analytic_gauss_stddev(**kwargs)


def test_threshold_histogram():
  keys, values = fx.analytics.histogram_processing.threshold_histogram(
      [b"a", b"b", b"c", b"d"], [3, 1, 2, 2], 2)
  assert keys.tolist() == [b"a", b"c", b"d"] and values.tolist() == [3, 2, 2]
  keys, values = fx.analytics.histogram_processing.threshold_histogram([], [], 1.0)
  assert keys.size == 0 and values.size == 0
  with pytest.raises(ValueError, match="one length"):
    fx.analytics.histogram_processing.threshold_histogram(["a"], [1.0, 2.0], 1.0)
  with pytest.raises(TypeError, match="must be numbers"):
    fx.analytics.histogram_processing.threshold_histogram(["a"], ["x"], 1.0)
