"""Sparse federated learning: clients download and update only the rows of a large server table
(embedding, per-token weights) that their keys name (`federated_select`), and the server sums
the `(keys, row updates)` by key.

The blocks work inside `fx.federated_computation`s: `select_rows` (server table -> each
client's rows), `sparse_sum` (clients' `(keys, rows)` -> dense sum at the server) and
`build_sparse_round`, one round of sparse FedAvg built from them (TFF's tutorial "Client-
efficient large-model federated learning via federated_select and sparse aggregation").
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import Computation, computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type

_MODES = ("stack", "aggregate")


class SparseRoundOutput(NamedTuple):
  """`build_sparse_round`'s result: the new table and the round's metrics."""

  table: Any
  metrics: Any


def _table_type(where: str, value) -> t.TensorType:
  ts = value.type_signature
  member = ts.member if isinstance(ts, t.FederatedType) else ts
  if not (isinstance(ts, t.FederatedType) and ts.placement is SERVER and isinstance(
      member, t.TensorType) and member.shape is not None and len(member.shape) >= 1
          and member.shape[0] is not None):
    raise error(TypeError, where, "the table must be a tensor at the server with a known "
                "number of rows.", expected="T[num_rows, ...]@SERVER", actual=ts)
  return member


def _keys_type(where: str, keys) -> int:
  ts = keys.type_signature
  m = ts.member if isinstance(ts, t.FederatedType) else None
  if not (isinstance(ts, t.FederatedType) and ts.placement is CLIENTS and isinstance(
      m, t.TensorType) and m.dtype == np.int32 and m.shape is not None and len(m.shape) == 1
          and m.shape[0] is not None):
    raise error(TypeError, where, "the keys must be a fixed number of int32 keys per client.",
                expected="{int32[m]}@CLIENTS", actual=ts,
                hint="pad a client's keys to m (e.g. with key 0) and zero the padded rows' "
                "updates")
  return int(m.shape[0])


def select_rows(client_keys: Any, table: Any, chunk_size: int = 256) -> Any:
  """Each client's rows of a server table: `{int32[m]}@CLIENTS, T[N, ...]@SERVER ->
  {T[m, ...]}@CLIENTS`, row `j` of client `i` being `table[keys_i[j]]`.

  Built on `fx.federated_select` with a one-row `select_fn`: a client receives the `m` rows it
  names and nothing else; a key outside `[0, N)` raises a ValueError naming it. Call it inside
  a `fx.federated_computation`. The keys are selected `chunk_size` at a time: turning a
  selected sequence of `c` rows into a tensor costs `O(c^2)` row copies on the vectorized
  runtime (its loop selects over the whole carry each step), so chunks keep it `O(m c)`.
  """
  where = "fx.learning.sparse.select_rows"
  row_type = _table_type(where, table)
  m = _keys_type(where, client_keys)
  if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
    raise error(ValueError, where, "chunk_size must be an int >= 1.", actual=repr(chunk_size))
  num_rows = row_type.shape[0]
  one_row = t.TensorType(row_type.dtype, row_type.shape[1:])
  select_fn = computation(row_type, np.int32)(lambda rows, key: rows[key])
  max_key = fi.federated_value(np.int32(num_rows), SERVER)
  keys_type = t.TensorType(np.int32, (m,))
  parts = []
  for begin in range(0, m, chunk_size):
    end = min(m, begin + chunk_size)
    chunk_keys = fi.federated_map(
        computation(keys_type)(lambda k, b=begin, e=end: k[b:e]), client_keys)
    selected = fi.federated_select(chunk_keys, max_key, table, select_fn)
    parts.append(fi.federated_map(_sequence_to_tensor(one_row, end - begin), selected))
  if len(parts) == 1:
    return parts[0]
  part_types = [t.TensorType(row_type.dtype, (min(m, b + chunk_size) - b,) + one_row.shape)
                for b in range(0, m, chunk_size)]
  concat = computation(t.StructType([(None, pt) for pt in part_types]))(
      lambda chunks: jnp.concatenate(list(chunks), axis=0))
  return fi.federated_map(concat, fi.federated_zip(tuple(parts)))


def _sequence_to_tensor(one_row: t.TensorType, length: int):
  """`(T*) -> T[length, ...]`: the rows of a sequence of `length` rows, in order."""
  rows_type = t.TensorType(one_row.dtype, (length,) + tuple(one_row.shape))
  acc_type = to_type((rows_type, np.int32))

  @computation(acc_type, one_row)
  def put(acc, row):
    rows, i = acc
    return rows.at[i].set(row), i + 1

  zero = computation(lambda: (jnp.zeros(rows_type.shape, rows_type.dtype), jnp.int32(0)))

  @federated_computation(t.SequenceType(one_row))
  def to_tensor(sequence):
    return fi.sequence_reduce(sequence, zero(), put)[0]

  return to_tensor


def sparse_sum(client_keys: Any, client_rows: Any, num_rows: int, mode: str = "stack") -> Any:
  """Sums clients' rows by key into a dense table: `{int32[m]}@CLIENTS, {T[m, ...]}@CLIENTS
  -> T[num_rows, ...]@SERVER`; a key listed twice (by one client or several) adds twice.

  `mode="stack"` (default) stacks the clients' `(keys, rows)` at the server
  (`fx.federated_stack`, not secure-aggregation compatible) and segment-sums them: memory
  `O(clients * m + num_rows)` rows. `mode="aggregate"` is TFF's tutorial's `federated_aggregate`
  with a dense accumulator (each client's update scattered into a zero table): fine for
  small tables; the vectorized runtime holds one dense partial per client.
  """
  where = "fx.learning.sparse.sparse_sum"
  if mode not in _MODES:
    raise error(ValueError, where, "unknown mode.", expected=" or ".join(_MODES),
                actual=repr(mode))
  m = _keys_type(where, client_keys)
  rows_ts = client_rows.type_signature
  rows_type = rows_ts.member if isinstance(rows_ts, t.FederatedType) else None
  if not (isinstance(rows_ts, t.FederatedType) and rows_ts.placement is CLIENTS and isinstance(
      rows_type, t.TensorType) and rows_type.shape is not None and len(rows_type.shape) >= 1
          and rows_type.shape[0] == m):
    raise error(TypeError, where, "the rows must be one row per key at the clients.",
                expected=f"{{T[{m}, ...]}}@CLIENTS", actual=rows_ts)
  dense = t.TensorType(rows_type.dtype, (int(num_rows),) + tuple(rows_type.shape[1:]))
  if mode == "stack":
    stacked = fi.federated_stack(fi.federated_zip((client_keys, client_rows)))

    @computation(t.TensorType(np.int32, (None, m)),
                 t.TensorType(rows_type.dtype, (None,) + tuple(rows_type.shape)))
    def segment_sum(keys, rows):
      flat = rows.reshape((-1,) + tuple(rows_type.shape[1:]))
      return jnp.zeros(dense.shape, dense.dtype).at[keys.reshape(-1)].add(flat)

    return fi.federated_map(segment_sum, stacked)
  zero = computation(lambda: jnp.zeros(dense.shape, dense.dtype))()
  accumulate = computation(dense, (client_keys.type_signature.member, rows_type))(
      lambda acc, update: acc.at[update[0]].add(update[1]))
  merge = computation(dense, dense)(lambda a, b: a + b)
  report = computation(dense)(lambda a: a)
  return fi.federated_aggregate(fi.federated_zip((client_keys, client_rows)), zero, accumulate,
                                merge, report)


def build_sparse_round(table_type: Any, client_data_type: Any, keys_fn: Computation,
                       client_update_fn: Computation, server_learning_rate: float = 1.0,
                       mode: str = "stack") -> Computation:
  """One round of sparse FedAvg on a table `T[N, ...]`: a federated computation
  `(<table=T[N,...]@SERVER, client_data={D}@CLIENTS> -> <table=T[N,...]@SERVER,
  metrics=<num_clients=float32, num_updated_rows=int32>@SERVER>)` (`num_updated_rows`:
  rows that some client's non-zero delta reached; with `mode="aggregate"`, rows whose summed
  update is non-zero).

  Each client computes `(keys int32[m], num_keys int32) = keys_fn(data)` (keys past `num_keys`
  are padding), receives `select_rows(keys, table)` only, and returns `delta =
  client_update_fn(rows, data, keys, num_keys)` (trained minus received rows, `T[m, ...]`); the
  padded rows' deltas are zeroed. The server adds `server_learning_rate * sparse_sum / number
  of clients` to the table (with `mode="stack"`, scatter-added into it: no dense sum; TFF's
  tutorial's mean over the cohort, so an untouched row keeps its value).

  Args:
    table_type: the table's type, e.g. `fx.TensorType(np.float32, [N, d])`.
    client_data_type: a client's data type `D` (e.g. `fx.SequenceType(batch_type)`).
    keys_fn: a computation `D -> <int32[m], int32>`.
    client_update_fn: a computation `<T[m,...], D, int32[m], int32> -> T[m,...]`.
    server_learning_rate: scales the mean update.
    mode: `sparse_sum`'s mode.

  Example:
    >>> table_type = fx.TensorType(np.float32, [1000, 2])
    >>> data_type = fx.TensorType(np.int32, [3])
    >>> keys_fn = fx.computation(data_type)(lambda d: (d, np.int32(2)))
    >>> update = fx.computation(fx.TensorType(np.float32, [3, 2]), data_type,
    ...                         fx.TensorType(np.int32, [3]), np.int32)(
    ...     lambda rows, data, keys, n: 1.0 - rows)   # "train" the rows to 1
    >>> round_fn = fx.learning.sparse.build_sparse_round(table_type, data_type, keys_fn, update)
    >>> table, metrics = round_fn(np.zeros((1000, 2), np.float32),
    ...                           [np.array([5, 7, 0], np.int32), np.array([7, 9, 0], np.int32)])
    >>> table[[5, 7, 9, 0]].tolist()   # each mean over the 2 clients; key 0 is padding
    [[0.5, 0.5], [1.0, 1.0], [0.5, 0.5], [0.0, 0.0]]
    >>> int(metrics['num_updated_rows'])
    3
  """
  where = "fx.learning.sparse.build_sparse_round"
  table_type = to_type(table_type)
  if not (isinstance(table_type, t.TensorType) and table_type.shape is not None
          and len(table_type.shape) >= 1 and table_type.shape[0] is not None):
    raise error(TypeError, where, "table_type must be a tensor type with a known number of rows.",
                expected="e.g. fx.TensorType(np.float32, [N, d])", actual=table_type)
  data_type = to_type(client_data_type)
  keys_result = keys_fn.type_signature.result
  if not (isinstance(keys_result, t.StructType) and len(keys_result) == 2
          and isinstance(keys_result[0], t.TensorType) and keys_result[0].dtype == np.int32
          and keys_result[0].shape is not None and len(keys_result[0].shape) == 1
          and keys_result[0].shape[0] is not None):
    raise error(TypeError, where, "keys_fn must return (keys int32[m], num_keys int32).",
                expected="<int32[m],int32>", actual=keys_result)
  m = int(keys_result[0].shape[0])
  rows_type = t.TensorType(table_type.dtype, (m,) + tuple(table_type.shape[1:]))

  @computation(rows_type, np.int32)
  def mask_padding(delta, num_keys):
    real = jnp.arange(m) < num_keys
    return jnp.where(real.reshape((m,) + (1,) * (delta.ndim - 1)), delta, 0).astype(delta.dtype)

  @computation(table_type, table_type, np.float32)
  def server_update(table, update_sum, num_clients):
    scale = server_learning_rate / jnp.maximum(num_clients, 1.0)
    return (table + scale * update_sum).astype(table.dtype)

  @computation(t.TensorType(table_type.dtype, table_type.shape))
  def touched(update_sum):
    flat = update_sum.reshape(update_sum.shape[0], -1)
    return jnp.sum(jnp.any(flat != 0, axis=1)).astype(jnp.int32)

  @computation(table_type, (t.TensorType(np.int32, (None, m)),
                            t.TensorType(rows_type.dtype, (None,) + tuple(rows_type.shape))),
               np.float32)
  def apply_stacked(table, stacked, num_clients):
    keys, rows = stacked
    flat_keys = keys.reshape(-1)
    flat = rows.reshape((-1,) + tuple(rows_type.shape[1:]))
    scale = server_learning_rate / jnp.maximum(num_clients, 1.0)
    new = table.at[flat_keys].add((scale * flat).astype(table.dtype))
    # A row counts as updated when some client's delta for it is non-zero (as `touched`).
    nonzero = jnp.any(flat.reshape(flat.shape[0], -1) != 0, axis=1)
    hit = jnp.zeros((table.shape[0],), jnp.bool_).at[flat_keys].max(nonzero)
    return new, jnp.sum(hit).astype(jnp.int32)

  @federated_computation(t.FederatedType(table_type, SERVER), t.FederatedType(data_type, CLIENTS))
  def round_fn(table, client_data):
    keys, num_keys = fi.federated_map(keys_fn, client_data)
    rows = select_rows(keys, table)
    delta = fi.federated_map(client_update_fn, (rows, client_data, keys, num_keys))
    delta = fi.federated_map(mask_padding, (delta, num_keys))
    num_clients = fi.federated_sum(fi.federated_value(np.float32(1.0), CLIENTS))
    if mode == "stack":  # Scatter-add straight into the table: no dense sum at the server.
      stacked = fi.federated_stack(fi.federated_zip((keys, delta)))
      new_table, num_updated = fi.federated_map(apply_stacked, (table, stacked, num_clients))
    else:
      update_sum = sparse_sum(keys, delta, table_type.shape[0], mode)
      new_table = fi.federated_map(server_update, (table, update_sum, num_clients))
      num_updated = fi.federated_map(touched, update_sum)
    metrics = fi.federated_zip(collections.OrderedDict(
        num_clients=num_clients, num_updated_rows=num_updated))
    return SparseRoundOutput(table=new_table, metrics=metrics)

  return round_fn
