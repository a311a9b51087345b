"""Array encodings for secure sums: values as unsigned integers, split into limbs summed exactly.

A secure sum adds integers in `[0, 2**b - 1]`. Integers are clipped and shifted into that range;
floats are clipped and quantized onto a grid of 32 bits (deterministic rounding, as TFF).
TFF sums the 32-bit encodings in int64, whose 31 spare bits hold the client count. JAX's default
integers have 32 bits, so each encoding is split into 8-bit limbs, each summed on its own
(`bitwidth=8`): a limb sum is at most `n * 255`, which fits uint32 for n <= 16,843,009 clients,
so no sum can overflow and no client count is needed when the computation is traced. The server
joins the limb sums back: exactly (modulo the integer width) for integers, in floating point for
floats.

Every function here is a pure function of arrays (one client's, or the server's).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

QUANTIZATION_BITS = 32  # TFF's `_SECAGG_MAX = 2**32 - 1`: the grid of a quantized float.
LIMB_BITS = 8


def container_dtype(dtype) -> np.dtype:
  """The unsigned integer an encoding of `dtype` lives in: uint32, or uint64 for 64-bit values."""
  return np.dtype(np.uint64 if np.dtype(dtype).itemsize == 8 else np.uint32)


def compute_dtype(dtype) -> np.dtype:
  """The float a value of `dtype` is quantized in: float64 for 64-bit values, else float32."""
  return np.dtype(np.float64 if np.dtype(dtype).itemsize == 8 else np.float32)


def limb_count(bits: int) -> int:
  """How many limbs a `bits`-bit encoding splits into."""
  return -(-bits // LIMB_BITS)


def limb_bitwidth(bits: int) -> int:
  """The bitwidth each limb of a `bits`-bit encoding is securely summed with."""
  return min(bits, LIMB_BITS)


def split(x: jax.Array, bits: int):
  """A `bits`-bit unsigned encoding as a tuple of its `k` limbs, least significant first, each
  of `x`'s shape and dtype; the encoding itself when one limb holds it.

  A tuple, not a stacked `[k, *x.shape]` array: XLA:CPU writes a stack of computed limbs
  (a concatenate fusion) about 6 times slower than the limbs themselves, and adding stacked
  limbs in a loop over clients 12 times slower than a tuple of them.
  """
  k = limb_count(bits)
  if k == 1:
    return x
  mask = jnp.asarray(2**LIMB_BITS - 1, x.dtype)
  return tuple((x >> jnp.asarray(LIMB_BITS * j, x.dtype)) & mask for j in range(k))


def join(sums, bits: int) -> jax.Array:
  """The total of the limb sums `split` made (a tuple, or one array for one limb), modulo
  2**(container width)."""
  if limb_count(bits) == 1:
    return sums
  total = sums[0]
  for j in range(1, len(sums)):
    total = total + (sums[j] << jnp.asarray(LIMB_BITS * j, sums[j].dtype))  # Wraps mod 2**W.
  return total


def join_float(sums, bits: int, dtype) -> jax.Array:
  """The total of the limb sums `split` made, in the float `dtype` (rounded once per limb)."""
  if limb_count(bits) == 1:
    return sums.astype(dtype)
  total = jnp.zeros(sums[0].shape, dtype)
  for j in reversed(range(len(sums))):  # Most significant first: smaller rounding errors.
    total = total + sums[j].astype(dtype) * dtype.type(2.0**(LIMB_BITS * j))
  return total


def to_unsigned(x: jax.Array) -> jax.Array:
  """An integer array in its container: two's complement, so arithmetic wraps modulo 2**W."""
  container = container_dtype(x.dtype)
  signed = np.dtype(f"int{8 * container.itemsize}")
  if x.dtype.kind == "u":
    return x.astype(container)
  return jax.lax.bitcast_convert_type(x.astype(signed), container)


def from_unsigned(u: jax.Array, dtype) -> jax.Array:
  """The `dtype` integer congruent to `u` modulo 2**(bits of dtype) (two's complement)."""
  dtype = np.dtype(dtype)
  narrow = np.dtype(f"uint{8 * dtype.itemsize}")
  u = u.astype(narrow)  # Unsigned narrowing keeps the low bits.
  return u if dtype == narrow else jax.lax.bitcast_convert_type(u, dtype)


def shift(x: jax.Array, lower: jax.Array, upper: jax.Array) -> jax.Array:
  """`clip(x, lower, upper) - lower`, exact, in the container: in `[0, upper - lower]`."""
  clipped = jnp.clip(x, lower.astype(x.dtype), upper.astype(x.dtype))
  return to_unsigned(clipped) - to_unsigned(lower.astype(x.dtype))


def unshift(total: jax.Array, lower: jax.Array, count: jax.Array, dtype,
            scale: jax.Array | None = None) -> jax.Array:
  """`total * scale + count * lower` as a `dtype` integer, computed modulo 2**W: exact whenever
  the true sum fits `dtype`."""
  lower = to_unsigned(lower.astype(dtype))
  if scale is not None:
    total = total * scale
  return from_unsigned(total + count.astype(total.dtype) * lower, dtype)


def integer_scale(lower: jax.Array, upper: jax.Array) -> jax.Array:
  """TFF's divisor for 64-bit integers: `(upper - lower) // (2**32 - 1) + 1`, so the shifted
  values divided by it fit 32 bits (integers of <= 32 bits are never divided)."""
  span = to_unsigned(upper) - to_unsigned(lower)
  top = jnp.asarray(2**QUANTIZATION_BITS - 1, span.dtype)
  return span // top + jnp.asarray(1, span.dtype)


def top_level(dtype) -> float:
  """The number of grid steps `L`: TFF's `2**32 - 1` where `dtype` holds it (float64), else
  `2**31` (float32, which cannot hold `2**32 - 1`): with a power of two, dyadic values in a
  power-of-two range (zeros in `[-1, 1]`, say) are quantized and decoded without rounding."""
  dtype = np.dtype(dtype)
  if int(dtype.type(2**QUANTIZATION_BITS - 1)) == 2**QUANTIZATION_BITS - 1:
    return float(2**QUANTIZATION_BITS - 1)
  return float(2**(QUANTIZATION_BITS - 1))


def quantize(x: jax.Array, lower: jax.Array, upper: jax.Array) -> jax.Array:
  """`round((clip(x, lower, upper) - lower) * top / (upper - lower))`, a uint32 level.

  Deterministic rounding to the nearest grid point, as TFF's. `upper == lower` encodes every
  value as 0; a NaN as 0 too, i.e. as the lower bound (TFF's saturating cast does the same).
  """
  dtype = compute_dtype(x.dtype)
  x, lower, upper = x.astype(dtype), lower.astype(dtype), upper.astype(dtype)
  top = dtype.type(top_level(dtype))
  span = upper - lower
  scale = jnp.where(span > 0, top / jnp.where(span > 0, span, 1), 0)
  level = jnp.round((jnp.clip(x, lower, upper) - lower) * scale)
  level = jnp.where(level >= 0, jnp.minimum(level, top), 0)  # NaN compares False: encoded 0.
  return level.astype(np.uint32)


def dequantize(total: jax.Array, lower: jax.Array, upper: jax.Array, count: jax.Array,
               dtype) -> jax.Array:
  """The sum of `count` values whose `quantize`d levels add up to `total` (a float), as `dtype`."""
  work = compute_dtype(dtype)
  lower, upper = lower.astype(work), upper.astype(work)
  step = (upper - lower) / work.type(top_level(work))
  return (total.astype(work) * step + count.astype(work) * lower).astype(dtype)
