"""Arithmetic in the IBLT's prime field GF(2**31 - 1) on uint32, the same in NumPy and JAX.

The field is TFF's (`DEFAULT_FIELD_SIZE`): sums of sketches taken modulo a prime stay
decodable, since a pure cell's key is its count times the key, and counts are invertible. Its
prime is a Mersenne prime, so `2**31 = 1 (mod p)`: a uint32 reduces with a mask, a shift and an
add, and JAX needs no 64-bit integers (x64 is off by default). Every function takes the array
module `xp` (`numpy` or `jax.numpy`) so the clients' compiled encoder and the server's NumPy
decoder compute the same bits.
"""

from __future__ import annotations

from typing import Any

P = 2**31 - 1
"""The field's size: TFF's `DEFAULT_FIELD_SIZE`, a Mersenne prime."""


def reduce(x: Any, xp: Any) -> Any:
  """`x mod p` for any uint32 `x`.

  Example:
    >>> int(reduce(np.array([2**32 - 1], np.uint32), np)[0]) == (2**32 - 1) % P
    True
  """
  x = (x & P) + (x >> 31)  # 2**31 = 1 (mod p); the sum is at most 2**31.
  return xp.where(x >= P, x - P, x)


def add(a: Any, b: Any, xp: Any) -> Any:
  """`(a + b) mod p` for uint32 `a`, `b` in [0, p) (their sum fits in 32 bits)."""
  return reduce(a + b, xp)


def from_limbs(lo: Any, hi: Any, xp: Any) -> Any:
  """`(hi * 2**16 + lo) mod p` for any uint32 `lo`, `hi`: sums of 16-bit halves, reduced.

  `hi = a * 2**15 + b` gives `hi * 2**16 = a * 2**31 + b * 2**16 = a + b * 2**16 (mod p)`.

  Example:
    >>> int(from_limbs(np.array([7], np.uint32), np.array([2**32 - 1], np.uint32), np)[0]) == (
    ...     ((2**32 - 1) * 2**16 + 7) % P)
    True
  """
  high = reduce((hi >> 15) + ((hi & 0x7FFF) << 16), xp)
  return add(high, reduce(lo, xp), xp)
