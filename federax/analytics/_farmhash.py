"""FarmHash `Fingerprint64` of many byte strings at once, in NumPy (TensorFlow's string hash).

`tf.strings.to_hash_bucket_fast(s, n)` is `Fingerprint64(s) % n` (farmhashna's `Hash64`,
Geoff Pike, https://github.com/google/farmhash). TFF's HyperLogLog hashes its items with it, so
computing the same function gives the same sketches as TFF on the same strings. The strings are
hashed together, as rows of a zero-padded byte matrix: every step is an array operation over
the rows of one length class (0-16, 17-32, 33-64, over 64 bytes), and the long strings' 64-byte
loop runs once per block over all of them, so the cost is one pass of NumPy calls, not one per
string.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["fingerprint64"]

_K0 = np.uint64(0xC3A5C85C97CB3127)
_K1 = np.uint64(0xB492B66FBE98F273)
_K2 = np.uint64(0x9AE16A3B2F90404F)
_U64 = np.uint64


def _rot(v: np.ndarray, shift: int) -> np.ndarray:
  """Rotation right by `shift` in (0, 64)."""
  return (v >> _U64(shift)) | (v << _U64(64 - shift))


def _shift_mix(v: np.ndarray) -> np.ndarray:
  return v ^ (v >> _U64(47))


def _len16(u: np.ndarray, v: np.ndarray, mul: np.ndarray) -> np.ndarray:
  """The Murmur-style mix of two words (farmhash's three-argument `HashLen16`)."""
  a = _shift_mix((u ^ v) * mul)
  b = _shift_mix((v ^ a) * mul)
  return b * mul


class _Bytes:
  """The strings as a zero-padded `uint8` matrix, read 8 or 4 little-endian bytes at a time at
  a per-row offset."""

  def __init__(self, rows: np.ndarray, lengths: np.ndarray):
    self.rows = rows
    self.lengths = lengths.astype(np.uint64)
    self._index = np.arange(rows.shape[0])[:, None]

  def take(self, select: np.ndarray) -> _Bytes:
    return _Bytes(self.rows[select], self.lengths[select])

  def fetch(self, offset, width: int = 8) -> np.ndarray:
    offset = np.broadcast_to(np.asarray(offset, np.int64), (self.rows.shape[0],))
    window = self.rows[self._index, offset[:, None] + np.arange(width)]
    dtype = "<u8" if width == 8 else "<u4"
    return np.ascontiguousarray(window).view(dtype)[:, 0].astype(np.uint64)

  def byte(self, offset) -> np.ndarray:
    offset = np.broadcast_to(np.asarray(offset, np.int64), (self.rows.shape[0],))
    return self.rows[self._index[:, 0], offset].astype(np.uint64)


def _len0to16(s: _Bytes) -> np.ndarray:
  n = s.lengths
  ni = n.astype(np.int64)
  mul = _K2 + n * _U64(2)
  out = np.full(n.shape, _K2, np.uint64)
  long8 = n >= 8
  if long8.any():
    t, m, k = s.take(long8), mul[long8], ni[long8]
    a = t.fetch(0) + _K2
    b = t.fetch(k - 8)
    c = _rot(b, 37) * m + a
    d = (_rot(a, 25) + b) * m
    out[long8] = _len16(c, d, m)
  long4 = (n >= 4) & ~long8
  if long4.any():
    t, m, k = s.take(long4), mul[long4], ni[long4]
    a = t.fetch(0, 4)
    out[long4] = _len16(t.lengths + (a << _U64(3)), t.fetch(k - 4, 4), m)
  short = (n > 0) & (n < 4)
  if short.any():
    t, k = s.take(short), ni[short]
    a, b, c = t.byte(0), t.byte(k >> 1), t.byte(k - 1)
    y = (a + (b << _U64(8))) & _U64(0xFFFFFFFF)
    z = t.lengths + (c << _U64(2))
    out[short] = _shift_mix(y * _K2 ^ z * _K0) * _K2
  return out


def _len17to32(s: _Bytes) -> np.ndarray:
  n, ni = s.lengths, s.lengths.astype(np.int64)
  mul = _K2 + n * _U64(2)
  a = s.fetch(0) * _K1
  b = s.fetch(8)
  c = s.fetch(ni - 8) * mul
  d = s.fetch(ni - 16) * _K2
  return _len16(_rot(a + b, 43) + _rot(c, 30) + d, a + _rot(b + _K2, 18) + c, mul)


def _len33to64(s: _Bytes) -> np.ndarray:
  n, ni = s.lengths, s.lengths.astype(np.int64)
  mul = _K2 + n * _U64(2)
  a = s.fetch(0) * _K2
  b = s.fetch(8)
  c = s.fetch(ni - 8) * mul
  d = s.fetch(ni - 16) * _K2
  y = _rot(a + b, 43) + _rot(c, 30) + d
  z = _len16(y, a + _rot(b + _K2, 18) + c, mul)
  e = s.fetch(16) * mul
  f = s.fetch(24)
  g = (y + s.fetch(ni - 32)) * mul
  h = (z + s.fetch(ni - 24)) * mul
  return _len16(_rot(e + f, 43) + _rot(g, 30) + h, e + _rot(f + a, 18) + g, mul)


def _weak32(s: _Bytes, offset, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """farmhash's `WeakHashLen32WithSeeds` of the 32 bytes at `offset`, seeded by `a`, `b`."""
  w, x, y, z = (s.fetch(np.asarray(offset) + i) for i in (0, 8, 16, 24))
  a = a + w
  b = _rot(b + a + z, 21)
  c = a
  a = a + x + y
  b = b + _rot(a, 44)
  return a + z, b + c


def _len65up(s: _Bytes) -> np.ndarray:
  n = s.lengths
  ni = n.astype(np.int64)
  seed = _U64(81)
  rows = n.shape[0]
  x = np.full(rows, seed, np.uint64)
  y = np.full(rows, seed * _K1 + _U64(113), np.uint64)
  z = _shift_mix(y * _K2 + _U64(113)) * _K2
  v0 = v1 = w0 = w1 = np.zeros(rows, np.uint64)
  x = x * _K2 + s.fetch(0)
  blocks = (ni - 1) // 64  # The loop runs over [0, end) in 64-byte blocks, at least once.
  for block in range(int(blocks.max())):
    live = block < blocks
    at = np.int64(64 * block)
    nx = _rot(x + y + v0 + s.fetch(at + 8), 37) * _K1
    ny = _rot(y + v1 + s.fetch(at + 48), 42) * _K1
    nx = nx ^ w1
    ny = ny + v0 + s.fetch(at + 40)
    nz = _rot(z + w0, 33) * _K1
    nv0, nv1 = _weak32(s, at, v1 * _K1, nx + w0)
    nw0, nw1 = _weak32(s, at + 32, nz + w1, ny + s.fetch(at + 16))
    nx, nz = nz, nx  # std::swap(z, x)
    x, y, z = (np.where(live, new, old) for new, old in ((nx, x), (ny, y), (nz, z)))
    v0, v1, w0, w1 = (np.where(live, new, old)
                      for new, old in ((nv0, v0), (nv1, v1), (nw0, w0), (nw1, w1)))
  mul = _K1 + ((z & _U64(0xFF)) << _U64(1))
  last = ni - 64  # The last 64 bytes.
  w0 = w0 + ((n - _U64(1)) & _U64(63))
  v0 = v0 + w0
  w0 = w0 + v0
  x = _rot(x + y + v0 + s.fetch(last + 8), 37) * mul
  y = _rot(y + v1 + s.fetch(last + 48), 42) * mul
  x = x ^ (w1 * _U64(9))
  y = y + v0 * _U64(9) + s.fetch(last + 40)
  z = _rot(z + w0, 33) * mul
  v0, v1 = _weak32(s, last, v1 * mul, x + w0)
  w0, w1 = _weak32(s, last + 32, z + w1, y + s.fetch(last + 16))
  x, z = z, x
  return _len16(_len16(v0, w0, mul) + _shift_mix(y) * _K0 + z, _len16(v1, w1, mul) + x, mul)


def fingerprint64(strings: Iterable) -> np.ndarray:
  """FarmHash `Fingerprint64` of each string (UTF-8) or bytes object: `uint64[n]`.

  Example:
    >>> from federax.analytics._farmhash import fingerprint64
    >>> [int(h) % 2**32 for h in fingerprint64(['a', 'to', 'the'])]  # TF's to_hash_bucket_fast
    [3068098019, 3684911281, 1067429738]
  """
  encoded = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in strings]
  lengths = np.fromiter((len(b) for b in encoded), np.int64, len(encoded))
  width = int(lengths.max(initial=0)) + 8  # Fetches never read past a row.
  rows = np.zeros((len(encoded), width), np.uint8)
  if encoded:
    flat = np.frombuffer(b"".join(encoded), np.uint8)
    starts = np.repeat(np.arange(len(encoded)) * width, lengths)
    within = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows.reshape(-1)[starts + within] = flat
  data = _Bytes(rows, lengths)
  out = np.empty(len(encoded), np.uint64)
  with np.errstate(over="ignore"):
    for low, high, fn in ((0, 16, _len0to16), (17, 32, _len17to32), (33, 64, _len33to64),
                          (65, None, _len65up)):
      select = (lengths >= low) & (lengths <= (high if high is not None else lengths.max(
          initial=0)))
      if select.any():
        out[select] = fn(data.take(select))
  return out
