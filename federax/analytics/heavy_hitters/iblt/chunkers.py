"""Strings to integer chunks and back, on the host: the only step of the IBLT that sees text.

A string is encoded to UTF-8, truncated to `string_max_bytes` (on a character boundary:
`text.truncate_utf8`), zero-padded to whole chunks, and packed little-endian, `bytes_per_chunk`
bytes to an integer below the field's size (3 bytes for TFF's field `2**31 - 1`), as TFF's
`UTF8Chunker` packs them. From there on the IBLT works on integers (hashing, encoding,
summing, peeling), compiled on the clients and in NumPy on the server.
"""

from __future__ import annotations

import enum
import math
from typing import Any

import numpy as np

from federax.analytics import text
from federax.core.errors import error


class CharacterEncoding(enum.Enum):
  """The strings' encoding (TFF's): UTF8 truncates on a character boundary, UNKNOWN (binary
  data) at the byte."""

  UNKNOWN = 0
  UTF8 = 1


class UTF8Chunker:
  """Packs strings of at most `string_max_bytes` bytes into `get_num_chunks()` integers each.

  Trailing zero bytes are padding: a string's own trailing NULs do not survive a round trip
  (TFF's chunker drops every NUL).

  Example:
    >>> chunker = UTF8Chunker(string_max_bytes=5)
    >>> chunks, trimmed = chunker.encode_python(np.array(['hello world', 'hé']))
    >>> chunks.tolist(), trimmed.tolist()
    ([[7103848, 28524], [11125608, 0]], [b'hello', b'h\\xc3\\xa9'])
    >>> chunker.decode_python(chunks).tolist()
    [b'hello', b'h\\xc3\\xa9']
  """

  def __init__(self, string_max_bytes: int, *, max_chunk_value: int = 2**31 - 1,
               encoding: CharacterEncoding = CharacterEncoding.UTF8):
    if string_max_bytes < 1:
      raise error(ValueError, "UTF8Chunker(string_max_bytes=...)",
                  "string_max_bytes must be at least 1.", actual=string_max_bytes)
    if max_chunk_value < 255:
      raise error(ValueError, "UTF8Chunker(max_chunk_value=...)",
                  "a chunk must hold at least one byte.", expected=">= 255",
                  actual=max_chunk_value)
    self.string_max_bytes = string_max_bytes
    self.bytes_per_chunk = int(math.floor(math.log2(max_chunk_value) / 8))
    self._num_chunks = math.ceil(string_max_bytes / self.bytes_per_chunk)
    self._utf8 = encoding == CharacterEncoding.UTF8

  def get_num_chunks(self) -> int:
    """How many integers encode one string."""
    return self._num_chunks

  def trim(self, strings: Any) -> np.ndarray:
    """The strings as UTF-8 bytes cut to `string_max_bytes`: a `bytes` NumPy array (`S`)."""
    raw = text.to_bytes(strings)
    cut = text.truncate_utf8 if self._utf8 else text.truncate_bytes
    return cut(raw, self.string_max_bytes)

  def encode_python(self, strings: Any) -> tuple[np.ndarray, np.ndarray]:
    """`(chunks int64[n, num_chunks], trimmed bytes[n])` for `n` strings (str or bytes)."""
    trimmed = self.trim(strings)
    return self.chunks_of(trimmed), trimmed

  def chunks_of(self, trimmed: np.ndarray) -> np.ndarray:
    """The chunks of already trimmed bytes (`trim`'s result): `int64[n, num_chunks]`."""
    width = self._num_chunks * self.bytes_per_chunk
    padded = np.zeros((trimmed.shape[0], width), np.uint8)
    if trimmed.size and trimmed.dtype.itemsize:
      raw = trimmed.view(np.uint8).reshape(trimmed.shape[0], trimmed.dtype.itemsize)
      padded[:, :raw.shape[1]] = raw[:, :width]
    grouped = padded.reshape(-1, self._num_chunks, self.bytes_per_chunk).astype(np.int64)
    return grouped @ (256 ** np.arange(self.bytes_per_chunk, dtype=np.int64))

  def decode_python(self, chunks: Any) -> np.ndarray:
    """The strings (`bytes`, an object array) that `int[n, num_chunks]` chunks encode."""
    chunks = np.asarray(chunks, np.int64).reshape(-1, self._num_chunks)
    shifts = 8 * np.arange(self.bytes_per_chunk, dtype=np.int64)
    raw = ((chunks[..., None] >> shifts) & 0xFF).astype(np.uint8).reshape(chunks.shape[0], -1)
    width = raw.shape[1]
    packed = np.ascontiguousarray(raw).view(f"S{width}").reshape(-1) if width else (
        np.zeros(chunks.shape[0], "S1"))
    return packed.astype(object)  # `S` drops trailing NULs: the padding.


def create_chunker(*, string_max_bytes: int,
                   encoding: CharacterEncoding = CharacterEncoding.UTF8,
                   max_chunk_value: int = 2**31 - 1) -> UTF8Chunker:
  """TFF's `create_chunker`: the chunker for `encoding` (both pack bytes the same way; UTF8
  truncates on a character boundary)."""
  if not isinstance(encoding, CharacterEncoding):
    raise error(ValueError, "create_chunker(encoding=...)", "unsupported encoding.",
                expected="fx.analytics.heavy_hitters.iblt.CharacterEncoding", actual=encoding)
  return UTF8Chunker(string_max_bytes, max_chunk_value=max_chunk_value, encoding=encoding)
