"""Where a string goes in the IBLT: hashes of its integer chunks, the same in NumPy and JAX.

TFF hashes the string itself (`tf.strings.to_hash_bucket_fast`); federax hashes the string's
chunks (`chunkers`), which are integers, so the clients hash inside their compiled program and
the server, peeling in NumPy, recomputes the very same bits. The hash is MurmurHash3's 32-bit
mixing over the chunks, salted per repetition (and per seed) as TFF salts its strings.

Two families, as TFF's: `RandomHyperEdgeHasher` (each repetition's index uniform in the table)
and `CoupledHyperEdgeHasher` (a string's indices fall in one window of the table, which peels
better at large capacities; Walzer's spatial coupling, https://arxiv.org/abs/2001.10500).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from federax.core.errors import error

_MASK = 0xFFFFFFFF

def _mix_int(h: int) -> int:
  """MurmurHash3's 32-bit finalizer on a Python int (for salts)."""
  h &= _MASK
  h ^= h >> 16
  h = (h * 0x85EBCA6B) & _MASK
  h ^= h >> 13
  h = (h * 0xC2B2AE35) & _MASK
  return h ^ (h >> 16)

def salt(seed: int, tag: int) -> int:
  """A 32-bit salt for `(seed, tag)`: tags 0.. are the repetitions, -1 the hash check, -2 the
  coupled family's window."""
  seed %= 2**64
  return _mix_int(_mix_int(seed & _MASK) ^ _mix_int((seed >> 32) + 0x9E3779B9)
                  ^ _mix_int(tag % 2**32 + 0x632BE5AB))

def _rotl(x: Any, r: int) -> Any:
  return (x << r) | (x >> (32 - r))

def hash_chunks(chunks: Any, seed_salt: int, xp: Any) -> Any:
  """MurmurHash3 (x86, 32-bit) of each row of `chunks`, `uint32[n, c] -> uint32[n]`.

  Example:
    >>> import jax.numpy as jnp
    >>> rows = np.array([[1, 2], [3, 4]], np.uint32)
    >>> np.array_equal(hash_chunks(rows, 7, np), np.asarray(hash_chunks(jnp.asarray(rows), 7, jnp)))
    True
  """
  chunks = chunks.astype(xp.uint32)
  h = xp.full(chunks.shape[:-1], seed_salt, xp.uint32)
  for c in range(chunks.shape[-1]):
    k = _rotl(chunks[..., c] * xp.uint32(0xCC9E2D51), 15) * xp.uint32(0x1B873593)
    h = _rotl(h ^ k, 13) * xp.uint32(5) + xp.uint32(0xE6546B64)
  h = h ^ xp.uint32(4 * chunks.shape[-1])
  h = (h ^ (h >> 16)) * xp.uint32(0x85EBCA6B)
  h = (h ^ (h >> 13)) * xp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)

class RandomHyperEdgeHasher:
  """Each repetition's index uniform in `[0, table_size)`, independently (TFF's default below a
  capacity of 100,000).

  Example:
    >>> hasher = RandomHyperEdgeHasher(seed=0, table_size=50, repetitions=3)
    >>> hasher.get_hash_indices(np.array([[104, 105]]), np).shape
    (1, 3)
  """

  def __init__(self, seed: int, table_size: int, repetitions: int):
    _check_table(type(self).__name__, table_size, repetitions)
    self._salts = [salt(seed, r) for r in range(repetitions)]
    self._table_size = table_size

  def get_hash_indices(self, chunks: Any, xp: Any) -> Any:
    """`int32[n, repetitions]`: the table index of each chunked string in each repetition."""
    return xp.stack([(hash_chunks(chunks, s, xp) % xp.uint32(self._table_size)).astype(xp.int32)
                     for s in self._salts], axis=-1)

class CoupledHyperEdgeHasher:
  """A string's indices in one window of `table_size / (rescale_factor + 1)` cells, the window's
  start uniform (TFF's family from a capacity of 100,000; `rescale_factor` is its `z`).

  TFF places the window with float arithmetic; federax draws its start and the offsets in it
  as integers, so NumPy and JAX agree bit for bit. The distribution is the same.

  Example:
    >>> hasher = CoupledHyperEdgeHasher(0, table_size=1000, repetitions=3, rescale_factor=9.0)
    >>> int(np.ptp(hasher.get_hash_indices(np.array([[104, 105]]), np))) < 100
    True
  """

  def __init__(self, seed: int, table_size: int, repetitions: int, rescale_factor: float):
    _check_table(type(self).__name__, table_size, repetitions)
    if not 0 < rescale_factor <= table_size - 1:
      raise error(ValueError, f"{type(self).__name__}(rescale_factor=...)",
                  "rescale_factor must be positive and at most table_size - 1.",
                  expected=f"in (0, {table_size - 1}]", actual=rescale_factor)
    self._salts = [salt(seed, r) for r in range(repetitions)]
    self._window_salt = salt(seed, -2)
    self._window = max(1, int(table_size / (rescale_factor + 1.0)))
    self._starts = table_size - self._window + 1

  def get_hash_indices(self, chunks: Any, xp: Any) -> Any:
    """`int32[n, repetitions]`: the table index of each chunked string in each repetition."""
    start = hash_chunks(chunks, self._window_salt, xp) % xp.uint32(self._starts)
    return xp.stack([(start + hash_chunks(chunks, s, xp) % xp.uint32(self._window)).astype(
        xp.int32) for s in self._salts], axis=-1)

def _check_table(name: str, table_size: int, repetitions: int) -> None:
  if table_size < 1:
    raise error(ValueError, f"{name}(table_size=...)", "table_size must be at least 1.",
                actual=table_size)
  if repetitions < 3:
    raise error(ValueError, f"{name}(repetitions=...)", "repetitions must be at least 3.",
                actual=repetitions)

def hash_check(chunks: Any, seed: int, field_size: int, xp: Any) -> Any:
  """`uint32[n]` in `[0, field_size)`: the check value that tells a pure cell from a mixed one.

  Example:
    >>> int(hash_check(np.array([[104, 105]]), 0, 2**31 - 1, np)[0]) < 2**31 - 1
    True
  """
  return hash_chunks(chunks, salt(seed, -1), xp) % xp.uint32(field_size)

