"""`build_iblt_computation`: one round of heavy-hitters discovery with IBLTs (TFF's).

The round, `({str[?]*}@CLIENTS -> ServerOutput@SERVER)`:

1. on the host, each client's strings are capped, cut to `string_max_bytes`, counted and
   chunked to integers (`data_processing`, `chunkers`): the only per-client Python, as strings
   cannot enter a JAX program;
2. one compiled program encodes every client's words into its IBLT (hashing and scatter in the
   field, vectorized over words and clients) and sums the tables at the server: plainly, or with
   `secure_sum_bitwidth` by `federated_secure_modular_sum` modulo the field (TFF's choice, so the
   sum stays decodable) and the counts by `federated_secure_sum_bitwidth`;
3. at the server, NumPy peels the summed table (`iblt_lib.peel`) and filters the result.

Counts travel as two 16-bit halves, so that no sum of int32s can overflow: the plain path
adds them with carries in a `federated_aggregate` (exact up to 2**47), the secure path
declares each half's bitwidth (with `secure_sum_bitwidth=b`, the high half has `b - 16` bits,
so a count of `2**b` or more is refused by the secure sum, and so is a sum of 16-bit halves
that could overflow an int32: more than 32,768 clients in one call).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.analytics import data_processing
from federax.analytics.heavy_hitters.iblt import _field, _sketch
from federax.analytics.heavy_hitters.iblt.iblt_lib import DEFAULT_REPETITIONS, Layout, peel
from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER


class ServerOutput(NamedTuple):
  """The result of a round (TFF's `ServerOutput`).

  Attributes:
    clients: int32, how many clients took part.
    heavy_hitters: the decoded strings, `bytes` (an object array), by count, largest first.
    heavy_hitters_unique_counts: int64, how many clients contributed each.
    heavy_hitters_counts: int64, each one's count (the clients' counts summed).
    num_not_decoded: int64, the client contributions left in the table undecoded.
    round_timestamp: int64, when the round began, in seconds since the epoch (UTC).
  """

  clients: Any
  heavy_hitters: Any
  heavy_hitters_unique_counts: Any
  heavy_hitters_counts: Any
  num_not_decoded: Any
  round_timestamp: Any


_OP = "build_iblt_computation"


def _check_int(name: str, value: Any, low: int, optional: bool = False,
               high: Optional[int] = None) -> None:
  if optional and value is None:
    return
  bad = isinstance(value, bool) or not isinstance(value, (int, np.integer))
  if bad or value < low or (high is not None and value > high):
    span = f"in [{low}, {high}]" if high is not None else f"at least {low}"
    raise error(ValueError, f"{_OP}({name}=...)", f"{name} must be an int {span}"
                + (" when it is not None." if optional else "."),
                expected=f"an int {span}" + (" or None" if optional else ""), actual=repr(value))


def build_iblt_computation(
    *, string_max_bytes: int = 10, max_words_per_user: Optional[int] = None,
    multi_contribution: bool = True, capacity: int = 1000, k_anonymity: int = 1,
    max_heavy_hitters: Optional[int] = None,
    string_postprocessor: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    secure_sum_bitwidth: Optional[int] = None, seed: int = 0, batch_size: int = 1,
    repetitions: int = DEFAULT_REPETITIONS):
  """The federated computation of one round of heavy-hitters discovery with IBLTs.

  Each client sends an IBLT of its words; the server sums them and decodes the strings with
  how many clients sent each (`heavy_hitters_unique_counts`) and their total count
  (`heavy_hitters_counts`). Below `capacity` distinct strings the result is exact; above, some
  strings stay in the table (`num_not_decoded`), and the decoded ones are still exact.

  Args:
    string_max_bytes: strings are cut to this many bytes (UTF-8, on a character boundary).
    max_words_per_user: if set, a client contributes at most this many words: the first
      `max_words_per_user // batch_size` batches with `multi_contribution`, else its
      `max_words_per_user` most frequent distinct words. None: all its words.
    multi_contribution: whether a client adds each word's count (True) or 1 per distinct word.
    capacity: how many distinct strings the table is sized for (table size as TFF's).
    k_anonymity: only strings sent by at least this many clients are returned.
    max_heavy_hitters: if set, only the this many with the largest counts are returned.
    string_postprocessor: applied to the decoded strings (a NumPy `bytes` object array) at the
      server; must return an array of the same shape.
    secure_sum_bitwidth: None sums plainly; else in [1, 62]: the tables are summed with
      `fx.federated_secure_modular_sum` modulo the IBLT's field and the counts with
      `fx.federated_secure_sum_bitwidth` (each client's count per cell below
      `2**secure_sum_bitwidth`).
    seed: the hash functions' seed (clients and server must agree).
    batch_size: the batch size of the clients' datasets (for `max_words_per_user`).
    repetitions: rows of the IBLT (hash functions per string), at least 3.

  Returns:
    A federated computation `({str[?]*}@CLIENTS -> ServerOutput@SERVER)`.

  Raises:
    ValueError: for an argument outside its range.

  Example:
    >>> iblt = build_iblt_computation(capacity=10, string_max_bytes=5)
    >>> output = iblt([[np.array(['hello', 'world'])], [np.array(['hello'])]])
    >>> output.heavy_hitters.tolist(), output.heavy_hitters_counts.tolist()
    ([b'hello', b'world'], [2, 1])
  """
  _check_int("string_max_bytes", string_max_bytes, 1)
  _check_int("capacity", capacity, 1)
  _check_int("repetitions", repetitions, 3)
  _check_int("max_heavy_hitters", max_heavy_hitters, 1, optional=True)
  _check_int("max_words_per_user", max_words_per_user, 1, optional=True)
  _check_int("k_anonymity", k_anonymity, 1)
  _check_int("secure_sum_bitwidth", secure_sum_bitwidth, 1, optional=True, high=62)
  _check_int("batch_size", batch_size, 1)
  _check_int("seed", seed, -2**63)
  if string_postprocessor is not None and not callable(string_postprocessor):
    raise error(TypeError, f"{_OP}(string_postprocessor=...)", "must be callable or None.",
                actual=type(string_postprocessor).__name__)
  layout = Layout(_OP, capacity, string_max_bytes, seed=seed, repetitions=repetitions)
  size = _sketch.block_size(max_words_per_user)
  reps, table_size, c = layout.iblt_shape
  block_type = t.StructType([("chunks", t.TensorType(np.int32, [size, layout.num_chunks])),
                             ("counts", t.TensorType(np.int32, [size]))], dict)
  dataset_type = t.SequenceType(t.TensorType(np.str_, [None]))
  sketch_type = t.TensorType(np.int32, list(layout.iblt_shape))
  half_type = t.TensorType(np.int32, [reps, table_size])
  summed_type = t.StructType([(None, sketch_type), (None, half_type), (None, half_type)])

  @computation(dataset_type, result=t.SequenceType(block_type))
  def client_words(dataset):
    """On the host: the client's words, chunked, in blocks."""
    if max_words_per_user is None:
      words, counts = data_processing.get_unique_elements_with_counts(dataset, string_max_bytes)
    elif multi_contribution:
      words, counts = data_processing.get_capped_elements_with_counts(
          dataset, max_words_per_user, batch_size, string_max_bytes)
    else:
      words, counts = data_processing.get_top_elements_with_counts(
          dataset, max_words_per_user, string_max_bytes)
    if not multi_contribution:
      counts = np.ones_like(counts)
    if words.size > _sketch.MAX_WORDS:
      raise error(ValueError, _OP, "a client holds more distinct strings than a sketch takes.",
                  expected=f"at most {_sketch.MAX_WORDS}", actual=words.size,
                  hint="cap them with max_words_per_user")
    return _sketch.blocks(layout.chunker.chunks_of(words), counts, size)

  # Jitted so that the sequential runtime, which runs local computations op by op, runs each
  # as one program too (inside the vectorized runtime's program they are inlined).
  add_block = jax.jit(functools.partial(_sketch.add_block, layout))
  finish = jax.jit(functools.partial(_sketch.finish, layout))

  @computation(t.SequenceType(block_type))
  def client_sketch(words):
    """Compiled: the client's IBLT and its counts table."""
    return finish(words.reduce(_sketch.zero(layout), add_block))

  @computation(t.StructType([(None, sketch_type), (None, half_type), (None, half_type)]),
               t.StructType([(None, sketch_type), (None, half_type), (None, half_type)]))
  @jax.jit
  def add_with_carry(a, b):
    """Tables added in the field, counts' halves with carries."""
    sketch = _field.add(a[0].astype(jnp.uint32), b[0].astype(jnp.uint32), jnp).astype(jnp.int32)
    low = a[1] + b[1]
    return sketch, low & 0xFFFF, a[2] + b[2] + (low >> 16)

  @computation(t.StructType([(None, sketch_type), (None, half_type)]))
  @jax.jit
  def halves(sketch_and_values):
    sketch, values = sketch_and_values
    if secure_sum_bitwidth is not None and secure_sum_bitwidth <= 16:
      return sketch, values, jnp.zeros_like(values)  # One half, range-checked whole.
    return sketch, values & 0xFFFF, values >> 16

  zero = (np.zeros(layout.iblt_shape, np.int32), np.zeros((reps, table_size), np.int32),
          np.zeros((reps, table_size), np.int32))

  @federated_computation(t.FederatedType(t.SequenceType(block_type), CLIENTS))
  def summed_sketches(words):
    """Compiled as one program: every client's sketch, summed at the server."""
    split = fi.federated_map(halves, fi.federated_map(client_sketch, words))
    ones = fi.federated_value(1, CLIENTS)
    if secure_sum_bitwidth is None:
      clients = fi.federated_sum(ones)
      total = fi.federated_aggregate(split, zero, add_with_carry, add_with_carry,
                                     computation(lambda x: x))
      return clients, total
    clients = fi.federated_secure_sum_bitwidth(ones, 1)
    sketch = fi.federated_secure_modular_sum(split[0], layout.field_size)
    high_bits = max(1, min(secure_sum_bitwidth, 31) - 16)
    bits = (secure_sum_bitwidth, 1) if secure_sum_bitwidth <= 16 else (16, high_bits)
    counts = fi.federated_secure_sum_bitwidth(fi.federated_zip((split[1], split[2])), bits)
    return clients, fi.federated_zip((sketch, counts[0], counts[1]))

  decoded_type = t.StructType([(None, t.TensorType(np.str_, [None])),
                               (None, t.TensorType(np.int64, [None])),
                               (None, t.TensorType(np.int64, [None])),
                               (None, t.TensorType(np.int64))])

  @computation(summed_type, result=decoded_type)
  def decode_heavy_hitters(summed):
    """On the host: the table peeled, filtered, ordered."""
    sketch, low, high = summed
    values = np.asarray(low, np.int64) + np.asarray(high, np.int64) * 2**16
    decoded = peel(layout, sketch, values[..., None])
    return _select(decoded.strings, decoded.counts, decoded.values[:, 0],
                   decoded.num_not_decoded, k_anonymity=k_anonymity,
                   max_heavy_hitters=max_heavy_hitters, string_postprocessor=string_postprocessor)

  @federated_computation(t.FederatedType(dataset_type, CLIENTS))
  def one_round_computation(examples):
    # The body runs in Python at every call (its values hold strings), so this is the time
    # the round begins.
    round_timestamp = fi.federated_value(np.int64(time.time()), SERVER)
    clients, summed = summed_sketches(fi.federated_map(client_words, examples))
    decoded = fi.federated_map(decode_heavy_hitters, summed)
    return fi.federated_zip(ServerOutput(
        clients=clients, heavy_hitters=decoded[0], heavy_hitters_unique_counts=decoded[1],
        heavy_hitters_counts=decoded[2], num_not_decoded=decoded[3],
        round_timestamp=round_timestamp))

  return one_round_computation


def _select(strings: np.ndarray, unique_counts: np.ndarray, counts: np.ndarray,
           num_not_decoded: int, *, k_anonymity: int = 1, max_heavy_hitters: Optional[int] = None,
           string_postprocessor: Optional[Callable] = None) -> tuple:
  """The decoded heavy hitters as the server returns them: those sent by at least
  `k_anonymity` clients, ordered by count (largest first, then by bytes), the first
  `max_heavy_hitters`, postprocessed. Returns `(strings, unique_counts, counts,
  num_not_decoded)`."""
  kept = unique_counts >= k_anonymity
  strings, unique_counts, counts = strings[kept], unique_counts[kept], counts[kept]
  order = np.lexsort((strings.astype("S"), -counts)) if strings.size else np.zeros(0, int)
  if max_heavy_hitters is not None:
    order = order[:max_heavy_hitters]
  strings, unique_counts, counts = strings[order], unique_counts[order], counts[order]
  if string_postprocessor is not None:
    processed = np.asarray(string_postprocessor(strings))
    if processed.shape != strings.shape:
      raise error(ValueError, f"{_OP}(string_postprocessor=...)", "the postprocessor must "
                  "return one string per string.", expected=strings.shape, actual=processed.shape)
    strings = processed
  return (strings, unique_counts.astype(np.int64), counts.astype(np.int64),
          np.int64(num_not_decoded))
