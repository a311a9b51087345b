"""Invertible Bloom lookup tables (IBLTs) of strings: their layout, encoders and the decoder.

An IBLT stores key/count pairs in `repetitions` rows of `table_size` cells. Inserting a string
`s` with count `v` adds, in each row `r`, at the cell `h_r(s)`: `v * chunks(s)` to its key
fields, `v` to its count and `v * q(s)` to its check, all in the field GF(2**31 - 1). The table
is linear: the sum of the clients' tables is the table of all their strings. A cell holding
one string is *pure* (key / count decodes to chunks whose check matches); decoding peels pure
cells, subtracts their strings everywhere, and repeats. Goodrich & Mitzenmacher, "Invertible
Bloom Lookup Tables", https://arxiv.org/abs/1101.2245.

TFF's layout (`[repetitions, table_size, num_chunks + 2]`: chunks, count, check) and sizes are
kept. Differences: strings are hashed through their chunks (`hyperedge_hashers`); the decoder
peels every pure cell of a round at once, in NumPy, instead of one cell per step of a
`tf.while_loop`; decoded strings are `bytes`, sorted by count (then by bytes), not in peeling
order; an empty string decodes like any other.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

from federax.analytics import text
from federax.analytics.heavy_hitters.iblt import _field
from federax.analytics.heavy_hitters.iblt import hyperedge_hashers
from federax.analytics.heavy_hitters.iblt.chunkers import CharacterEncoding, create_chunker
from federax.core.errors import error

DEFAULT_FIELD_SIZE = _field.P
DEFAULT_REPETITIONS = 3
# Theoretical IBLT space bounds, Table 1 of https://arxiv.org/abs/1101.2245 (as TFF).
_REPETITIONS_TO_SPACE_OVERHEAD = {3: 1.222, 4: 1.295, 5: 1.425, 6: 1.570}
_HASH_FAMILY_RANDOM = "random"
_HASH_FAMILY_COUPLED = "coupled"


def _internal_parameters(capacity: int, repetitions: int, hash_family: Optional[str] = None,
                         hash_family_params: Optional[dict] = None) -> tuple[int, str, dict]:
  """`(table_size, hash_family, hash_family_params)` for a capacity, as TFF sizes them."""
  if repetitions in _REPETITIONS_TO_SPACE_OVERHEAD:
    minimum_space = _REPETITIONS_TO_SPACE_OVERHEAD[repetitions] * capacity
  else:
    minimum_space = capacity * repetitions / 4  # A rough upper bound (TFF's).
  table_size = int(1.1 * minimum_space / repetitions + 10)  # Slightly larger, for robustness.
  if hash_family is None:
    hash_family = _HASH_FAMILY_COUPLED if capacity >= 100_000 else _HASH_FAMILY_RANDOM
  if hash_family_params is None:
    hash_family_params = ({"rescale_factor": 0.25 * capacity**0.5}
                          if hash_family == _HASH_FAMILY_COUPLED else {})
  return table_size, hash_family, hash_family_params


class Layout:
  """Everything encoder and decoder must agree on: sizes, chunker, hashes, field.

  Attributes:
    table_size, repetitions, num_chunks: the table is `[repetitions, table_size,
      num_chunks + 2]` (chunks, then the count, then the check).
    iblt_shape: that shape.
  """

  def __init__(self, who: str, capacity: int, string_max_bytes: int, *,
               encoding: CharacterEncoding = CharacterEncoding.UTF8, seed: int = 0,
               repetitions: int = DEFAULT_REPETITIONS, hash_family: Optional[str] = None,
               hash_family_params: Optional[dict] = None,
               field_size: int = DEFAULT_FIELD_SIZE):
    for name, value, low in (("capacity", capacity, 1), ("string_max_bytes", string_max_bytes, 1),
                             ("repetitions", repetitions, 3)):
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise error(ValueError, f"{who}({name}=...)", f"{name} must be an int of at least {low}.",
                    actual=repr(value))
    if not 2**8 <= field_size <= DEFAULT_FIELD_SIZE:
      raise error(ValueError, f"{who}(field_size=...)", "the field size must be a prime that "
                  "fits in 31 bits.", expected=f"a prime in [256, {DEFAULT_FIELD_SIZE}]",
                  actual=field_size)
    self.capacity, self.repetitions, self.seed = int(capacity), int(repetitions), int(seed)
    self.field_size = int(field_size)
    self.table_size, self.hash_family, params = _internal_parameters(
        self.capacity, self.repetitions, hash_family, hash_family_params)
    self.chunker = create_chunker(string_max_bytes=int(string_max_bytes), encoding=encoding,
                                  max_chunk_value=self.field_size)
    self.num_chunks = self.chunker.get_num_chunks()
    self.chunk_limit = 256**self.chunker.bytes_per_chunk  # Chunks of real strings are below.
    self.iblt_shape = (self.repetitions, self.table_size, self.num_chunks + 2)
    if self.hash_family == _HASH_FAMILY_RANDOM:
      self.hasher = hyperedge_hashers.RandomHyperEdgeHasher(
          self.seed, self.table_size, self.repetitions, **params)
    elif self.hash_family == _HASH_FAMILY_COUPLED:
      self.hasher = hyperedge_hashers.CoupledHyperEdgeHasher(
          self.seed, self.table_size, self.repetitions, **params)
    else:
      raise error(ValueError, f"{who}(hash_family=...)", "unknown hash family.",
                  expected="'random' or 'coupled'", actual=repr(hash_family))

  def indices(self, chunks: Any, xp: Any) -> Any:
    """`int32[n, repetitions]`: each chunked string's cell in each row."""
    return self.hasher.get_hash_indices(chunks, xp)

  def checks(self, chunks: Any, xp: Any) -> Any:
    """`uint32[n]`: each chunked string's check value, in the field."""
    return hyperedge_hashers.hash_check(chunks, self.seed, self.field_size, xp)


def _layout_kwargs(kwargs: dict) -> dict:
  return {k: kwargs[k] for k in ("encoding", "seed", "repetitions", "hash_family",
                                 "hash_family_params", "field_size") if k in kwargs}


class IbltEncoder:
  """Encodes strings, with counts, into an IBLT: `int64[repetitions, table_size,
  num_chunks + 2]` (TFF's `IbltEncoder`, in NumPy on the host).

  Example:
    >>> encoder = IbltEncoder(capacity=10, string_max_bytes=5)
    >>> table = encoder.compute_iblt(np.array(['ab', 'cd', 'ab']))
    >>> table.shape
    (3, 14, 4)
    >>> IbltDecoder(table, capacity=10, string_max_bytes=5).get_freq_estimates()
    {'ab': 2, 'cd': 1}
  """

  def __init__(self, capacity: int, string_max_bytes: int, *,
               encoding: CharacterEncoding = CharacterEncoding.UTF8,
               drop_strings_above_max_length: bool = False, seed: int = 0,
               repetitions: int = DEFAULT_REPETITIONS, hash_family: Optional[str] = None,
               hash_family_params: Optional[dict] = None,
               field_size: int = DEFAULT_FIELD_SIZE):
    self.layout = Layout(type(self).__name__, capacity, string_max_bytes, encoding=encoding,
                         seed=seed, repetitions=repetitions, hash_family=hash_family,
                         hash_family_params=hash_family_params, field_size=field_size)
    self.drop_strings_above_max_length = drop_strings_above_max_length
    self.table_size, self.repetitions = self.layout.table_size, self.layout.repetitions
    self.num_chunks, self.iblt_shape = self.layout.num_chunks, self.layout.iblt_shape
    self.field_size = self.layout.field_size

  def compute_chunks(self, input_strings: Any) -> tuple[np.ndarray, np.ndarray]:
    """`(chunks int64[n, num_chunks], trimmed bytes[n])` of the strings."""
    return self.layout.chunker.encode_python(np.asarray(input_strings).reshape(-1))

  def _kept(self, input_strings: Any, *per_string: np.ndarray) -> tuple:
    strings = np.asarray(input_strings).reshape(-1)
    chunks, trimmed = self.compute_chunks(strings)
    if not self.drop_strings_above_max_length:
      return (chunks,) + per_string
    keep = np.char.str_len(trimmed) == np.char.str_len(text.to_bytes(strings))
    return (chunks[keep],) + tuple(x[keep] for x in per_string)

  def compute_iblt(self, input_strings: Any, input_counts: Any = None) -> np.ndarray:
    """The IBLT of `input_strings` (1-D, str or bytes), each with its count (default 1)."""
    strings = np.asarray(input_strings).reshape(-1)
    counts = (np.ones(strings.shape, np.int64) if input_counts is None
              else np.asarray(input_counts, np.int64).reshape(-1))
    if counts.shape != strings.shape:
      raise error(ValueError, "IbltEncoder.compute_iblt", "one count per string is needed.",
                  expected=f"{strings.shape[0]} counts", actual=f"{counts.shape[0]} counts")
    chunks, counts = self._kept(strings, counts)
    return encode_numpy(self.layout, chunks, counts)


class IbltTensorEncoder(IbltEncoder):
  """Encodes strings into an IBLT plus a table of values (TFF's `IbltTensorEncoder`): each
  string counts 1 in the IBLT and adds its value tensor (`value_shape`) to its cells.

  Example:
    >>> encoder = IbltTensorEncoder((1,), capacity=10, string_max_bytes=5)
    >>> table, values = encoder.compute_iblt(np.array(['ab', 'cd']), np.array([[5], [7]]))
    >>> values.shape
    (3, 14, 1)
  """

  def __init__(self, value_shape: Any, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.value_shape = tuple(value_shape or ())
    self.iblt_values_shape = (self.repetitions, self.table_size) + self.value_shape

  def compute_iblt(self, input_strings: Any, input_values: Any) -> tuple[np.ndarray, np.ndarray]:
    """`(iblt, iblt_values)` for 1-D strings and their values (`[n, *value_shape]`)."""
    strings = np.asarray(input_strings).reshape(-1)
    values = np.asarray(input_values, np.int64)
    if values.shape != strings.shape + self.value_shape:
      raise error(ValueError, "IbltTensorEncoder.compute_iblt", "one value per string is needed.",
                  expected=strings.shape + self.value_shape, actual=values.shape)
    chunks, values = self._kept(strings, values)
    table = encode_numpy(self.layout, chunks, np.ones(chunks.shape[0], np.int64))
    indices = self.layout.indices(chunks, np)
    out = np.zeros((self.repetitions, self.table_size) + self.value_shape, np.int64)
    for r in range(self.repetitions):
      np.add.at(out[r], indices[:, r], values)
    return table, out


def encode_numpy(layout: Layout, chunks: np.ndarray, counts: np.ndarray) -> np.ndarray:
  """The IBLT of chunked strings with counts, in int64 NumPy: `[repetitions, table_size,
  num_chunks + 2]` with entries in [0, field_size)."""
  p = layout.field_size
  counts = np.mod(counts.astype(np.int64), p)
  fields = np.concatenate([chunks * counts[:, None] % p, counts[:, None],
                           layout.checks(chunks, np).astype(np.int64)[:, None] * counts[:, None]
                           % p], axis=1)
  indices = layout.indices(chunks, np)
  table = np.zeros(layout.iblt_shape, np.int64)
  for r in range(layout.repetitions):
    np.add.at(table[r], indices[:, r], fields)
  return table % p


class Decoded(NamedTuple):
  """What an IBLT decodes to: `strings` (bytes, object array), their `counts` (int64), the
  `values` tensors if the IBLT had some (`[n, *value_shape]`, int64), and `num_not_decoded`."""

  strings: np.ndarray
  counts: np.ndarray
  values: Optional[np.ndarray]
  num_not_decoded: int


class IbltDecoder:
  """Decodes the strings and counts in an IBLT (TFF's `IbltDecoder`), peeling in NumPy.

  Each round finds every pure cell at once (count invertible, chunks valid, hash position and
  check matching), takes its strings and subtracts them from all their cells; rounds repeat
  until no cell is pure. The cost is a few vectorized passes over the table per round, and
  the rounds number about log(capacity), so capacities of tens of thousands decode in a
  fraction of a second.

  Example:
    >>> table = IbltEncoder(100, 10).compute_iblt(np.array(['to', 'be', 'or', 'not', 'to']))
    >>> IbltDecoder(table, 100, 10).get_freq_estimates()
    {'to': 2, 'be': 1, 'not': 1, 'or': 1}
  """

  def __init__(self, iblt: Any, capacity: int, string_max_bytes: int, *,
               encoding: CharacterEncoding = CharacterEncoding.UTF8, seed: int = 0,
               repetitions: int = DEFAULT_REPETITIONS, hash_family: Optional[str] = None,
               hash_family_params: Optional[dict] = None,
               field_size: int = DEFAULT_FIELD_SIZE):
    self.layout = Layout(type(self).__name__, capacity, string_max_bytes, encoding=encoding,
                         seed=seed, repetitions=repetitions, hash_family=hash_family,
                         hash_family_params=hash_family_params, field_size=field_size)
    self.iblt = np.asarray(iblt)
    if self.iblt.shape != self.layout.iblt_shape:
      raise error(ValueError, type(self).__name__, "the IBLT's shape does not fit its parameters.",
                  expected=self.layout.iblt_shape, actual=self.iblt.shape,
                  hint="decode with the capacity, string_max_bytes and repetitions it was built "
                  "with")
    self.iblt_values = None

  def decode(self) -> Decoded:
    """Peels the table: the strings, counts, values and the number of entries not decoded."""
    return peel(self.layout, self.iblt, self.iblt_values)

  def get_freq_estimates(self) -> dict[Optional[str], int]:
    """`{string: count}` (strings decoded from UTF-8, broken characters dropped), with
    `None: num_not_decoded` when some entries could not be decoded."""
    decoded = self.decode()
    counter: dict[Optional[str], int] = {
        s.decode("utf-8", "ignore"): int(c) for s, c in zip(decoded.strings, decoded.counts)}
    if decoded.num_not_decoded:
      counter[None] = decoded.num_not_decoded
    return counter


class IbltTensorDecoder(IbltDecoder):
  """Decodes an IBLT and its table of values (TFF's `IbltTensorDecoder`).

  Example:
    >>> encoder = IbltTensorEncoder((1,), capacity=10, string_max_bytes=5)
    >>> table, values = encoder.compute_iblt(np.array(['ab', 'cd']), np.array([[5], [7]]))
    >>> IbltTensorDecoder(table, values, (1,), 10, 5).get_freq_estimates()
    ({'ab': 1, 'cd': 1}, {'ab': [5], 'cd': [7]})
  """

  def __init__(self, iblt: Any, iblt_values: Any, value_shape: Any, *args, **kwargs):
    super().__init__(iblt, *args, **kwargs)
    self.value_shape = tuple(value_shape or ())
    self.iblt_values = np.asarray(iblt_values, np.int64).reshape(
        self.layout.repetitions, self.layout.table_size, -1)

  def get_freq_estimates(self) -> tuple[dict, dict]:  # type: ignore[override]
    """`({string: count}, {string: value list})`, with `None: num_not_decoded` in the first."""
    decoded = self.decode()
    strings = [s.decode("utf-8", "ignore") for s in decoded.strings]
    counts: dict[Optional[str], int] = {s: int(c) for s, c in zip(strings, decoded.counts)}
    values = {s: v.reshape(self.value_shape).tolist() for s, v in zip(strings, decoded.values)}
    if decoded.num_not_decoded:
      counts[None] = decoded.num_not_decoded
    return counts, values


def decode_iblt(iblt: Any, capacity: int, string_max_bytes: int,
                **kwargs: Any) -> tuple[np.ndarray, np.ndarray, int]:
  """`(strings, counts, num_not_decoded)` of an IBLT (TFF's `decode_iblt_tf`); keyword
  arguments as `IbltDecoder`'s."""
  decoded = IbltDecoder(iblt, capacity, string_max_bytes, **_layout_kwargs(kwargs)).decode()
  return decoded.strings, decoded.counts, decoded.num_not_decoded


def decode_iblt_tensor(iblt: Any, iblt_values: Any, capacity: int, string_max_bytes: int,
                       value_shape: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray, int]:
  """`(strings, counts, values, num_not_decoded)` of an IBLT with values (TFF's
  `decode_iblt_tensor_tf`)."""
  decoded = IbltTensorDecoder(iblt, iblt_values, value_shape, capacity, string_max_bytes,
                              **_layout_kwargs(kwargs)).decode()
  values = decoded.values.reshape((-1,) + tuple(value_shape or ()))
  return decoded.strings, decoded.counts, values, decoded.num_not_decoded


def _inverse(x: np.ndarray, p: int) -> np.ndarray:
  """`x**(p - 2) mod p`, the inverse of each nonzero `x` in GF(p), by repeated squaring."""
  result, base, exponent = np.ones_like(x), x % p, p - 2
  while exponent:
    if exponent & 1:
      result = result * base % p
    base = base * base % p
    exponent >>= 1
  return result


def peel(layout: Layout, iblt: Any, iblt_values: Optional[np.ndarray] = None) -> Decoded:
  """Decodes an IBLT (and optionally its values, `[repetitions, table_size, v]`) by rounds of
  peeling every pure cell at once. Strings come out sorted by count, largest first, then by
  their bytes."""
  p, reps, size, c = layout.field_size, layout.repetitions, layout.table_size, layout.num_chunks
  table = np.mod(np.asarray(iblt, np.int64), p).reshape(reps * size, c + 2)
  keys, count, check = table[:, :c], table[:, c], table[:, c + 1]
  values = (None if iblt_values is None
            else np.asarray(iblt_values, np.int64).reshape(reps * size, -1).copy())
  found: list[tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]] = []
  rows = np.arange(reps, dtype=np.int64) * size
  candidates = np.flatnonzero(count)
  while candidates.size:
    counts = count[candidates]
    candidates, counts = candidates[counts != 0], counts[counts != 0]
    words = keys[candidates] * _inverse(counts, p)[:, None] % p
    pure = np.all(words < layout.chunk_limit, axis=1)
    indices = layout.indices(words, np).astype(np.int64) + rows  # [m, reps], flat cells.
    pure &= (indices == candidates[:, None]).any(axis=1)
    pure &= check[candidates] == counts * layout.checks(words, np).astype(np.int64) % p
    if not pure.any():
      break
    words, counts, cells, indices = words[pure], counts[pure], candidates[pure], indices[pure]
    _, first = np.unique(words, axis=0, return_index=True)  # Pure in several rows at once.
    words, counts, cells, indices = words[first], counts[first], cells[first], indices[first]
    taken = None if values is None else values[cells].copy()
    found.append((words, counts, taken))
    flat = indices.reshape(-1)
    each = np.repeat(np.arange(words.shape[0]), reps)
    np.subtract.at(keys, flat, words[each] * counts[each, None] % p)
    np.subtract.at(count, flat, counts[each])
    np.subtract.at(check, flat, counts[each] * layout.checks(words, np).astype(np.int64)[each] % p)
    if values is not None:
      np.subtract.at(values, flat, taken[each])
    candidates = np.unique(flat)
    table[candidates] %= p
  num_not_decoded = int(count.sum() // reps)
  if not found:
    empty_values = None if values is None else np.zeros((0, values.shape[1]), np.int64)
    return Decoded(np.zeros(0, object), np.zeros(0, np.int64), empty_values, num_not_decoded)
  words = np.concatenate([f[0] for f in found])
  counts = np.concatenate([f[1] for f in found])
  taken_values = None if values is None else np.concatenate([f[2] for f in found])
  strings = layout.chunker.decode_python(words)
  order = np.lexsort((strings.astype("S"), -counts))
  return Decoded(strings[order], counts[order],
                 None if taken_values is None else taken_values[order], num_not_decoded)

