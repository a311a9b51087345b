"""`fast_walsh_hadamard_transform`: the normalized Walsh–Hadamard transform in O(d log d)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def fast_walsh_hadamard_transform(x: jax.Array) -> jax.Array:
  """`x @ H / sqrt(d)` over the last axis, `H` the d x d Sylvester Hadamard matrix.

  TFF's `hadamard.fast_walsh_hadamard_transform`, for any leading axes. The transform is
  orthogonal and symmetric, so it is its own inverse.

  Args:
    x: a float array `[..., d]`, `d` a power of two.

  Returns:
    The transformed array, of `x`'s shape and dtype.

  Raises:
    ValueError: if the last dimension is not a power of two.

  Example:
    >>> from federax.aggregators.hadamard import fast_walsh_hadamard_transform
    >>> fast_walsh_hadamard_transform(jnp.array([1., 0., 0., 0.]))
    Array([0.5, 0.5, 0.5, 0.5], dtype=float32)
  """
  d = x.shape[-1]
  if d < 1 or d & (d - 1):
    raise ValueError(f"fast_walsh_hadamard_transform: the last dimension must be a power of "
                     f"two, got {d} (shape {x.shape}).")
  lead = x.shape[:-1]
  h = 1
  while h < d:  # log2(d) butterfly stages, unrolled: d is static.
    pairs = jnp.reshape(x, lead + (d // (2 * h), 2, h))
    a, b = pairs[..., 0, :], pairs[..., 1, :]
    x = jnp.reshape(jnp.stack([a + b, a - b], axis=-2), lead + (d,))
    h *= 2
  return x * jnp.asarray(1.0 / math.sqrt(d), x.dtype)
