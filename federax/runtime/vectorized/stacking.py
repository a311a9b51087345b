"""Client data into the program: client values stacked, sequences padded, large cohorts streamed.

This is the vectorized runtime's `Representation` for `federax.runtime._convert`: a list of
client values becomes arrays with a leading client axis, a sequence a `PaddedSequence` (its
elements padded to a bucketed length, with a mask), and a cohort of client datasets over
`STREAM_BYTES` padded a `StreamedClients` stand-in that the program reads a chunk at a time.
"""

from __future__ import annotations

import collections
import functools
import math
from typing import Any, Optional

import jax
import numpy as np

from federax.core import types as t
from federax.core.datasets import CohortDataset, PaddableDataset, StackableDataset
from federax.core.placements import SERVER
from federax.runtime import _convert
from federax.runtime.padding import (PaddedSequence, RaggedError, aligned_empty, bucket, pad_rows,
                                     pad_to, row_leaves, stack, zeros_like_type)
from federax.runtime.vectorized import streaming
from federax.runtime.vectorized.plan import Plan
from federax.runtime.vectorized.read_ahead import ReadAhead, payload_bytes

_IMPLEMENTS: dict[tuple[type, type], bool] = {}


def _implements(x: Any, protocol: type) -> bool:
  """`isinstance(x, protocol)`, decided once per class: a protocol check inspects every hook,
  and a call checks each client's dataset."""
  key = (type(x), protocol)
  if key not in _IMPLEMENTS:
    _IMPLEMENTS[key] = isinstance(x, protocol)
  return _IMPLEMENTS[key]


def _stackable(x: Any) -> bool:
  return _implements(x, StackableDataset)


def _paddable(x: Any) -> bool:
  return _implements(x, PaddableDataset)


STREAM_BYTES = 2**25
"""Padded size of a cohort's client datasets from which the program reads them a chunk at a
time rather than taking them stacked (`streaming`). Below it the whole stack is small, and
reading it in one go costs less than the thread hand-offs of reading it in parts (FedAvg
round, linear 784->10 model, 2 cores: 10 clients, 18 MB, 0.016 s stacked against 0.017-0.020 s
streamed; 100 clients, 180 MB, 0.26 s against 0.16-0.18 s)."""


KEEP_COMPILED = ("make elements one shape (Dataset.masked_batch, or batch(..., "
                 "drop_remainder=True)) to keep the compiled path")


class Unstackable(Exception):
  """A call's client data cannot be stacked (a `RaggedError` while stacking it), or its batches
  of different sizes reached code that does not mask padded rows (`federax.core.rows`), so the
  call runs client by client.

  Attributes:
    why: why, for the fallback's warning.
    hint: what to change, or None.
  """

  def __init__(self, why: str, hint: Optional[str] = None):
    super().__init__(why)
    self.why, self.hint = why, hint


KEPT_READ_BYTES = 2**28
"""The largest cohort kept between calls that its datasets did not ask to keep (`cache()`):
256 MB, as `read_ahead.READ_AHEAD_BYTES`."""


class CohortCache:
  """The last few cohorts of client datasets, stacked, padded and on the device, by the
  identity of the dataset objects, so that the same clients next round skip the reading, the
  checks, the copy and the transfer.

  Only cohorts read as read-only arrays are kept: a read gives those when every read gives the
  same ones (`Dataset.cache()`'s `to_stacked()`, or a cohort read at once from read-only
  sources, `CohortDataset.to_padded_cohort`). A cohort whose datasets asked to be kept
  (`cache()`) is kept when first read; another only when it comes again within the next
  `size` calls to `put` (a training loop's), and only up to `KEPT_READ_BYTES`, so that a loop
  over ever new cohorts holds none of them.
  """

  def __init__(self, size: int = 4):
    self.size = size
    self._entries: list = []  # (key, datasets, payload), most recent last.
    self._offered = collections.deque(maxlen=size)  # Keys of cohorts read but not kept.

  @staticmethod
  def key(values: list, member_type: t.Type, per_doubling: int, pad_rows: bool = True):
    if not isinstance(member_type, t.SequenceType) or not all(
        _stackable(v) for v in values):
      return None
    return (tuple(map(id, values)), member_type, per_doubling, pad_rows)

  def get(self, key) -> Optional[Any]:
    for i, (k, _, payload) in enumerate(self._entries):
      if k == key:  # The entry holds the datasets, so their ids cannot have been reused.
        self._entries.append(self._entries.pop(i))
        return payload
    return None

  def put(self, key, values: list, members: list, payload: Any, asked: bool = True) -> Any:
    """`payload` kept, on the device, if `members` (what was read) are read-only and, unless
    the datasets `asked` to be kept, the cohort came before and is small enough; else
    `payload` as it is."""
    leaves = [x for m in members for x in jax.tree_util.tree_leaves((m.elements, m.rows))]
    if not all(isinstance(x, np.ndarray) and not x.flags.writeable for x in leaves):
      return payload
    if not asked:
      if key not in self._offered:  # An id reused since only keeps a cohort it need not.
        self._offered.append(key)
        return payload
      if payload_bytes(payload) > KEPT_READ_BYTES:
        return payload
    payload = jax.device_put(payload)
    self._entries = self._entries[-(self.size - 1):] if self.size > 1 else []
    self._entries.append((key, list(values), payload))
    return payload


class Stacked:
  """Vectorized representation: client values stacked, sequences padded and masked.

  With `streams`, a cohort of client datasets over `STREAM_BYTES` padded is not stacked here: it
  becomes a `StreamedClients` stand-in that the program reads one chunk at a time. `lengths`
  holds, per sequence type, the longest padded length so far (the plan's `grow_only`).
  With `pad_rows`, elements that are batches of different sizes (`batch(20)`'s short last
  one) are padded with zero rows and a row mask (`PaddedSequence.rows`); `padded` records
  where, for messages. With `read_ahead`, a cohort of datasets that a loop passes again is
  read for the next call while this one computes (`read_ahead`).
  """

  def __init__(self, plan: Optional[Plan] = None, cohorts: Optional[CohortCache] = None,
               streams: Optional[streaming.Streams] = None, lengths: Optional[dict] = None,
               pad_rows: bool = True, read_ahead: Optional[ReadAhead] = None):
    self.plan = plan
    self.cohorts = cohorts
    self.per_doubling = plan.per_doubling if plan else 8
    self.streams = streams if plan and plan.stream else None
    self.chunk = (plan.chunk_size or 0) if plan else 0
    self.lengths = lengths if plan and plan.grow_only else None
    self.pad_rows = pad_rows
    self.read_ahead = read_ahead
    self.notes: list[str] = []
    self.padded: list[tuple[str, Any, Any]] = []  # (where, rows, mask) of row-padded sequences.

  def padded_length(self, seq_type: t.SequenceType, longest: int) -> int:
    """The bucketed length for a cohort whose longest sequence has `longest` elements."""
    length = bucket(longest, self.per_doubling)
    if self.lengths is not None:
      length = self.lengths[seq_type] = max(length, self.lengths.get(seq_type, 0))
    return length

  def whole_clients(self, values: list, member_type: t.Type, where: str, op: str) -> Optional[Any]:
    """A cohort taken whole: cached on the device, or streamed; None to stack it member by
    member. Why it is stacked or streamed goes to `notes` (`fx.runtime.explain`)."""
    if not values or not isinstance(member_type, t.SequenceType):
      return None
    if self.cohorts is not None:
      cached = self.cohorts.get(CohortCache.key(values, member_type, self.per_doubling,
                                                self.pad_rows))
      if cached is not None:
        self.notes.append(f"{where}: the cohort kept from an earlier call, already on the device")
        if cached.rows is not None:
          self.padded.append((where, cached.rows, cached.mask))
        return cached
    ahead = self._read_ahead(values, member_type, where)
    if ahead is not None:
      return ahead
    if self.streams is not None and len(values) > 1:
      streamed = self._stream(values, member_type, where, op)
      if not isinstance(streamed, str):
        self.notes.append(f"{where}: streamed, {streamed.chunk} clients a read")
        return streamed
      self.notes.append(f"{where}: stacked ({streamed})")
    gathered = self._gathered(values, member_type, where, op)
    if gathered is not None:
      self.notes.append(f"{where}: read at once into the cohort's arrays (to_padded_cohort)")
      return self._keep(values, member_type, where, gathered, [gathered], asked=False)
    return None

  def _gathered(self, values: list, member_type: t.SequenceType, where: str, op: str
                ) -> Optional[PaddedSequence]:
    """The cohort read at once, straight into its padded arrays (`CohortDataset`); None to
    read it dataset by dataset (which checks each dataset's element type, as this does)."""
    if not all(type(v) is type(values[0]) for v in values) or not _implements(
        values[0], CohortDataset):
      return None
    read = type(values[0]).to_padded_cohort(
        values, lambda longest: self.padded_length(member_type, longest))
    if read is None:
      return None
    for i, v in enumerate(values):  # As `convert.argument` checks each member read alone.
      _convert.sequence_elements(v, member_type, f"{where}[client {i}]", op)
    stacked, rows, lengths = read
    flags = row_leaves(member_type.element)
    if rows is not None and not (self.pad_rows and any(flags)):
      return None  # Read one by one, they say why the padded batches cannot run.
    elements = _convert.local(stacked, _leading(_leading(member_type.element)), where, "dataset")
    shapes = [np.shape(x) for x in jax.tree_util.tree_leaves(elements)]
    if rows is not None and any(row and s[:3] != rows.shape for s, row in zip(shapes, flags)):
      raise RaggedError(f"{where}: to_padded_cohort() gave rows {rows.shape} that do not fit "
                        f"its leaves {shapes}")
    mask = np.arange(shapes[0][1])[None, :] < np.asarray(lengths)[:, None]
    return PaddedSequence(elements, mask, rows)

  def _read_ahead(self, values: list, member_type: t.Type, where: str) -> Optional[Any]:
    """The cohort read during the call before, if it was read for this one at this length."""
    key = None if self.read_ahead is None else CohortCache.key(
        values, member_type, self.per_doubling, self.pad_rows)
    payload = None if key is None else self.read_ahead.take(key)
    if payload is None:
      return None
    longest = int(payload.mask.sum(axis=1).max(initial=0))
    if payload.mask.shape[1] != self.padded_length(member_type, longest):
      return None  # A longer cohort since grew the padded length: read it again.
    self.notes.append(f"{where}: read during the call before (the same datasets)")
    if payload.rows is not None:
      self.padded.append((where, payload.rows, payload.mask))
    self.read_ahead.note(key, values, self._reader(values, member_type, where), payload)
    return payload

  def _reader(self, values: list, member_type: t.SequenceType, where: str):
    """How to read and stack the cohort again, as `convert.argument` and `clients` do."""
    def read() -> PaddedSequence:
      gathered = self._gathered(values, member_type, where, "read ahead")
      if gathered is not None:
        return gathered
      members = [self.sequence(v, member_type, f"{where}[client {i}]")
                 for i, v in enumerate(values)]
      return _stack_clients(members, member_type, where, self.padded_length, self.pad_rows)
    return read

  def _stream(self, values: list, member_type: t.SequenceType, where: str,
              op: str) -> streaming.StreamedClients | str:
    """A stand-in for the datasets in `values`, checked now and read by the program, or why
    the cohort is stacked instead."""
    if not all(_stackable(v) for v in values):
      return "not all clients are datasets"
    lengths = [v.cardinality() for v in values]
    shape = _element_shapes(member_type.element, values[0].element_spec)
    if min(lengths) < 0 or shape is None:
      return "a dataset's length or element shapes are unknown until it is read"
    if max(lengths) == 0:
      return "every dataset is empty"
    length = self.padded_length(member_type, max(lengths))
    avals = PaddedSequence(
        jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct((length,) + s[0], s[1]),
                               shape, is_leaf=_is_shape),
        jax.ShapeDtypeStruct((length,), np.dtype(bool)))
    size = len(values) * sum(math.prod(a.shape) * a.dtype.itemsize
                             for a in jax.tree_util.tree_leaves(avals))
    if size < STREAM_BYTES:
      return f"{size / 2**20:.1f} MB padded, under STREAM_BYTES ({STREAM_BYTES / 2**20:.0f} MB)"
    for i, v in enumerate(values):
      _convert.sequence_elements(v, member_type, f"{where}[client {i}]", op)
    if any(_element_shapes(member_type.element, v.element_spec) != shape for v in values[1:]):
      return "the clients' element shapes differ"
    # Cached datasets (read-only arrays) are kept in memory by the user's choice, and the
    # cohort cache keeps them stacked on the device: no reads at all from the second round.
    first = self.sequence(values[0], member_type, f"{where}[client 0]")
    if not any(x.flags.writeable for x in jax.tree_util.tree_leaves(first.elements)):
      return "cached datasets: the cohort cache keeps them on the device"
    peeked = {0: first}  # Read once: the program's first read takes it.

    def stack_chunk(chunk: list, start: int) -> PaddedSequence:
      """Reads and pads one client at a time into the chunk's arrays (one copy in memory)."""
      padded = jax.tree_util.tree_map(lambda a: np.zeros((len(chunk),) + a.shape, a.dtype), avals)
      out = jax.tree_util.tree_leaves(padded.elements)
      for i, v in enumerate(chunk):
        client = f"{where}[client {start + i}]"
        seq = peeked.pop(start + i, None) or self.sequence(v, member_type, client)
        real = seq.mask.shape[0]
        leaves = jax.tree_util.tree_leaves(seq.elements)
        if real > length or any(x.shape[1:] != o.shape[2:] for x, o in zip(leaves, out)):
          raise RaggedError(f"{client}: the dataset gave {real} elements of shapes "
                            f"{[x.shape[1:] for x in leaves]}, not at most {length} of "
                            f"{[o.shape[2:] for o in out]} as its element_spec and "
                            "cardinality() said.")
        for o, x in zip(out, leaves):
          o[i, :real] = x
        padded.mask[i, :real] = True
      return padded

    return self.streams.open(where, values, stack_chunk, avals,
                             streaming.read_size(len(values), self.chunk))

  def clients(self, members: list, member_type: t.Type, where: str, values: list) -> Any:
    if not members:
      return zeros_like_type_payload(member_type, (0,))
    payload = _stack_clients(members, member_type, where, self.padded_length, self.pad_rows)
    return self._keep(values, member_type, where, payload, members)

  def _keep(self, values: list, member_type: t.Type, where: str, payload: Any,
            members: Optional[list] = None, asked: bool = True) -> Any:
    """A stacked cohort, noted for messages, and kept on the device if what was read of it
    (`members`) is read-only, the same every read (`CohortCache`; `asked`: by `cache()`), or
    else read again for the next call (`read_ahead`)."""
    if isinstance(payload, PaddedSequence) and payload.rows is not None:
      self.padded.append((where, payload.rows, payload.mask))
    key = CohortCache.key(values, member_type, self.per_doubling, self.pad_rows)
    kept = payload if key is None or self.cohorts is None or members is None else (
        self.cohorts.put(key, values, members, payload, asked))
    if kept is payload and self.read_ahead is not None:  # Not cached: read again next call.
      self.read_ahead.note(key, values, self._reader(values, member_type, where), payload)
    return kept

  def sequence(self, elements: Any, seq_type: t.SequenceType, where: str) -> PaddedSequence:
    rows = None
    if isinstance(elements, list):
      if not elements:
        return PaddedSequence(zeros_like_type(seq_type.element, (0,)), np.zeros(0, bool))
      try:
        stacked = stack(elements, where)
      except RaggedError:
        if not self.pad_rows:
          raise
        stacked, rows = pad_rows(elements, row_leaves(seq_type.element), where)
    else:
      if not _stackable(elements):
        return self.sequence(self._read(elements, seq_type, where), seq_type, where)
      try:
        if self.pad_rows and _paddable(elements) and any(row_leaves(seq_type.element)):
          raw, rows = elements.to_padded_stacked()
        else:
          raw = elements.to_stacked()
      except ValueError as e:  # A ragged final batch, for example.
        if not self.pad_rows:
          raise RaggedError(f"{where}: {e}") from None
        return self.sequence(self._read(elements, seq_type, where), seq_type, where)
      stacked = _convert.local(raw, _leading(seq_type.element), where, "dataset")
    length = np.shape(jax.tree_util.tree_leaves(stacked)[0])[0] if jax.tree_util.tree_leaves(
        stacked) else 0
    # Unpadded: clients() pads all clients' sequences together in one copy, and
    # pad_standalone() pads sequences that are not at CLIENTS.
    return PaddedSequence(stacked, np.ones(length, bool), _rows_of(rows, stacked, seq_type))

  @staticmethod
  def _read(elements: Any, seq_type: t.SequenceType, where: str) -> list:
    """A dataset's elements one by one, as checked payloads."""
    return [_convert.local(e, seq_type.element, f"{where}[element {i}]", "dataset")
            for i, e in enumerate(elements)]

  def client_list(self, payload: Any, member_type: t.Type, n: int) -> list:
    host = payload if _convert.is_traced(payload) else jax.device_get(payload)
    return [jax.tree_util.tree_map(lambda x, i=i: x[i], host) for i in range(n)]

  def sequence_list(self, payload: PaddedSequence, seq_type: t.SequenceType) -> list:
    if _convert.is_traced(payload):
      raise _convert.ArgumentError(
          "federated computation", "a result holding a sequence cannot leave a call made under a "
          "JAX transformation (its length would be traced).", actual=seq_type,
          hint="return the sequence's reduction, or call the computation outside jax.jit")
    elements, mask, rows = jax.device_get((payload.elements, payload.mask, payload.rows))
    if rows is None:
      return [jax.tree_util.tree_map(lambda x, j=j: x[j], elements)
              for j in np.flatnonzero(np.asarray(mask))]
    leaves, treedef = jax.tree_util.tree_flatten(elements)
    flags = row_leaves(seq_type.element)
    return [treedef.unflatten([x[j][rows[j]] if row else x[j] for x, row in zip(leaves, flags)])
            for j in np.flatnonzero(np.asarray(mask))]


def _rows_of(rows: Optional[np.ndarray], stacked: Any, seq_type: t.SequenceType
             ) -> Optional[np.ndarray]:
  """A dataset's row mask, checked against its padded leaves (`[L, B, ...]` for `rows [L, B]`)."""
  if rows is None:
    return None
  rows = np.asarray(rows, bool)
  leaves = jax.tree_util.tree_leaves(stacked)
  if any(row and np.shape(x)[:2] != rows.shape
         for x, row in zip(leaves, row_leaves(seq_type.element))):
    raise RaggedError(f"to_padded_stacked() gave rows {rows.shape} that do not fit its leaves "
                      f"{[np.shape(x) for x in leaves]}")
  return rows


def _is_shape(x) -> bool:
  return isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], np.dtype)


def _element_shapes(element_type: t.Type, spec: Any) -> Optional[Any]:
  """(shape, dtype) of each leaf of one element as the runtime holds it (tuples, the declared
  dtypes, the dataset's shapes), or None if a dimension is unknown."""
  from federax.core.type_conversions import to_type

  def walk(declared: t.Type, actual: t.Type):
    if isinstance(declared, t.TensorType):
      if not isinstance(actual, t.TensorType) or None in actual.shape:
        return None
      return (tuple(actual.shape), np.dtype(declared.dtype))
    parts = tuple(walk(d, a) for d, a in zip(declared, actual))
    return None if None in parts else parts

  try:
    return walk(element_type, t.aligned_like(element_type, to_type(spec)))
  except (TypeError, ValueError):  # Not a structure of tensors: the type checks will say why.
    return None


@functools.lru_cache(maxsize=256)
def _leading(ts: t.Type) -> t.Type:
  """The type of a stacked payload: one unknown leading dimension on every tensor (once per
  type: a call stacks every client's dataset against it)."""
  if isinstance(ts, t.TensorType):
    return t.TensorType(ts.dtype, (None,) + tuple(ts.shape))
  return t.StructType([(n, _leading(e)) for n, e in ts.items()], ts.container_type)


def _stack_clients(members: list, member_type: t.Type, where: str,
                   padded_length=lambda _, longest: bucket(longest), pad_rows: bool = True
                   ) -> Any:
  """Stacks client payloads; sequences are padded to one bucketed length as they are copied,
  and (`pad_rows`) their batches to the clients' largest, with a row mask."""
  if isinstance(member_type, t.SequenceType):
    lengths = [m.mask.shape[0] for m in members]
    length = padded_length(member_type, max(lengths))
    filled = [m for m, n in zip(members, lengths) if n]
    if not filled:
      return PaddedSequence(zeros_like_type(member_type.element, (len(members), 0)),
                            np.zeros((len(members), 0), bool))
    flags = row_leaves(member_type.element)
    widths = [_batch_width(m, flags) for m in filled]
    width = max(widths) if None not in widths and (
        len(set(widths)) > 1 or any(m.rows is not None for m in filled)) else None
    skip = 2 if width is not None else 1  # Leading dimensions a client's elements may differ in.
    shapes = {tuple(np.shape(x)[skip if row else 1:] for x, row in
                    zip(jax.tree_util.tree_leaves(m.elements), flags)) for m in filled}
    if len(shapes) > 1:
      raise RaggedError(f"{where}: client sequences have elements of different shapes "
                        f"{sorted(shapes)[:3]}")
    if width is not None and not pad_rows:
      raise RaggedError(f"{where}: client sequences have batches of different sizes "
                        f"{sorted(set(widths))}")

    def fill(leaves, row):
      wide = width if row and width is not None else None
      shape = leaves[0].shape[1:] if wide is None else (wide,) + leaves[0].shape[2:]
      # Not zeroed first: writing each row once (data, then zeros) beats zeroing it all first.
      out = aligned_empty((len(members), length) + shape, leaves[0].dtype)
      for i, (leaf, n) in enumerate(zip(leaves, lengths)):
        if wide is None:
          out[i, :n] = leaf[:n]
        else:
          out[i, :n, :leaf.shape[1]] = leaf[:n]
          out[i, :n, leaf.shape[1]:] = 0
        out[i, n:] = 0
      return out

    template = filled[0].elements
    flat = [jax.tree_util.tree_leaves(m.elements if n else template)
            for m, n in zip(members, lengths)]
    elements = jax.tree_util.tree_structure(template).unflatten(
        [fill([f[k] for f in flat], row) for k, row in enumerate(flags)])
    mask = np.arange(length)[None, :] < np.asarray(lengths)[:, None]
    rows = None
    if width is not None:
      rows = np.zeros((len(members), length, width), bool)
      for i, (m, n) in enumerate(zip(members, lengths)):
        if n:
          real = m.rows if m.rows is not None else True
          rows[i, :n, :_batch_width(m, flags)] = real
    return PaddedSequence(elements, mask, rows)
  if isinstance(member_type, t.StructType):
    return tuple(_stack_clients([m[i] for m in members], et, where, padded_length, pad_rows)
                 for i, et in enumerate(member_type))
  return stack(members, where)


def _batch_width(seq: PaddedSequence, flags: tuple) -> Optional[int]:
  """The rows of a client's (padded) batches, or None if its elements have no row leaf."""
  if seq.rows is not None:
    return seq.rows.shape[1]
  sizes = {np.shape(x)[1] for x, row in zip(jax.tree_util.tree_leaves(seq.elements), flags)
           if row}
  return sizes.pop() if len(sizes) == 1 else None


def pad_standalone(payload: Any, ts: Optional[t.Type]) -> Any:
  """Pads sequences not placed at CLIENTS to a bucketed length (those are padded already)."""
  if ts is None:
    return payload
  if isinstance(ts, t.SequenceType):
    return pad_to(payload, bucket(payload.mask.shape[0]))
  if isinstance(ts, t.FederatedType):
    if ts.placement is SERVER or ts.all_equal:
      return pad_standalone(payload, ts.member)
    return payload
  if isinstance(ts, t.StructType) and isinstance(payload, tuple):
    return tuple(pad_standalone(p, et) for p, et in zip(payload, ts))
  return payload


def zeros_like_type_payload(ts: t.Type, leading: tuple) -> Any:
  if isinstance(ts, t.SequenceType):
    return PaddedSequence(zeros_like_type(ts.element, leading + (0,)), np.zeros(leading + (0,), bool))
  if isinstance(ts, t.StructType):
    return tuple(zeros_like_type_payload(e, leading) for e in ts)
  return zeros_like_type(ts, leading)


