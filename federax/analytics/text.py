"""Text utilities for federated analytics, without TensorFlow Text: tokens, case folding,
punctuation, and UTF-8-safe byte truncation.

TFF's heavy-hitters tutorial prepares words with TensorFlow Text (`WhitespaceTokenizer`,
`case_fold_utf8`, `wordshape(..., IS_PUNCT_OR_SYMBOL)`); these functions do the same in
Python's `str` and `unicodedata`, so the tutorial needs no TensorFlow. Where they differ from
ICU (which TensorFlow Text uses) is named in each docstring. Truncation works on NumPy `bytes`
arrays (`S` dtype), vectorized over the strings.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np


def whitespace_tokenize(line: Any) -> list[str]:
  """The tokens of `line` (str or UTF-8 bytes) split on Unicode whitespace, as TensorFlow Text's
  `WhitespaceTokenizer` (Python's `str.split()`; ICU also keeps U+001C..U+001F inside tokens).

  Example:
    >>> whitespace_tokenize(b'To be,\\tor  not')
    ['To', 'be,', 'or', 'not']
  """
  return _as_str(line).split()


def case_fold_utf8(word: Any) -> str:
  """`word` case-folded and NFKC-normalized, as TensorFlow Text's `case_fold_utf8` (ICU's
  NFKC_Casefold, which also drops default-ignorable code points: this does not).

  Example:
    >>> case_fold_utf8('Straße ＡＢ')
    'strasse ab'
  """
  return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", _as_str(word)).casefold())


def _punct_or_symbol(char: str) -> bool:
  return unicodedata.category(char)[0] in "PS"


def is_punct_or_symbol(word: Any) -> bool:
  """Whether `word` is non-empty and every character is punctuation or a symbol (Unicode
  categories P* and S*): TensorFlow Text's `wordshape(word, IS_PUNCT_OR_SYMBOL)`.

  Example:
    >>> [is_punct_or_symbol(w) for w in ['--', '&c.', "o'er", '']]
    [True, False, False, False]
  """
  word = _as_str(word)
  return bool(word) and all(_punct_or_symbol(c) for c in word)


def strip_punctuation(word: Any) -> str:
  """`word` without the punctuation and symbols at either end (inner ones, as in "o'er", stay).

  Example:
    >>> [strip_punctuation(w) for w in ['lord,', '"Tis', "o'er!", '--']]
    ['lord', 'Tis', "o'er", '']
  """
  word = _as_str(word)
  start, end = 0, len(word)
  while start < end and _punct_or_symbol(word[start]):
    start += 1
  while end > start and _punct_or_symbol(word[end - 1]):
    end -= 1
  return word[start:end]


def tokenize(lines: Any, *, case_fold: bool = True, drop_punct_or_symbol: bool = True,
             strip_punct: bool = False) -> np.ndarray:
  """The words of `lines` (a str, bytes, or an iterable of them), in order, as TFF's heavy
  hitters tutorial makes them: split on whitespace, case-folded, words that are only
  punctuation or symbols dropped. With `strip_punct`, punctuation at either end of a word is
  removed too (and words left empty are dropped).

  Returns:
    A NumPy `str` array of the words.

  Example:
    >>> tokenize(['To be, or not to be: -- that', 'Is the question.']).tolist()
    ['to', 'be,', 'or', 'not', 'to', 'be:', 'that', 'is', 'the', 'question.']
    >>> tokenize('Ay, -- ay!', strip_punct=True).tolist()
    ['ay', 'ay']
  """
  if isinstance(lines, (str, bytes, np.str_, np.bytes_)):
    lines = [lines]
  words = []
  for line in _iterate(lines):
    for word in whitespace_tokenize(line):
      if case_fold:
        word = case_fold_utf8(word)
      if strip_punct:
        word = strip_punctuation(word)
        if not word:
          continue
      if drop_punct_or_symbol and is_punct_or_symbol(word):
        continue
      words.append(word)
  return np.array(words, dtype=str) if words else np.zeros(0, "<U1")


def to_bytes(strings: Any) -> np.ndarray:
  """Strings (`str` or `bytes`, any array-like) as a NumPy `bytes` array (`S` dtype), UTF-8.

  Example:
    >>> to_bytes(['hé', b'x']).tolist()
    [b'h\\xc3\\xa9', b'x']
  """
  array = np.asarray(strings)
  if array.dtype.kind == "S":
    return array
  if array.dtype.kind == "U":
    if not array.size:
      return array.astype("S1")
    codes = np.ascontiguousarray(array).view(np.uint32)
    if codes.max() < 128:  # ASCII: one byte per character, no encoder needed.
      return codes.astype(np.uint8).view(f"S{array.dtype.itemsize // 4}").reshape(array.shape)
    return np.char.encode(array, "utf-8")
  flat = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in array.reshape(-1)]
  return (np.array(flat, dtype="S") if flat else np.zeros(0, "S1")).reshape(array.shape)


def truncate_bytes(raw: np.ndarray, max_bytes: int) -> np.ndarray:
  """`bytes` strings cut to their first `max_bytes` bytes (may split a UTF-8 character)."""
  return raw.astype(f"S{max_bytes}") if raw.dtype.itemsize > max_bytes else raw


def truncate_utf8(strings: Any, max_bytes: int) -> Any:
  """Strings encoded to UTF-8 and cut to at most `max_bytes` bytes, never inside a character.

  A string longer than `max_bytes` keeps the longest prefix of whole characters that fits
  (TFF cuts at the byte and drops the broken character when it decodes; the stored bytes
  then differ). Vectorized over a NumPy array: at most three steps back from the cut, the
  longest a UTF-8 character's tail can be.

  Args:
    strings: a str or bytes, or an array-like of them.
    max_bytes: the limit, at least 0.

  Returns:
    `bytes` for a single string, else a NumPy `bytes` array (`S` dtype) of the same shape.

  Example:
    >>> truncate_utf8('naïve', 3), truncate_utf8('naïve', 4)
    (b'na', b'na\\xc3\\xaf')
    >>> truncate_utf8(['日本語', 'ab'], 4).tolist()
    [b'\\xe6\\x97\\xa5', b'ab']
  """
  single = isinstance(strings, (str, bytes, np.str_, np.bytes_))
  raw = to_bytes(strings)
  shape = raw.shape
  raw = raw.reshape(-1)
  width = raw.dtype.itemsize
  if width > max_bytes and raw.size:
    u8 = np.ascontiguousarray(raw).view(np.uint8).reshape(raw.size, width)
    rows = np.arange(raw.size)
    cut = np.full(raw.size, max_bytes)
    for _ in range(3):  # Step back over continuation bytes (10xxxxxx) to a character's start.
      inside = ((u8[rows, cut] & 0xC0) == 0x80) & (cut > 0)
      cut = cut - inside
    kept = np.where(np.arange(max_bytes) < cut[:, None], u8[:, :max_bytes], 0).astype(np.uint8)
    raw = np.ascontiguousarray(kept).view(f"S{max_bytes}").reshape(-1) if max_bytes else (
        np.zeros(raw.size, "S1"))
  raw = raw.reshape(shape)
  return bytes(raw[()]) if single else raw


def _as_str(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _iterate(lines: Any) -> Iterable[Any]:
  if isinstance(lines, np.ndarray):
    return lines.reshape(-1).tolist()
  return lines
