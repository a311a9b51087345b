"""`sample`: discrete Gaussian noise by exact rejection sampling (Canonne, Kamath & Steinke 2020),
vectorized in JAX; with the discrete Laplace proposal and the rejection loop it is built on."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

# Candidates drawn per wanted sample: the acceptance rate is at least 0.31 (scale 0.1; about
# 0.48 for scales >= 3), so one batch almost always suffices; a short batch draws another.
OVERSAMPLE = 3.5
_MARGIN = 64  # Extra candidates, so that a few samples rarely need a second batch.
# At most this many candidates per batch: memory stays small (1 MiB of random bits) for any
# shape, while a batch still amortizes the loop (a million samples take about 70 batches).
BATCH_CAP = 1 << 16

# `propose(key, m) -> (candidates int32[m], accepted bool[m])`.
Proposal = Callable[[jax.Array, int], tuple[jax.Array, jax.Array]]


def sample(key: jax.Array, shape: Sequence[int], scale: Any) -> jax.Array:
  """Draws `int32[shape]` from the discrete Gaussian `N_Z(0, scale^2)`: `P(k) ∝ exp(-k^2 /
  (2 scale^2))` on the integers.

  Canonne, Kamath & Steinke 2020 ("The Discrete Gaussian for Differential Privacy", Alg. 3):
  a candidate `Y` from the discrete Laplace with scale `t = floor(scale) + 1` (Alg. 2: a
  uniform integer `U` in `[0, t)` kept with probability `exp(-U/t)`, plus `t` times a
  geometric count, with a random sign) is kept with probability
  `exp(-(|Y| - scale^2/t)^2 / (2 scale^2))`.
  Every step is integer arithmetic except the Bernoulli trials, which compare float32 uniforms
  (a resolution of 2^-23) with their probabilities: the samples follow the exact distribution
  to that resolution, unlike a rounded continuous Gaussian. Candidates are drawn in batches of
  `min(3.5 n + 64, 2^16)` (`n` the number of samples) and the kept ones packed in order, until
  `n` are kept: a fixed-shape program whose result is a function of `key` alone.

  Args:
    key: a raw PRNG key (`uint32[2]`).
    shape: the output shape (static).
    scale: the standard deviation parameter `sigma >= 0` (a Python or traced float, below
      2^24 - 1 so that `t` fits the arithmetic). 0 gives zeros.

  Returns:
    An int32 array of `shape`.

  Example:
    >>> from federax.aggregators import _discrete_gaussian
    >>> x = _discrete_gaussian.sample(jax.random.PRNGKey(0), [100_000], 2.0)
    >>> x.dtype, bool(abs(float(jnp.var(x.astype(jnp.float32))) - 4.0) < 0.1)
    (dtype('int32'), True)
  """
  sigma = jnp.asarray(scale, jnp.float32)
  positive = sigma > 0
  sigma = jnp.where(positive, sigma, 1.0)  # Any positive scale: the result is masked below.
  t = jnp.floor(sigma).astype(jnp.int32) + 1

  def propose(key: jax.Array, m: int) -> tuple[jax.Array, jax.Array]:
    words = jax.random.bits(key, (4, m), jnp.uint32)  # One PRNG call: cheap to compile.
    y, valid = discrete_laplace_candidates(words[:3], t)
    shift = jnp.abs(y).astype(jnp.float32) - jnp.square(sigma) / t.astype(jnp.float32)
    keep = uniform(words[3]) < jnp.exp(-jnp.square(shift / sigma) / 2)
    return y, valid & keep

  samples = rejection_sample(key, shape, propose)
  return jnp.where(positive, samples, 0)


def discrete_laplace_candidates(words: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Candidates of the discrete Laplace `P(y) ∝ exp(-|y|/t)` (Canonne et al., Alg. 2), one per
  column of `words`.

  Args:
    words: `uint32[3, m]` random bits.
    t: an int32 scalar in [1, 2^24].

  Returns:
    `(y int32[m], valid bool[m])`: the candidates where `valid` follow the distribution
    exactly (to the uniforms' resolution, 2^-23); the others are to be rejected. About 63% are
    valid, whatever `t`.
  """
  span = t.astype(jnp.uint32)
  # U uniform on [0, t): a word below the largest multiple of t, modulo t (those above are
  # rejected, fewer than t / 2^32 of them), kept with probability exp(-U/t): then
  # P(U = u) ∝ exp(-u/t) on [0, t).
  u = (words[0] % span).astype(jnp.int32)
  keep = (words[0] < jnp.uint32(0xFFFFFFFF) // span * span) & (
      uniform(words[1]) < jnp.exp(-u.astype(jnp.float32) / t.astype(jnp.float32)))
  # V geometric with P(V = v) = exp(-v) (1 - exp(-1)): the floor of an Exp(1) variable.
  v = jnp.floor(-jnp.log1p(-uniform(words[2]))).astype(jnp.int32)
  x = u + t * v  # P(X = x) ∝ exp(-x/t) on the nonnegative integers.
  negative = (words[1] & 1) == 1  # The bit `uniform` leaves unused.
  # -0 would count 0 twice: a zero with a negative sign is rejected.
  return jnp.where(negative, -x, x), keep & ~(negative & (x == 0))


def uniform(words: jax.Array) -> jax.Array:
  """Floats in [0, 1) from uint32 words' top 23 bits (as `jax.random.uniform` makes them)."""
  mantissa = (words >> 9) | jnp.uint32(0x3F800000)
  return jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0


def rejection_sample(key: jax.Array, shape: Sequence[int], propose: Proposal) -> jax.Array:
  """`int32[shape]` filled, in order, with the candidates `propose` accepts.

  Each batch `b` (key `fold_in(key, b)`) draws `min(ceil(3.5 n) + 64, 2^16)` candidates; the
  accepted are packed after those kept so far (a cumulative sum gives their places) until `n`
  are filled. Accepted candidates are i.i.d., so packing them keeps their distribution.
  """
  shape = tuple(int(d) for d in shape)
  n = math.prod(shape)
  if n == 0:
    return jnp.zeros(shape, jnp.int32)
  m = min(math.ceil(OVERSAMPLE * n) + _MARGIN, BATCH_CAP)

  def draw(carry):
    batch, filled, out = carry
    candidates, accepted = propose(jax.random.fold_in(key, batch), m)
    place = filled + jnp.cumsum(accepted.astype(jnp.int32)) - 1
    place = jnp.where(accepted & (place < n), place, n)  # n: out of range, dropped.
    out = out.at[place].set(candidates, mode="drop")
    return batch + 1, jnp.minimum(filled + jnp.sum(accepted, dtype=jnp.int32), n), out

  start = (jnp.int32(0), jnp.int32(0), jnp.zeros((n,), jnp.int32))
  _, _, out = jax.lax.while_loop(lambda carry: carry[1] < n, draw, start)
  return jnp.reshape(out, shape)
