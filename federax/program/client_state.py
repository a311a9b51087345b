"""`ClientStateStore`: per-client state that persists across rounds, keyed by client id.

A round gathers the states of its cohort into a `{C}@CLIENTS` value (one entry per client,
views into one stacked array per leaf), the process returns the updated states, and the round
scatters them back. A client never seen before gets the initial state (lazily: nothing is
stored until its first scatter), so memory grows with the clients touched, not with the
population. With a `directory` the states live on disk instead, in shards of `.npz` files
(one per block of ids, `crc32(id) % num_shards`; no pickle), and memory holds only the shards
a round touches.

The store lives in the program layer: it is host-side storage that a program checkpoints
together with its program state (`run_training_process` saves a snapshot inside each
`program_state_N` directory, atomically), not part of a federated computation.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional, Union

import jax
import numpy as np

from federax.core.errors import error
from federax.program import _atomic

__all__ = ["ClientStateStore"]

_NAME = "ClientStateStore"
_FORMAT = "federax.client_states"
_MANIFEST = "manifest.json"


def _shard_name(shard: int) -> str:
  return f"shard_{shard:05d}.npz"


class _Spec:
  """The structure and leaf types (dtype, shape) of one client's state."""

  def __init__(self, example: Any):
    flat, self.treedef = jax.tree_util.tree_flatten_with_path(example)
    self.paths = [jax.tree_util.keystr(p) for p, _ in flat]
    leaves = [np.asarray(x) for _, x in flat]
    for x in leaves:
      if x.dtype == object or x.dtype.kind in "OV":
        raise error(TypeError, _NAME, "a client state's leaves must be numeric or bool arrays.",
                    actual=f"a leaf of dtype {x.dtype}")
    self.leaves = [(x.dtype, x.shape) for x in leaves]
    self.example = leaves

  def describe(self) -> str:
    return ", ".join(f"{p}: {d}{list(s)}" for p, (d, s) in zip(self.paths, self.leaves))

  def check(self, where: str, client_id: str, state: Any) -> list[np.ndarray]:
    """The leaves of `state` as NumPy arrays; a clear error if its type is not this spec's."""
    # Compared by leaf paths: a dict and an OrderedDict with the same keys are one type.
    flat, treedef = jax.tree_util.tree_flatten_with_path(state)
    paths = [jax.tree_util.keystr(p) for p, _ in flat]
    if paths != self.paths:
      raise error(TypeError, where, f"the state of client {client_id!r} has another structure "
                  "than the store's client state: a client state's type may not change between "
                  "rounds.", expected=f"leaves {self.paths}", actual=f"leaves {paths}",
                  hint="return states of the type of the store's initial state")
    arrays = [np.asarray(x) for _, x in flat]
    differences = [(path, f"{d}{list(s)}", f"{a.dtype}{list(a.shape)}")
                   for path, (d, s), a in zip(self.paths, self.leaves, arrays)
                   if a.dtype != d or a.shape != s]
    if differences:
      raise error(TypeError, where, f"the state of client {client_id!r} has other leaf types "
                  "than the store's client state: a client state's type may not change between "
                  "rounds.", differences=differences,
                  hint="cast to the initial state's dtypes and keep its shapes")
    return arrays

  def to_json(self) -> dict:
    return {"leaves": [{"path": p, "dtype": str(d), "shape": list(s)}
                       for p, (d, s) in zip(self.paths, self.leaves)]}


class ClientStateStore:
  """States of clients keyed by client id (str), initialized lazily, in memory or on disk.

  Args:
    initial_state: the state of a client never seen before: a pytree of arrays (e.g.
      `OrderedDict(control_variate=np.zeros(3, np.float32))`), or a no-argument function
      returning one (called once).
    directory: optional directory for an on-disk store (created; its previous contents are the
      store's, e.g. of an interrupted run). Without it the states are held in memory.
    num_shards: the number of `.npz` shards of an on-disk store (ids are assigned to shards
      by `crc32(id) % num_shards`); choose about population / 1,000.

  Every state written is checked against the initial state's structure, dtypes and shapes: a
  client state's type may not change between rounds (`TypeError` naming the client and the
  leaves that differ).

  Example:
    >>> store = fx.program.ClientStateStore({'c': np.zeros(2, np.float32)})
    >>> [s['c'].tolist() for s in store.gather(['a', 'b'])]
    [[0.0, 0.0], [0.0, 0.0]]
    >>> store.scatter(['b'], [{'c': np.ones(2, np.float32)}])
    >>> len(store), store.gather(['b'])[0]['c'].tolist(), store.nbytes
    (1, [1.0, 1.0], 8)
  """

  def __init__(self, initial_state: Union[Any, Callable[[], Any]],
               directory: Optional[Union[str, os.PathLike]] = None, num_shards: int = 64):
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
      raise error(ValueError, _NAME, "num_shards must be an int >= 1.", actual=repr(num_shards))
    self._spec = _Spec(initial_state() if callable(initial_state) else initial_state)
    self._num_shards = num_shards
    self._directory = None if directory is None else os.fspath(directory)
    self._rows: dict[str, list[np.ndarray]] = {}  # The in-memory backend.
    if self._directory is not None:
      os.makedirs(self._directory, exist_ok=True)

  @property
  def spec(self) -> str:
    """The client state's type, as text."""
    return self._spec.describe()

  @property
  def initial_state(self) -> Any:
    """A client's initial state (a new copy)."""
    return self._unflatten([x.copy() for x in self._spec.example])

  @property
  def directory(self) -> Optional[str]:
    return self._directory

  # --- Reading and writing a cohort --------------------------------------------------------

  def gather(self, client_ids: Sequence[str]) -> list:
    """The states of `client_ids`, in order: one pytree per client (initial if never stored).

    The leaves are rows of one stacked array per leaf (`gather_stacked`), so a cohort costs one
    copy of its states. A client listed twice gets its state twice.
    """
    stacked = self.gather_stacked(client_ids)
    leaves = jax.tree_util.tree_leaves(stacked)
    return [self._unflatten([x[i] for x in leaves]) for i in range(len(client_ids))]

  def gather_stacked(self, client_ids: Sequence[str]) -> Any:
    """The states of `client_ids` stacked: a pytree whose leaves are `[len(client_ids), ...]`."""
    ids = self._check_ids("gather", client_ids)
    out = [np.empty((len(ids),) + s, d) for d, s in self._spec.leaves]
    found = self._read(ids)
    for i, client_id in enumerate(ids):
      row = found.get(client_id, self._spec.example)
      for leaf, x in zip(out, row):
        leaf[i] = x
    return self._unflatten(out)

  def scatter(self, client_ids: Sequence[str], states: Union[Sequence[Any], Any]) -> None:
    """Stores `states` (one pytree per client, or one stacked pytree) as `client_ids`' states.

    A client listed twice keeps its last state.

    Raises:
      TypeError: if a state's structure, dtypes or shapes are not the initial state's.
      ValueError: if there are not as many states as ids.
    """
    where = f"{_NAME}.scatter"
    ids = self._check_ids("scatter", client_ids)
    if isinstance(states, (list, tuple)) and len(states) == len(ids) and (
        not ids or len(jax.tree_util.tree_leaves(states[0])) == len(self._spec.paths)):
      rows = [self._spec.check(where, c, s) for c, s in zip(ids, states)]
    else:
      flat, treedef = jax.tree_util.tree_flatten_with_path(states)
      leaves = [x for _, x in flat]
      lengths = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
      if [jax.tree_util.keystr(p) for p, _ in flat] != self._spec.paths or lengths != {len(ids)}:
        if isinstance(states, (list, tuple)) and len(states) != len(ids):
          raise error(ValueError, where, "expected one state per client id.",
                      expected=f"{len(ids)} states", actual=f"{len(states)} states")
        raise error(TypeError, where, "the states have another structure than the store's "
                    "client state: a client state's type may not change between rounds.",
                    expected=f"{len(ids)} states of {self.spec}",
                    actual=f"{treedef} with leading sizes {sorted(map(str, lengths))}")
      leaves = [np.asarray(x) for x in leaves]
      rows = [self._spec.check(where, c, self._unflatten([x[i] for x in leaves]))
              for i, c in enumerate(ids)]
    self._write(dict(zip(ids, rows)))

  def __len__(self) -> int:
    if self._directory is None:
      return len(self._rows)
    return sum(len(self._load_shard(k)[0]) for k in self._shards_on_disk())

  def __contains__(self, client_id: str) -> bool:
    return client_id in self._read([client_id])

  def client_ids(self) -> list[str]:
    """The ids of the clients whose state is stored (in no particular order)."""
    if self._directory is None:
      return list(self._rows)
    return [c for k in self._shards_on_disk() for c in self._load_shard(k)[0]]

  @property
  def nbytes(self) -> int:
    """Bytes of the stored states' arrays (held in memory, or on disk for an on-disk store)."""
    if self._directory is None:
      return sum(x.nbytes for row in self._rows.values() for x in row)
    per_state = sum(np.dtype(d).itemsize * int(np.prod(s)) for d, s in self._spec.leaves)
    return per_state * len(self)

  # --- Snapshots ----------------------------------------------------------------------------

  def save(self, directory: Union[str, os.PathLike]) -> None:
    """Writes a snapshot of every stored state into the existing, empty `directory`.

    The format is the on-disk store's: `shard_NNNNN.npz` files (`ids` and `leaf_i`) and a
    `manifest.json`. An on-disk store's shards are hard links (a shard is replaced, never
    changed in place, so a snapshot stays as it was); each file is fsync'ed.
    """
    directory = os.fspath(directory)
    if self._directory is None:
      by_shard: dict[int, list[str]] = {}
      for client_id in self._rows:
        by_shard.setdefault(self._shard_of(client_id), []).append(client_id)
      for shard, ids in by_shard.items():
        self._write_shard(os.path.join(directory, _shard_name(shard)), ids,
                          [self._rows[c] for c in ids])
    else:
      for shard in self._shards_on_disk():
        source = os.path.join(self._directory, _shard_name(shard))
        target = os.path.join(directory, _shard_name(shard))
        try:
          os.link(source, target)
        except OSError:  # Another file system, or no hard links: copy.
          shutil.copyfile(source, target)
          _fsync_file(target)
    manifest = {"format": _FORMAT, "format_version": 1, "num_shards": self._num_shards,
                "count": len(self), **self._spec.to_json()}
    with open(os.path.join(directory, _MANIFEST), "w", encoding="utf-8") as f:
      json.dump(manifest, f, indent=1)
      f.flush()
      os.fsync(f.fileno())
    _atomic.fsync_dir(directory)

  def restore(self, directory: Union[str, os.PathLike]) -> None:
    """Replaces every stored state by the snapshot in `directory` (written by `save`).

    Raises:
      ValueError: if the snapshot is missing or damaged, or its client state type or shard
        count is not this store's.
    """
    directory = os.fspath(directory)
    where = f"{_NAME}.restore"
    try:
      with open(os.path.join(directory, _MANIFEST), encoding="utf-8") as f:
        manifest = json.load(f)
    except (OSError, ValueError) as e:
      raise error(ValueError, where, f"{directory} holds no readable client state snapshot.",
                  actual=str(e)) from None
    mine = self._spec.to_json()
    theirs = {k: manifest.get(k) for k in mine}
    if manifest.get("format") != _FORMAT or theirs != mine:
      raise error(ValueError, where, "the snapshot's client state type is not the store's: a "
                  "client state's type may not change between runs.",
                  expected=self.spec, actual=f"leaves {theirs['leaves']}",
                  hint="restore into a store made with the initial state of the run that saved it")
    if manifest.get("num_shards") != self._num_shards:
      raise error(ValueError, where, "the snapshot was written with another shard count.",
                  expected=self._num_shards, actual=manifest.get("num_shards"))
    names = sorted(n for n in os.listdir(directory) if n.startswith("shard_"))
    if self._directory is None:
      self._rows = {}
      for name in names:
        ids, leaves = self._load_shard_file(os.path.join(directory, name))
        for i, client_id in enumerate(ids):
          self._rows[client_id] = [x[i].copy() for x in leaves]
    else:
      for shard in self._shards_on_disk():
        os.remove(os.path.join(self._directory, _shard_name(shard)))
      for name in names:
        temp = os.path.join(self._directory, f".tmp-{name}-{_atomic.random_suffix()}")
        shutil.copyfile(os.path.join(directory, name), temp)
        _fsync_file(temp)
        os.replace(temp, os.path.join(self._directory, name))
      _atomic.fsync_dir(self._directory)
    if len(self) != manifest.get("count"):
      raise error(ValueError, where, f"the snapshot in {directory} is damaged: its shards hold "
                  "another number of states than its manifest says.",
                  expected=manifest.get("count"), actual=len(self))

  # --- Backends -----------------------------------------------------------------------------

  def _unflatten(self, leaves: list) -> Any:
    return jax.tree_util.tree_unflatten(self._spec.treedef, leaves)

  def _check_ids(self, what: str, client_ids: Iterable[str]) -> list[str]:
    ids = list(client_ids)
    bad = [c for c in ids if not isinstance(c, str)]
    if bad:
      raise error(TypeError, f"{_NAME}.{what}", "client ids must be strings.",
                  actual=f"{bad[0]!r} ({type(bad[0]).__name__})")
    return ids

  def _shard_of(self, client_id: str) -> int:
    return zlib.crc32(client_id.encode("utf-8")) % self._num_shards

  def _read(self, ids: list[str]) -> dict[str, list[np.ndarray]]:
    if self._directory is None:
      return {c: self._rows[c] for c in ids if c in self._rows}
    found = {}
    wanted = set(ids)
    for shard in sorted({self._shard_of(c) for c in ids}):
      shard_ids, leaves = self._load_shard(shard)
      for i, client_id in enumerate(shard_ids):
        if client_id in wanted:
          found[client_id] = [x[i] for x in leaves]
    return found

  def _write(self, rows: dict[str, list[np.ndarray]]) -> None:
    if self._directory is None:
      self._rows.update((c, [x.copy() for x in row]) for c, row in rows.items())
      return
    by_shard: dict[int, list[str]] = {}
    for client_id in rows:
      by_shard.setdefault(self._shard_of(client_id), []).append(client_id)
    for shard, new_ids in sorted(by_shard.items()):
      ids, leaves = self._load_shard(shard)
      position = {c: i for i, c in enumerate(ids)}
      leaves = [x.copy() for x in leaves]
      appended = [c for c in new_ids if c not in position]
      if appended:
        leaves = [np.concatenate([x, np.empty((len(appended),) + s, d)])
                  for x, (d, s) in zip(leaves, self._spec.leaves)]
        position.update((c, len(ids) + j) for j, c in enumerate(appended))
        ids = list(ids) + appended
      for client_id in new_ids:
        for x, value in zip(leaves, rows[client_id]):
          x[position[client_id]] = value
      # A new file replaces the shard: snapshots that link the old one keep it unchanged.
      path = os.path.join(self._directory, _shard_name(shard))
      temp = os.path.join(self._directory, f".tmp-{_shard_name(shard)}-{_atomic.random_suffix()}")
      self._write_shard(temp, ids, [[x[i] for x in leaves] for i in range(len(ids))],
                        stacked=leaves)
      os.replace(temp, path)
    _atomic.fsync_dir(self._directory)

  def _write_shard(self, path: str, ids: list[str], rows: list[list[np.ndarray]],
                   stacked: Optional[list[np.ndarray]] = None) -> None:
    if stacked is None:
      stacked = [np.stack([row[j] for row in rows]) if rows else np.empty((0,) + s, d)
                 for j, (d, s) in enumerate(self._spec.leaves)]
    arrays = {f"leaf_{j}": x for j, x in enumerate(stacked)}
    with open(path, "wb") as f:
      np.savez(f, ids=np.asarray(ids, dtype=str), **arrays)  # Unicode arrays: no pickle.
      f.flush()
      os.fsync(f.fileno())

  def _shards_on_disk(self) -> list[int]:
    names = os.listdir(self._directory)
    return sorted(int(n[6:11]) for n in names if n.startswith("shard_") and n.endswith(".npz"))

  def _load_shard(self, shard: int) -> tuple[list[str], list[np.ndarray]]:
    path = os.path.join(self._directory, _shard_name(shard))
    if not os.path.exists(path):
      return [], [np.empty((0,) + s, d) for d, s in self._spec.leaves]
    return self._load_shard_file(path)

  def _load_shard_file(self, path: str) -> tuple[list[str], list[np.ndarray]]:
    with np.load(path, allow_pickle=False) as npz:
      ids = [str(c) for c in npz["ids"]]
      leaves = [npz[f"leaf_{j}"] for j in range(len(self._spec.leaves))]
    return ids, leaves


def _fsync_file(path: str) -> None:
  with open(path, "rb") as f:
    os.fsync(f.fileno())
