"""Client datasets read by the compiled program as it reaches them, not stacked before the call.

The vectorized runtime hands a large cohort of client datasets (over `STREAM_BYTES` padded,
not cached) to the program as a `StreamedClients` stand-in: shapes and dtypes, no arrays. A
`federated_map` over it asks the host for its clients through `jax.experimental.io_callback`
while it runs, a chunk at a time (at most `chunk_size` clients, at most a quarter of the
cohort). Only then are those datasets read, padded and stacked, and a background thread reads
the next chunk while the program computes on this one. So host and device hold a few chunks of
client data, whatever the cohort; reading overlaps computing; and the computation is still one
compiled program. Datasets are read on that background thread: their pipelines (a `map`'s
function, for one) must not depend on the calling thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from federax.runtime.padding import PaddedSequence


class StreamedClients:
  """The payload of `{T*}@CLIENTS` whose datasets stay on the host until the program reads them.

  It is a pytree node without leaves: `jax.jit` sees only its static description (the slot,
  the number of clients, the clients per read `chunk` and the padded shapes of one client's
  sequence, `avals`), so a program compiled for one cohort serves every cohort of the same
  shapes.
  """

  def __init__(self, streams: Streams, slot: str, n: int, chunk: int, avals: PaddedSequence):
    self.streams, self.slot, self.n, self.chunk, self.avals = streams, slot, n, chunk, avals

  def _key(self):
    return (id(self.streams), self.slot, self.n, self.chunk, self.avals)

  def __eq__(self, other):
    return isinstance(other, StreamedClients) and self._key() == other._key()

  def __hash__(self):
    return hash(self._key())

  def __repr__(self):
    return f"StreamedClients({self.slot}, n={self.n})"

  def read(self, start, size: int) -> PaddedSequence:
    """Clients `[start, start + size)` as a `PaddedSequence` with leading axes `[size, L]`;
    `start` may be traced (a loop index)."""
    leaves, treedef = jax.tree_util.tree_flatten(self.avals)
    shapes = [jax.ShapeDtypeStruct((size,) + a.shape, a.dtype) for a in leaves]
    read = lambda first: self.streams.read(self.slot, int(first), size)
    return treedef.unflatten(io_callback(read, shapes, start, ordered=False))


jax.tree_util.register_pytree_node(StreamedClients, lambda s: ((), s),
                                   lambda s, _: s)


class _Stream:
  """One streamed argument: its datasets, how to stack some of them, and its reads: the chunks
  `map_chunks` asks for, in loop order, and how often each was read (a computation may map
  over the same clients twice)."""

  def __init__(self, values: list, stack: Callable, avals: list, chunk: int):
    self.values, self.stack, self.avals = values, stack, avals
    # Reads of one size: the last one filled up with empty clients (`Streams._stack`).
    self.chunks = [(i * chunk, chunk) for i in range(-(-len(values) // chunk))]
    self.reads = dict.fromkeys(self.chunks, 0)
    self.ahead: dict = {}  # (start, size) -> Future of a read made in advance.

  def upcoming(self, read: tuple) -> Optional[tuple]:
    """The chunk the loop reads after `read` if this pass has not read it yet."""
    position = self.chunks.index(read) + 1
    following = self.chunks[position] if position < len(self.chunks) else None
    if following is None or following in self.ahead or self.reads[following] >= self.reads[read]:
      return None
    return following


_prefetcher: Optional[ThreadPoolExecutor] = None


def _pool() -> ThreadPoolExecutor:
  global _prefetcher
  if _prefetcher is None:
    _prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="federax-prefetch")
  return _prefetcher


class Streams:
  """The streamed client datasets of the call in flight, by slot (the argument's path).

  The compiled program reads chunks of clients through `read` while it runs. While it computes
  on one, a background thread stacks the next (so at most two chunks are on the host). An
  error in a read (a dataset that does not produce what its `element_spec` and
  `cardinality()` promised) is kept and raised by `close` after the call, since an exception
  cannot cross the callback.
  """

  def __init__(self):
    self._open: dict[str, _Stream] = {}
    self._error: Optional[BaseException] = None

  def open(self, slot: str, values: list, stack: Callable[[list, int], PaddedSequence],
           avals: PaddedSequence, chunk: int) -> StreamedClients:
    """Registers `values` (one dataset per client), to be read `chunk` clients at a time, and
    starts reading the first chunk; `stack(values[a:b], a)` pads and stacks some of them to
    `avals` (one client's element and mask shapes)."""
    stream = _Stream(values, stack, jax.tree_util.tree_leaves(avals), chunk)
    self._open[slot] = stream
    self._read_ahead(stream, stream.chunks[0])
    return StreamedClients(self, slot, len(values), chunk, avals)

  def read(self, slot: str, start: int, size: int) -> list:
    stream = self._open[slot]
    ahead = stream.ahead.pop((start, size), None)
    leaves = ahead.result() if ahead is not None else self._stack(stream, start, size)
    stream.reads[(start, size)] += 1
    upcoming = stream.upcoming((start, size))
    if upcoming is not None:
      self._read_ahead(stream, upcoming)
    return leaves

  def _read_ahead(self, stream: _Stream, chunk: tuple) -> None:
    if self._error is None:
      stream.ahead[chunk] = _pool().submit(self._stack, stream, *chunk)

  def _stack(self, stream: _Stream, start: int, size: int) -> list:
    """The chunk's leaves (`stack` fills arrays of the promised shapes), or zeros after an
    error, which `close` raises once the program returns. Past the last client, empty clients
    (zeros, mask all False) fill the last read up to `size`: their results are dropped."""
    if self._error is None:
      try:
        values = stream.values[start:start + size]
        leaves = jax.tree_util.tree_leaves(stream.stack(values, start))
        return [np.concatenate([x, np.zeros((size - len(values),) + x.shape[1:], x.dtype)])
                if len(values) < size else x for x in leaves]
      except Exception as e:  # An exception cannot cross the callback.
        self._error = e
    return [np.zeros((size,) + a.shape, a.dtype) for a in stream.avals]

  def close(self) -> None:
    """Forgets the call's datasets (waiting for reads in flight); raises the first error."""
    for stream in self._open.values():
      wait(list(stream.ahead.values()))
    self._open.clear()
    error, self._error = self._error, None
    if error is not None:
      raise error


def is_streamed(x: Any) -> bool:
  return isinstance(x, StreamedClients)


def holds_streams(payload: Any) -> bool:
  return any(map(is_streamed, jax.tree_util.tree_leaves(payload, is_leaf=is_streamed)))


def one_client(payload: Any) -> Any:
  """Shapes and dtypes of one client's part of `payload` (for tracing a client's function)."""
  return jax.tree_util.tree_map(
      lambda x: x.avals if is_streamed(x) else
      jax.ShapeDtypeStruct(jnp.shape(x)[1:], jnp.result_type(x)),
      payload, is_leaf=is_streamed)


def _split(payload: Any):
  leaves, treedef = jax.tree_util.tree_flatten(payload, is_leaf=is_streamed)
  resident = [x for x in leaves if not is_streamed(x)]

  def clients(start, size: int, resident_part: list) -> Any:
    """The payload of clients `[start, start + size)`: streamed parts read, the others given."""
    part = iter(resident_part)
    return treedef.unflatten([x.read(start, size) if is_streamed(x) else next(part)
                              for x in leaves])

  # Every stand-in of one call has the call's client count and read size.
  return resident, clients, next(x.chunk for x in leaves if is_streamed(x))


READS_PER_COHORT = 4
"""A cohort is read in at least this many parts, so that reading overlaps computing."""


def read_size(n: int, chunk: int) -> int:
  """Clients per read: at most `chunk` (memory), at most a `READS_PER_COHORT`th of the cohort
  (overlap), as even as the reads allow (`even_chunks`). Reading one client at a time costs
  more in callbacks and thread switches than it hides: 3.1 s against 1.5 s a round at 1,000
  clients (`docs/architecture.md`)."""
  return even_chunks(n, max(1, min(chunk, -(-n // READS_PER_COHORT))))[1]


def even_chunks(n: int, most: int) -> tuple[int, int]:
  """(steps, clients a step): `n` clients in as few steps of at most `most` clients as can be,
  of one size, the last step filled up by fewer than `steps` padded clients. A loop over steps
  of one size compiles its body once; a shorter remainder step would be a second copy of it
  in the program (a second compile of the clients' work, seconds for a CNN on CPU).

  Example:
    >>> even_chunks(10, 3), even_chunks(129, 128), even_chunks(1000, 128)
    ((4, 3), (2, 65), (8, 125))
  """
  steps = -(-n // most)
  return steps, -(-n // steps)


def fill(x: jax.Array, rows: int) -> jax.Array:
  """`x` with its last row repeated to `rows` rows (padded clients: their results are dropped,
  and a real client's values keep their computation finite)."""
  extra = rows - jnp.shape(x)[0]
  if not extra:
    return x
  return jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)])


def in_steps(step_fn: Callable, payload: Any, n: int, size: int) -> Any:
  """`step_fn` (over a leading client axis of `size`) on the `n` clients of `payload` in a rolled
  loop of even steps (`even_chunks`), `step_fn(i, part)` for step `i`; the results of the
  padded clients of the last step are dropped."""
  steps = -(-n // size)
  parts = jax.tree_util.tree_map(
      lambda x: jnp.reshape(fill(x, steps * size), (steps, size) + jnp.shape(x)[1:]), payload)
  out = jax.lax.map(lambda args: step_fn(*args), (jnp.arange(steps, dtype=jnp.int32), parts))
  return jax.tree_util.tree_map(
      lambda x: jnp.reshape(x, (steps * size,) + x.shape[2:])[:n], out)


def map_chunks(chunk_fn: Callable, payload: Any, n: int) -> Any:
  """`chunk_fn` (over a leading client axis) on chunks of the streamed clients' read size: a
  rolled loop over reads of one size, each reading its streamed clients (the last read filled
  up with empty clients, the resident values with repeats of the last client's)."""
  resident, clients, chunk = _split(payload)
  return in_steps(lambda i, part: chunk_fn(clients(i * chunk, chunk, part)), resident, n, chunk)
