"""A client's IBLT as an array program: blocks of chunked words hashed and scattered into the
table in one step each, in uint32 (JAX's default integers; x64 stays off).

The vectorized runtime maps `client_sketch` over the client axis, so a cohort's sketches are
one compiled program; the words of a client arrive in blocks of `block_size` (the last one
padded with count-0 words, which add nothing), folded by `Sequence.reduce`. While folding, the
table holds plain sums of 12-bit pieces of each field (`LIMB_BITS`), which cannot overflow for
up to `MAX_WORDS` distinct words per client, so a block costs its own scatter only; the sums are
reduced into the field GF(2**31 - 1) once, at the end (`finish`).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from federax.analytics.heavy_hitters.iblt import _field
from federax.analytics.heavy_hitters.iblt.iblt_lib import Layout

MAX_BLOCK = 1024
"""The most words a block holds (fewer when `max_words_per_user` is smaller). Clients are
folded side by side, so a step costs the longest client's block for all of them: large blocks
mean few steps (on 715 Shakespeare clients, blocks of 1024 took 0.8x the time of 256)."""

LIMB_BITS = 12
MAX_WORDS = 2**(32 - LIMB_BITS)
"""The most distinct words a client may send: each piece is below `2**12`, so a cell's sum of
pieces stays below `2**32`."""


def block_size(max_words_per_user: Any) -> int:
  """Words per block: `MAX_BLOCK`, or the power of two that holds `max_words_per_user`."""
  if max_words_per_user is None:
    return MAX_BLOCK
  return int(min(MAX_BLOCK, 1 << max(0, int(max_words_per_user) - 1).bit_length()))


def blocks(chunks: np.ndarray, counts: np.ndarray, size: int) -> list[dict[str, np.ndarray]]:
  """A client's chunked words `int[n, c]` and counts `int[n]` as blocks of `size` words:
  `[{'chunks': int32[size, c], 'counts': int32[size]}, ...]`, padded with count-0 words."""
  n = chunks.shape[0]
  padded = -(-n // size) * size
  all_chunks = np.zeros((padded, chunks.shape[1]), np.int32)
  all_chunks[:n] = chunks
  all_counts = np.zeros(padded, np.int32)
  all_counts[:n] = counts
  return [{"chunks": all_chunks[i:i + size], "counts": all_counts[i:i + size]}
          for i in range(0, padded, size)]


def _width(layout: Layout) -> int:
  """Columns of the folding table: two pieces per chunk (chunks are below `2**24`), the count,
  three pieces of the check (below `2**31`), the value."""
  return 2 * layout.num_chunks + 5


def zero(layout: Layout) -> Any:
  """The empty folding table: `uint32[repetitions * table_size, 2 * num_chunks + 5]`."""
  return jnp.zeros((layout.repetitions * layout.table_size, _width(layout)), jnp.uint32)


def add_block(layout: Layout, table: Any, block: Any) -> Any:
  """`table` plus one block of words: each real word (count > 0) adds the pieces of its chunks,
  1 and the pieces of its check to its cells (the IBLT counts clients), and its count to the
  value column (TFF's `IbltTensorEncoder` with `value_shape=(1,)`). Padding words are sent
  out of the table and dropped: clients are padded to the longest one, so most words of a
  cohort can be padding, and a dropped update costs less than adding zeros (2-3x here)."""
  mask = (1 << LIMB_BITS) - 1
  chunks = jnp.asarray(block["chunks"]).astype(jnp.uint32)
  counts = jnp.asarray(block["counts"])
  check = layout.checks(chunks, jnp)[:, None]
  fields = jnp.concatenate([
      chunks & mask, chunks >> LIMB_BITS, jnp.ones_like(check), check & mask,
      (check >> LIMB_BITS) & mask, check >> (2 * LIMB_BITS),
      counts.astype(jnp.uint32)[:, None]], axis=1)
  rows = layout.repetitions * layout.table_size
  offsets = jnp.arange(layout.repetitions, dtype=jnp.int32) * layout.table_size
  cells = jnp.where((counts > 0)[:, None], layout.indices(chunks, jnp) + offsets, rows)
  updates = jnp.broadcast_to(fields[:, None, :], cells.shape + fields.shape[-1:])
  return table.at[cells.reshape(-1)].add(updates.reshape(-1, fields.shape[-1]), mode="drop")


def _shifted(x: Any, k: int) -> Any:
  """`x * 2**k mod p` for uint32 `x`: with `x = a * 2**(31-k) + b`, `x * 2**k = a + b * 2**k`."""
  return _field.reduce((x >> (31 - k)) + ((x & ((1 << (31 - k)) - 1)) << k), jnp)


def finish(layout: Layout, table: Any) -> tuple[Any, Any]:
  """The folded table as the client's `(sketch int32[repetitions, table_size, num_chunks + 2],
  values int32[repetitions, table_size])`, its fields reduced into GF(2**31 - 1)."""
  c = layout.num_chunks
  low, high = table[:, :c], table[:, c:2 * c]
  chunks = _field.add(_field.reduce(low, jnp), _shifted(high, LIMB_BITS), jnp)
  count = _field.reduce(table[:, 2 * c], jnp)
  check = _field.add(_field.add(_field.reduce(table[:, 2 * c + 1], jnp),
                                _shifted(table[:, 2 * c + 2], LIMB_BITS), jnp),
                     _shifted(table[:, 2 * c + 3], 2 * LIMB_BITS), jnp)
  sketch = jnp.concatenate([chunks, count[:, None], check[:, None]], axis=1)
  return (sketch.astype(jnp.int32).reshape(layout.iblt_shape),
          table[:, 2 * c + 4].astype(jnp.int32).reshape(layout.iblt_shape[:2]))
