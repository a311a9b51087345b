"""Calibrating Gaussian noise for (epsilon, delta)-DP exactly: the analytic Gaussian mechanism.

TFF's `tff.analytics.differential_privacy`. The classical bound `sigma = sqrt(2 ln(1.25 /
delta)) * sensitivity / epsilon` holds only for epsilon < 1 and overshoots; Balle and Wang
(ICML 2018, Theorem 8) give the mechanism's exact privacy profile,

    delta(sigma) = Phi(D / (2 sigma) - eps sigma / D) - e^eps Phi(-D / (2 sigma) - eps sigma / D),

which decreases in sigma, so the smallest sufficient sigma is found by bisection on it.
"""

from __future__ import annotations

import math

from federax.core.errors import error

_MAX_EPSILON = 500.0  # TFF's bound: e^eps must stay a float.


def _log_normal_cdf(x: float) -> float:
  """log Phi(x), finite far into the lower tail (where Phi(x) itself underflows)."""
  if x > -30.0:
    return math.log(0.5 * math.erfc(-x / math.sqrt(2.0)))
  # Phi(x) ~ phi(x) / |x| (1 - 1/x^2 + 3/x^4): relative error below 1e-7 from x = -30.
  return (-0.5 * x * x - math.log(-x) - 0.5 * math.log(2.0 * math.pi)
          + math.log1p(-1.0 / x ** 2 + 3.0 / x ** 4))


def gaussian_delta(sigma: float, epsilon: float, norm_bound: float) -> float:
  """The smallest delta for which `N(0, sigma^2)` noise on a query of L2 sensitivity
  `norm_bound` is (epsilon, delta)-DP (Balle and Wang 2018, Theorem 8).

  Example:
    >>> round(gaussian_delta(1.0, 1.0, 1.0), 4)
    0.1269
  """
  a = norm_bound / (2.0 * sigma)
  b = epsilon * sigma / norm_bound
  first = math.exp(_log_normal_cdf(a - b))
  second = math.exp(epsilon + _log_normal_cdf(-a - b))
  return max(0.0, first - second)


def analytic_gauss_stddev(epsilon: float, delta: float, norm_bound: float,
                          tol: float = 1.0e-12) -> float:
  """The standard deviation of Gaussian noise that makes a query of L2 sensitivity `norm_bound`
  (epsilon, delta)-DP: the smallest, to a relative `tol`, by the analytic Gaussian mechanism.

  Args:
    epsilon: in (0, 500).
    delta: in (0, 1).
    norm_bound: the query's L2 sensitivity (> 0).
    tol: the relative precision of the returned sigma (> 0).

  Returns:
    sigma (a float), with `gaussian_delta(sigma, epsilon, norm_bound) <= delta`.

  Example:
    >>> round(fx.analytics.differential_privacy.analytic_gauss_stddev(1.0, 1e-5, 1.0), 4)
    3.7306
  """
  where = "analytic_gauss_stddev(epsilon, delta, norm_bound)"
  for name, value, ok, expected in [
      ("epsilon", epsilon, 0 < epsilon < _MAX_EPSILON, f"a number in (0, {_MAX_EPSILON:g})"),
      ("delta", delta, 0 < delta < 1, "a number in (0, 1)"),
      ("norm_bound", norm_bound, norm_bound > 0, "a positive number"),
      ("tol", tol, tol > 0, "a positive number")]:
    if isinstance(value, bool) or not ok:
      raise error(ValueError, where, f"`{name}` is out of range.", expected=expected,
                  actual=repr(value))
  # delta(sigma) falls from 1 (sigma -> 0) to 0 (sigma -> inf): bracket, then bisect.
  low, high = norm_bound, norm_bound
  while gaussian_delta(low, epsilon, norm_bound) <= delta:
    low /= 2.0
  while gaussian_delta(high, epsilon, norm_bound) > delta:
    high *= 2.0
  while high - low > tol * high:
    middle = 0.5 * (low + high)
    if gaussian_delta(middle, epsilon, norm_bound) > delta:
      low = middle
    else:
      high = middle
  return high
