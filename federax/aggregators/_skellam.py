"""`sample`: symmetric Skellam noise, the difference of two Poisson variables, with a Poisson
sampler exact at any mean on float32 and int32 (centered at the mode, by rejection)."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp

from federax.aggregators import _discrete_gaussian as dg

# From this many, lgamma's Stirling series to 1/n^5 is exact in float32 (error < 1/(1680 n^7)).
_STIRLING_FROM = 10.0
_SERIES_BELOW = 0.1  # |e| below which phi(e) is summed as a series (no cancellation).
_WINDOW = 3  # Integers either side of the continuous optimum searched for the envelope's peak.
_LARGE_MEAN = 1000.0  # From this mean on, log ratios need no lgamma (_large_mean_log_ratio).


def sample(key: jax.Array, shape: Sequence[int], scale: Any) -> jax.Array:
  """Draws `int32[shape]` from the symmetric Skellam distribution of standard deviation `scale`:
  `P1 - P2` with `P1, P2 ~ Poisson(scale^2 / 2)` independent (Agarwal, Kairouz & Liu 2021).

  The sum of independent Skellam variables is Skellam (variances add), so clients adding
  shares of variance `s^2 / n` give a total of variance `s^2`. Each Poisson variable is drawn
  centered, `P - floor(lambda)` (`poisson_centered`), so the draws stay small integers however
  large `lambda` is (a Poisson of mean 10^10 does not fit int32, but its spread does).

  Args:
    key: a raw PRNG key (`uint32[2]`).
    shape: the output shape (static).
    scale: the standard deviation `>= 0` (Python or traced float; up to 2^22). 0 gives zeros.

  Example:
    >>> from federax.aggregators import _skellam
    >>> x = _skellam.sample(jax.random.PRNGKey(0), [100_000], 3.0)
    >>> x.dtype, bool(abs(float(jnp.var(x.astype(jnp.float32))) - 9.0) < 0.2)
    (dtype('int32'), True)
  """
  shape = tuple(int(d) for d in shape)
  lam = jnp.square(jnp.asarray(scale, jnp.float32)) / 2
  pairs = poisson_centered(key, (2,) + shape, lam)
  return pairs[0] - pairs[1]


def poisson_centered(key: jax.Array, shape: Sequence[int], lam: Any) -> jax.Array:
  """Draws `P - floor(lam)` for `P ~ Poisson(lam)`: `int32[shape]`, exact to float32's resolution.

  Rejection from the discrete Laplace of scale `t = floor(sqrt(lam)) + 1` around the mode
  `m = floor(lam)`: a candidate `j >= -m` is kept with probability `exp(g(j) + |j|/t - c)`, where
  `g(j) = log P(m + j) - log P(m)` and `c` is the maximum of `g(j) + |j|/t` (found near its
  continuous optimum: `log P` is concave). `g` is evaluated without cancellation at any mean:
  with `n = m + j + 1 = lam (1 + e)`, Stirling's series gives
  `g(j) = -lam phi(e1) + lam phi(e0) + (log1p(e1) - log1p(e0)) / 2 - S(n1) + S(n0)`,
  `phi(e) = (1 + e) log1p(e) - e` (a series for small `e`), where `log P(m + j)` itself would
  lose every digit to float32 rounding for large `lam` (as `jax.random.poisson`'s float32
  acceptance test does: its variance is 2% off at a mean of 10^6).

  Args:
    key: a raw PRNG key.
    shape: the output shape (static).
    lam: the mean `>= 0` (a float32 scalar, traced or not).
  """
  return dg.rejection_sample(key, shape, lam, _prepare, _propose)


def _prepare(lam: jax.Array) -> tuple:
  """One key's constants: `(lam, mode, t, 1/t, envelope peak)`; any positive mean for 0."""
  lam = jnp.where(lam > 0, lam, 1.0)
  mode = jnp.floor(lam)
  t = jnp.floor(jnp.sqrt(lam)).astype(jnp.int32) + 1
  inv_t = 1.0 / t.astype(jnp.float32)
  return lam, mode, t, inv_t, _envelope_peak(lam, mode, inv_t)


def _propose(words: jax.Array, params: tuple) -> tuple[jax.Array, jax.Array]:
  lam, mode, t, inv_t, peak = params
  j, valid = dg.discrete_laplace_candidates(words[:3], t)
  jf = j.astype(jnp.float32)
  valid = valid & (jf >= -mode)  # P >= 0.
  # The scaled noise's means are large: skip the lgamma branch (a cond on this key's mean).
  log_ratio = jax.lax.cond(lam >= _LARGE_MEAN, _large_mean_log_ratio, _log_ratio, jf, lam, mode)
  log_ratio = jnp.minimum(log_ratio + jnp.abs(jf) * inv_t - peak, 0.0)
  keep = dg.uniform(words[3]) < jnp.exp(log_ratio)
  return j, valid & keep


def _log_ratio(j: jax.Array, lam: jax.Array, mode: jax.Array) -> jax.Array:
  """`log P(m + j) - log P(m)` for `P` Poisson(`lam`), `m = floor(lam)`, `j >= -m` (floats)."""
  n1, n0 = mode + j + 1.0, mode + 1.0
  # For small means and the far left tail: lgamma directly (its values are small there).
  direct = j * jnp.log(lam) - jax.lax.lgamma(jnp.maximum(n1, 1.0)) + jax.lax.lgamma(n0)
  stirling = _stirling_log_ratio(j, lam, mode)
  return jnp.where((n0 >= _STIRLING_FROM) & (n1 >= _STIRLING_FROM), stirling, direct)


def _large_mean_log_ratio(j: jax.Array, lam: jax.Array, mode: jax.Array) -> jax.Array:
  """`_log_ratio` for `lam >= 1000`, without lgamma: the tail `m + j < 9` it would be needed
  for has probability below exp(-900), and is rejected."""
  return jnp.where(mode + j + 1.0 >= _STIRLING_FROM, _stirling_log_ratio(j, lam, mode),
                   -jnp.inf)


def _stirling_log_ratio(j: jax.Array, lam: jax.Array, mode: jax.Array) -> jax.Array:
  """The cancellation-free form (`poisson_centered`), for `m + j + 1 >= 10` and `m >= 9`."""
  frac = lam - mode
  n1, n0 = mode + j + 1.0, mode + 1.0
  e1, e0 = (j + 1.0 - frac) / lam, (1.0 - frac) / lam  # n = lam (1 + e), exactly.
  return (-lam * _phi(e1) + lam * _phi(e0) + 0.5 * (jnp.log1p(e1) - jnp.log1p(e0))
          - _stirling_tail(jnp.maximum(n1, _STIRLING_FROM)) + _stirling_tail(n0))


def _phi(e: jax.Array) -> jax.Array:
  """`(1 + e) log1p(e) - e = sum_{k>=2} (-e)^k / (k (k - 1))`, accurate near 0."""
  small = jnp.abs(e) < _SERIES_BELOW
  es = jnp.where(small, e, 0.0)
  series = jnp.zeros_like(es)
  for k in range(11, 1, -1):  # Horner, to e^11: the rest is < 1e-12 of e^2/2 for |e| < 0.1.
    series = (series + (-1.0)**k / (k * (k - 1))) * es
  series = series * es  # The loop leaves sum c_k e^(k-1).
  direct = (1.0 + e) * jnp.log1p(jnp.maximum(e, -0.999999)) - e
  return jnp.where(small, series, direct)


def _stirling_tail(n: jax.Array) -> jax.Array:
  """`lgamma(n) - ((n - 1/2) log n - n + log(2 pi) / 2)`: Stirling's series to 1/n^5."""
  inv = 1.0 / n
  inv2 = inv * inv
  return inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 / 1260.0))


def _envelope_peak(lam: jax.Array, mode: jax.Array, inv_t: jax.Array) -> jax.Array:
  """`max_j g(j) + |j|/t` over valid `j`: concave on either side of 0, so the maximum is at 0
  or near where `g'(j) = -+1/t`, i.e. `digamma(n) = log(lam) +- 1/t`, `n ~ lam e^{+-1/t} + 1/2`."""
  frac = lam - mode
  right = jnp.floor(lam * jnp.expm1(inv_t) + frac - 0.5)
  left = jnp.floor(lam * jnp.expm1(-inv_t) + frac - 0.5)
  offsets = jnp.arange(-_WINDOW, _WINDOW + 2, dtype=jnp.float32)
  j = jnp.concatenate([jnp.maximum(right + offsets, 0.0),
                       jnp.clip(left + offsets, -mode, 0.0), jnp.zeros((1,))])
  return jnp.max(_log_ratio(j, lam, mode) + jnp.abs(j) * inv_t)
