"""Keras layers and initializers in pure JAX, for the baseline models.

Each layer is a function of its weights (in Keras's order and shapes, so weights copy to and
from the equivalent Keras model unchanged) and its input; layers work under `jax.vmap` (over
clients) and inside `lax.scan`. Initializers draw from the distributions Keras 3 uses (not
Keras's random streams): `glorot_uniform` kernels, zero biases, `orthogonal` recurrent
kernels, `he_normal` where TFF asks for it, `uniform(-0.05, 0.05)` embeddings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

# Keras's truncated normal (cut at 2 standard deviations) has this standard deviation.
_TRUNCATED_NORMAL_STDDEV = 0.87962566103423978

# --- Initializers ---------------------------------------------------------------------------------
# NumPy, not jax.random: drawing a few arrays eagerly in JAX compiles one program per op (seconds
# for the LSTM model), and NumPy's generators are as deterministic for a given seed.


def layer_rngs(seed: int, n: int) -> list[np.random.Generator]:
  """One independent generator per layer, from the model's seed (any non-negative int)."""
  return [np.random.default_rng([seed, i]) for i in range(n)]


def _fans(shape: Sequence[int]) -> tuple[int, int]:
  """Keras's fan-in and fan-out: a conv kernel [*window, in, out] counts its window."""
  if len(shape) == 0:
    return 1, 1
  if len(shape) == 1:
    return shape[0], shape[0]
  receptive = math.prod(shape[:-2])
  return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
  """U(-l, l) with l = sqrt(6 / (fan_in + fan_out)): Keras's default kernel initializer."""
  fan_in, fan_out = _fans(shape)
  limit = math.sqrt(6.0 / (fan_in + fan_out))
  return rng.uniform(-limit, limit, tuple(shape)).astype(np.float32)


def he_normal(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
  """A normal truncated at 2 standard deviations, scaled to variance 2 / fan_in (Keras's)."""
  fan_in, _ = _fans(shape)
  stddev = math.sqrt(2.0 / fan_in) / _TRUNCATED_NORMAL_STDDEV
  values = rng.standard_normal(tuple(shape))
  outside = np.abs(values) > 2.0
  while outside.any():  # Redraw what falls outside [-2, 2], as a truncated normal does.
    values[outside] = rng.standard_normal(int(outside.sum()))
    outside = np.abs(values) > 2.0
  return (stddev * values).astype(np.float32)


def orthogonal(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
  """A random matrix with orthonormal rows or columns, as Keras's `Orthogonal` draws it."""
  rows, cols = math.prod(shape[:-1]), shape[-1]
  a = rng.standard_normal((max(rows, cols), min(rows, cols)))
  q, r = np.linalg.qr(a)
  q = q * np.sign(np.diag(r))
  if rows < cols:
    q = q.T
  return q.reshape(tuple(shape)).astype(np.float32)


def embedding_uniform(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
  """U(-0.05, 0.05): Keras's default `Embedding` initializer."""
  return rng.uniform(-0.05, 0.05, tuple(shape)).astype(np.float32)


def zeros(shape: Sequence[int]) -> np.ndarray:
  return np.zeros(tuple(shape), np.float32)


def lstm_bias(units: int) -> np.ndarray:
  """Keras's `unit_forget_bias=True`: zeros, except ones for the forget gate (order i, f, c, o)."""
  bias = np.zeros(4 * units, np.float32)
  bias[units:2 * units] = 1.0
  return bias


# --- Layers ---------------------------------------------------------------------------------------


def dense(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
  """`x @ kernel + bias` over the last axis: `[..., n] -> [..., m]`."""
  return jnp.matmul(x, kernel) + bias


def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array, padding: str) -> jax.Array:
  """A stride-1 2-D convolution, channels last: `[B, H, W, C] * [kh, kw, C, F] -> [B, H', W', F]`.
  """
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), padding.upper(),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + bias


def max_pool_2x2(x: jax.Array, padding: str) -> jax.Array:
  """2x2 max pooling with stride 2, channels last: `[B, H, W, C] -> [B, H/2, W/2, C]`."""
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                               padding.upper())


def dropout(x: jax.Array, rate: float, key: Optional[jax.Array]) -> jax.Array:
  """Keras's inverted dropout: zero each entry with probability `rate`, scale the rest by
  `1 / (1 - rate)`; the identity when `key` is None (inference)."""
  if key is None:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def embedding(ids: jax.Array, table: jax.Array) -> jax.Array:
  """Rows of `table` [V, d] for integer `ids` [...]: `[..., d]`."""
  return jnp.take(table, ids, axis=0)


def lstm(x: jax.Array, mask: Optional[jax.Array], kernel: jax.Array,
         recurrent_kernel: jax.Array, bias: jax.Array) -> jax.Array:
  """Keras's `LSTM(return_sequences=True)` over `x` [B, T, d]: the outputs [B, T, units].

  Gates in Keras's order (input, forget, cell, output), sigmoid recurrent activation, tanh
  activation, zero initial state. Where `mask` [B, T] is False (padding), the state carries
  over unchanged and the output repeats the previous one, as Keras does for masked steps.

  Args:
    x: float inputs [B, T, d].
    mask: bool [B, T], or None for no masking.
    kernel: [d, 4 * units].
    recurrent_kernel: [units, 4 * units].
    bias: [4 * units].
  """
  batch, units = x.shape[0], recurrent_kernel.shape[0]
  inputs = jnp.swapaxes(jnp.matmul(x, kernel) + bias, 0, 1)  # [T, B, 4u], all steps at once.
  if mask is None:
    mask = jnp.ones(x.shape[:2], bool)
  steps_mask = jnp.swapaxes(mask, 0, 1)[..., None]  # [T, B, 1]

  def step(carry, inputs_t):
    h, c = carry
    z_t, m_t = inputs_t
    z = z_t + jnp.matmul(h, recurrent_kernel)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
    h, c = jnp.where(m_t, h_new, h), jnp.where(m_t, c_new, c)
    return (h, c), h

  zero = jnp.zeros((batch, units), x.dtype)
  _, outputs = jax.lax.scan(step, (zero, zero), (inputs, steps_mask))
  return jnp.swapaxes(outputs, 0, 1)
