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
# Under jax.vmap on CPU, draw the keys' samples one key after another (see rejection_sample).
ONE_KEY_AT_A_TIME_ON_CPU = True

# `propose(words uint32[4, m], constants) -> (candidates int32[m], accepted bool[m])`.
Proposal = Callable[[jax.Array, Any], tuple[jax.Array, jax.Array]]


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
  to that resolution, unlike a rounded continuous Gaussian. Candidates are drawn in batches
  (`rejection_sample`): a fixed-shape program whose result is a function of `key` alone, the
  same whether one call draws or `jax.vmap` draws for many keys at once.

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
  return rejection_sample(key, shape, scale, _prepare, _propose)


def _prepare(scale: jax.Array) -> tuple:
  """One key's constants: `(sigma, t)`, any positive sigma for scale 0 (masked later)."""
  sigma = jnp.where(scale > 0, scale, 1.0)
  return sigma, jnp.floor(sigma).astype(jnp.int32) + 1


def _propose(words: jax.Array, params: tuple) -> tuple[jax.Array, jax.Array]:
  sigma, t = params
  y, valid = discrete_laplace_candidates(words[:3], t)
  shift = jnp.abs(y).astype(jnp.float32) - jnp.square(sigma) / t.astype(jnp.float32)
  keep = uniform(words[3]) < jnp.exp(-jnp.square(shift / sigma) / 2)
  return y, valid & keep


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


def rejection_sample(key: jax.Array, shape: Sequence[int], scale: Any,
                     prepare: Callable[[jax.Array], Any], propose: Proposal) -> jax.Array:
  """`int32[shape]` filled, in order, with the candidates `propose` accepts (0 if `scale` is 0).

  `prepare(scale)` gives one key's constants; `propose(words uint32[4, m], constants)` turns
  random words into `m` candidates and whether each is accepted. Each batch `b` draws
  `min(ceil(3.5 n) + 64, 2^16)` candidates from `fold_in(key, b)`; the accepted are packed
  after those kept so far (a cumulative sum gives their places) until `n` are filled.
  Accepted candidates are i.i.d., so packing them keeps their distribution.

  Under `jax.vmap` (a custom batching rule) the keys are drawn one after another on CPU, where
  one key's batch stays in cache, and on accelerators in one loop until every key is filled (a
  key already filled draws candidates it drops). `jax.vmap` of the loop itself would copy all
  the keys' outputs at every batch (the carry under a batched condition): 40x slower for 16
  keys of 2^19 samples. Either way a key's samples depend on that key alone.
  """
  shape = tuple(int(d) for d in shape)
  n = math.prod(shape)
  if n == 0:
    return jnp.zeros(shape, jnp.int32)
  m = min(math.ceil(OVERSAMPLE * n) + _MARGIN, BATCH_CAP)

  def draw_all(keys: jax.Array, scales: jax.Array) -> jax.Array:
    count = keys.shape[0]
    constants = jax.vmap(prepare)(scales)
    rows = jnp.arange(count)[:, None]

    def draw(carry):
      batch, filled, out = carry
      words = jax.vmap(lambda k: jax.random.bits(jax.random.fold_in(k, batch), (4, m),
                                                 jnp.uint32))(keys)
      candidates, accepted = jax.vmap(propose)(words, constants)
      place = filled[:, None] + jnp.cumsum(accepted.astype(jnp.int32), axis=1) - 1
      place = jnp.where(accepted & (place < n), place, n)  # n: out of range, dropped.
      out = out.at[rows, place].set(candidates, mode="drop")
      filled = jnp.minimum(filled + jnp.sum(accepted, axis=1, dtype=jnp.int32), n)
      return batch + 1, filled, out

    # A key of scale 0 starts filled (with zeros): it draws nothing.
    filled = jnp.where(scales > 0, 0, n).astype(jnp.int32)
    start = (jnp.int32(0), filled, jnp.zeros((count, n), jnp.int32))
    _, _, out = jax.lax.while_loop(lambda carry: jnp.any(carry[1] < n), draw, start)
    return jnp.reshape(out, (count,) + shape)

  @jax.custom_batching.custom_vmap
  def draw_one(key, scale):
    return draw_all(key[None], scale[None])[0]

  @draw_one.def_vmap
  def draw_many(axis_size, in_batched, keys, scales):
    keys_batched, scales_batched = in_batched
    if not keys_batched:
      keys = jnp.broadcast_to(keys, (axis_size,) + keys.shape)
    if not scales_batched:
      scales = jnp.broadcast_to(scales, (axis_size,))
    if ONE_KEY_AT_A_TIME_ON_CPU and jax.default_backend() == "cpu":
      # One key after another: a batch of one key's candidates stays in cache (all keys'
      # together run 2-3x slower per candidate on CPU); accelerators draw them together.
      return jax.lax.map(lambda pair: draw_all(pair[0][None], pair[1][None])[0],
                         (keys, scales)), True
    return draw_all(keys, scales), True

  return draw_one(jnp.asarray(key, jnp.uint32), jnp.asarray(scale, jnp.float32))
