"""LEAF's JSON shards (`{"users", "num_samples", "user_data"}`, gzipped or not), read lazily.

A LEAF output directory holds `train/` and `test/` shards. Opening one reads only each shard's
header (`users` and `num_samples` come first in LEAF's files, so a few kilobytes suffice); a shard
is parsed in full the first time one of its users is read, converted to NumPy, and kept in a
cache bounded in bytes. Several LEAF samples side by side (a directory of output directories)
are merged, each writer kept once (see `read_leaf_splits`).
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import json
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from federax.simulation.formats.errors import DataFormatError, data_format_error
from federax.simulation.formats.hdf5 import unknown_client_error

SPLITS = ("train", "test")
DEFAULT_CACHE_BYTES = 512 * 2**20
_HEADER_CHUNK = 1 << 16
_KEY = re.compile(r'\s*[{,]\s*"(users|num_samples)"\s*:\s*')


@contextlib.contextmanager
def _open(path: str):
  """Opens a shard for text reading; a damaged or vanished file raises an error naming it."""
  try:
    with (gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(
        path, encoding="utf-8")) as f:
      yield f
  except FileNotFoundError as e:
    raise FileNotFoundError(
        f"LEAF shard {path!r} is missing; it was listed when the directory was indexed. "
        "Re-open the data (read_leaf_splits/load_data) after changing its files.") from e
  except (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError) as e:
    raise DataFormatError(
        f"LEAF shard {path!r} is corrupt: {type(e).__name__}: {e}. Expected gzipped (.json.gz) "
        "or plain (.json) UTF-8 JSON; the file may be truncated. Re-download or regenerate "
        "it with LEAF.") from e


def _read_header(path: str) -> tuple[list[str], list[int]]:
  """Reads `users` and `num_samples` from the start of a shard, without parsing `user_data`."""
  decoder = json.JSONDecoder()
  with _open(path) as f:
    text = f.read(_HEADER_CHUNK)
    found: dict[str, Any] = {}
    pos = 0
    while len(found) < 2:
      match = _KEY.match(text, pos)
      if match is None:
        break  # Not LEAF's key order: fall back to a full parse.
      try:
        value, end = decoder.raw_decode(text, match.end())
      except RecursionError:
        raise _too_deep(path) from None
      except json.JSONDecodeError:
        more = f.read(_HEADER_CHUNK)
        if not more:
          break
        text += more
        continue
      found[match.group(1)], pos = value, end
  if len(found) < 2:
    data = _parse(path)
    found = {"users": data["users"], "num_samples": data["num_samples"]}
  return _check_header(path, found["users"], found["num_samples"])


def _where(path: str) -> str:
  return f"LEAF shard {path!r}"


_REGENERATE = "The file is corrupt or not a LEAF shard: regenerate it with LEAF."


def _too_deep(path: str) -> DataFormatError:
  return data_format_error(
      _where(path), "its JSON is nested too deeply to parse", expected="LEAF's lists of "
      "examples (a few levels deep)", hint=_REGENERATE)


def _check_header(path: str, users: Any, counts: Any) -> tuple[list[str], list[int]]:
  """`users` as strings and `num_samples` as counts, or an error naming what is wrong."""
  for name, value in (("users", users), ("num_samples", counts)):
    if not isinstance(value, list):
      raise data_format_error(_where(path), f"'{name}' is not a list", expected="a JSON list",
                              found=f"{type(value).__name__} {_short(value)}", hint=_REGENERATE)
  if len(users) != len(counts):
    raise DataFormatError(
        f"LEAF shard {path!r} lists {len(users)} users but {len(counts)} num_samples; the two "
        "lists must have equal length. The file is corrupt or not a LEAF shard.")
  for i, user in enumerate(users):
    if not isinstance(user, (str, int)) or isinstance(user, bool):
      raise data_format_error(_where(path), f"users[{i}] is not a user id",
                              expected="a string", found=_short(user), hint=_REGENERATE)
  for i, count in enumerate(counts):
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
      raise data_format_error(
          _where(path), f"num_samples[{i}] (user {str(users[i])!r}) is not a count",
          expected="a non-negative integer", found=_short(count), hint=_REGENERATE)
  return [str(u) for u in users], list(counts)


def _short(value: Any) -> str:
  text = json.dumps(value) if not isinstance(value, float) else repr(value)
  return text if len(text) <= 40 else text[:37] + "..."


def _refuse_constant(name: str) -> Any:
  # Python's json reads NaN and Infinity, which JSON (and LEAF) never writes: refuse them.
  raise _NonFiniteConstant(name)


class _NonFiniteConstant(ValueError):
  pass


def _parse(path: str) -> dict[str, Any]:
  with _open(path) as f:
    try:
      data = json.load(f, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
      raise DataFormatError(f"LEAF shard {path!r} is not valid JSON ({e}); expected a LEAF "
                            "shard. The file may be truncated: re-download or regenerate it."
                            ) from e
    except _NonFiniteConstant as e:
      raise data_format_error(
          _where(path), f"it holds the non-JSON number {e}", expected="finite numbers "
          "(JSON has no NaN or Infinity)", hint=_REGENERATE) from None
    except RecursionError:
      raise _too_deep(path) from None
  missing = {"users", "num_samples", "user_data"} - set(data) if isinstance(data, dict) else {
      "users", "num_samples", "user_data"}
  if missing:
    raise DataFormatError(
        f"{path!r} is not a LEAF shard: expected a JSON object with keys 'users', "
        f"'num_samples' and 'user_data', missing {sorted(missing)}.")
  _check_header(path, data["users"], data["num_samples"])
  if not isinstance(data["user_data"], dict):
    raise data_format_error(_where(path), "'user_data' is not an object", expected="a JSON "
                            "object from user id to features", found=_short(data["user_data"]),
                            hint=_REGENERATE)
  return data


def _users(path: str, data: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
  """Every listed user's features as NumPy arrays, checked against the shard's header."""
  users = {}
  user_data = data["user_data"]
  for user, count in zip(data["users"], data["num_samples"]):
    where = f"{_where(path)}, user {str(user)!r}"
    features = user_data.get(str(user))
    if features is None:
      raise data_format_error(
          _where(path), f"user {str(user)!r} is listed in 'users' but has no entry in "
          "'user_data'", expected="one 'user_data' entry per listed user",
          found=f"{len(user_data)} entries ({_short(sorted(user_data)[:3])})", hint=_REGENERATE)
    if not isinstance(features, dict) or not features:
      raise data_format_error(where, "has no features", expected="an object of feature lists "
                              "(e.g. 'x' and 'y')", found=_short(features), hint=_REGENERATE)
    arrays = {}
    for name, values in features.items():
      array = _to_array(values, f"{where}, feature {name!r}")
      if array.ndim == 0 or array.shape[0] != count:
        raise data_format_error(
            f"{where}, feature {name!r}", "does not hold one value per example",
            expected=f"{count} (its num_samples)",
            found=f"{array.shape[0] if array.ndim else 'a scalar'}", hint=_REGENERATE)
      arrays[name] = array
    users[str(user)] = arrays
  return users


_USER_DATA = re.compile(r'[{,]\s*"user_data"\s*:\s*\{')


def _scan_feature(path: str, name: str) -> dict[str, np.ndarray] | None:
  """One feature of every user of a shard (e.g. `'y'`, the labels) without parsing the others.

  LEAF's features are lists of numbers, so every `"` after `"user_data"` opens a key (a user id
  before `{`, a feature name before `[`) or a string value (never followed by `:`); the scan
  jumps from quote to quote (`str.find`) and decodes only `name`'s lists, skipping the bulk
  (the pixels). Returns None when the text does not have that shape (another key order, a
  feature that is not a list, a user with no such feature or listed twice): the caller then
  parses the shard in full, which also reports what is wrong with it.
  """
  users, counts = _read_header(path)
  with _open(path) as f:
    text = f.read()
  start = _USER_DATA.search(text)
  if start is None:
    return None
  decoder = json.JSONDecoder()
  found: dict[str, Any] = {}
  user, pos = None, start.end()
  while (pos := text.find('"', pos)) >= 0:
    try:
      key, end = json.decoder.scanstring(text, pos + 1)
    except json.JSONDecodeError:
      return None
    colon = end
    while colon < len(text) and text[colon] in " \t\n\r":
      colon += 1
    if colon >= len(text) or text[colon] != ":":
      pos = end  # A string value (e.g. in a list of strings): not a key.
      continue
    value = colon + 1
    while value < len(text) and text[value] in " \t\n\r":
      value += 1
    opener = text[value:value + 1]
    if opener == "{":
      user = key
    elif opener != "[" or user is None:
      return None
    elif key == name:
      if user in found:
        return None
      try:
        found[user], value = decoder.raw_decode(text, value)
      except (json.JSONDecodeError, RecursionError):
        return None
    pos = value
  if set(found) != set(users):
    return None
  out = {}
  for user, count in zip(users, counts):
    values = found[user]
    if not isinstance(values, list) or len(values) != count or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values):
      return None  # Not plain labels: the full parse checks (and converts) it.
    out[user] = _to_array(values, f"{_where(path)}, user {user!r}, feature {name!r}")
  return out


def _to_array(values: Any, where: str) -> np.ndarray:
  """JSON lists to compact NumPy: floats to float32, integers to int32 (int64 if needed).

  Raises:
    DataFormatError: if the lists are ragged, or hold nulls, values of mixed kinds, or numbers
      float32 cannot hold (JSON's null reads as NaN under a float dtype: never loaded).
  """
  if not isinstance(values, list):
    raise data_format_error(where, "is not a list", expected="a JSON list of examples",
                            found=_short(values), hint=_REGENERATE)
  try:
    array = np.asarray(values)
  except ValueError:
    raise data_format_error(where, "is ragged (its examples have different lengths)",
                            expected="a rectangular list of lists", hint=_REGENERATE) from None
  if array.dtype.kind == "f":
    with np.errstate(over="ignore"):
      array = array.astype(np.float32)
    if not np.isfinite(array).all():
      index = np.unravel_index(np.argmin(np.isfinite(array)), array.shape)
      raise data_format_error(where, f"holds {float(np.asarray(values, float)[index])} at index "
                              f"{list(map(int, index))}, which float32 cannot hold",
                              expected="finite float32 numbers", hint=_REGENERATE)
    return array
  if array.dtype.kind in "iu":
    info = np.iinfo(np.int32)
    fits = array.size == 0 or (array.min() >= info.min and array.max() <= info.max)
    return array.astype(np.int32 if fits else np.int64)
  if array.dtype.kind == "b":
    return array
  if array.dtype.kind == "U" and all(isinstance(v, str) for v in _leaves(values)):
    return array
  found = sorted({type(v).__name__ for v in _leaves(values)})
  found = ["null" if t == "NoneType" else t for t in found]
  raise data_format_error(where, "holds values of the wrong kind",
                          expected="numbers, or strings, of one kind", found=" and ".join(found),
                          hint=_REGENERATE)


def _leaves(values: list) -> Iterator[Any]:
  """The scalars of nested lists, depth first (iterative: no recursion limit)."""
  stack = [iter(values)]
  while stack:
    for value in stack[-1]:
      if isinstance(value, list):
        stack.append(iter(value))
        break
      yield value
    else:
      stack.pop()


class _ShardCache:
  """Parsed shards (user -> feature -> array), least recently used evicted past a byte budget."""

  def __init__(self, max_bytes: int):
    self.max_bytes = max_bytes
    self._shards: collections.OrderedDict[str, tuple[dict, int]] = collections.OrderedDict()
    self._lock = threading.Lock()
    self._features: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    self.parses = 0  # How many times a shard was parsed (tests check the cache with it).

  def get(self, path: str) -> dict[str, dict[str, np.ndarray]]:
    with self._lock:
      if path in self._shards:
        self._shards.move_to_end(path)
        return self._shards[path][0]
    users = _users(path, _parse(path))
    size = sum(a.nbytes for d in users.values() for a in d.values())
    with self._lock:
      self.parses += 1
      self._shards[path] = (users, size)
      total = sum(s for _, s in self._shards.values())
      while total > self.max_bytes and len(self._shards) > 1:
        _, (_, evicted) = self._shards.popitem(last=False)
        total -= evicted
    return users

  def feature(self, path: str, name: str) -> dict[str, np.ndarray]:
    """`name` of every user of the shard: from the parsed shard if cached, else from a scan
    (kept: a few integers per example), else (the scan declined) from a full parse."""
    with self._lock:
      if path in self._shards:
        return {u: d[name] for u, d in self._shards[path][0].items()}
      if (path, name) in self._features:
        return self._features[path, name]
    scanned = _scan_feature(path, name)
    if scanned is None:
      return {u: d[name] for u, d in self.get(path).items()}
    with self._lock:
      self._features[path, name] = scanned
    return scanned


def in_user(source: LeafClientSource, client_id: str, error: DataFormatError
            ) -> DataFormatError:
  """`error` (a check of a user's features, e.g. a loader's) with the shard and user named."""
  return DataFormatError(
      f"{_where(source.path(client_id))}, user {client_id!r}, {error} {_REGENERATE}")


class ShardEntry(NamedTuple):
  """Where a user's data lives: the shard file and its `num_samples`."""

  path: str
  num_samples: int


class LeafClientSource:
  """The users of one split: user id -> shard, read through a shared parsed-shard cache.

  Build it with `read_leaf_splits`; `client_ids` are sorted.
  """

  def __init__(self, index: Mapping[str, ShardEntry], cache: _ShardCache, where: str):
    self._index = dict(index)
    self._cache = cache
    self._where = where
    self.client_ids: list[str] = sorted(self._index)

  def num_samples(self, client_id: str) -> int:
    """The example count LEAF recorded for a user (no shard is parsed)."""
    return self._entry(client_id).num_samples

  def _entry(self, client_id: str) -> ShardEntry:
    if client_id not in self._index:
      raise unknown_client_error(client_id, self.client_ids, self._where)
    return self._index[client_id]

  def path(self, client_id: str) -> str:
    """The shard file that holds a user (for messages about its data)."""
    return self._entry(client_id).path

  def read(self, client_id: str) -> dict[str, np.ndarray]:
    """One user's features (`x`, `y`) as NumPy arrays.

    Raises:
      KeyError: if the split holds no user `client_id`.
      DataFormatError: if the user's shard is corrupt (invalid JSON, a truncated gzip, a user
        listed without data, ragged or null values, a feature whose length is not the user's
        `num_samples`); the message names the shard and the user.
      FileNotFoundError: if the shard was removed after the directory was indexed.
    """
    entry = self._entry(client_id)
    return dict(self._cache.get(entry.path)[client_id])

  def read_feature(self, client_id: str, name: str) -> np.ndarray:
    """One feature of a user, e.g. its labels `'y'` to filter users by, without converting the
    shard's other features when it is not parsed yet (`read`'s errors; a user without `name`
    raises KeyError). The labels of FEMNIST's 3,500 writers: about 1 s instead of a full parse
    of every shard (15 s)."""
    entry = self._entry(client_id)
    return self._cache.feature(entry.path, name)[client_id]


def _shards(directory: str) -> list[str]:
  return sorted(
      os.path.join(directory, name) for name in os.listdir(directory)
      if name.endswith((".json", ".json.gz")))


def find_samples(data_dir: str | os.PathLike) -> list[str]:
  """The LEAF output directories under `data_dir`: itself, or its sub-directories in name order.

  Raises:
    FileNotFoundError: if `data_dir` is missing or holds no `train/` or `test/` directory at
      either level.
  """
  data_dir = os.fspath(data_dir)
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f"No directory at {data_dir!r}; expected a LEAF output directory.")

  def is_sample(d):
    return any(os.path.isdir(os.path.join(d, s)) for s in SPLITS)

  if is_sample(data_dir):
    return [data_dir]
  samples = sorted(os.path.join(data_dir, d) for d in os.listdir(data_dir)
                   if is_sample(os.path.join(data_dir, d)))
  if not samples:
    raise FileNotFoundError(
        f"{data_dir!r} is not a LEAF output directory: expected train/ and test/ directories of "
        "JSON shards in it, or in its sub-directories (one per LEAF sample). Point data_dir at "
        "the folder LEAF wrote (e.g. leaf/data/femnist/data).")
  return samples


def read_leaf_splits(data_dir: str | os.PathLike,
                     cache_bytes: int = DEFAULT_CACHE_BYTES) -> dict[str, LeafClientSource]:
  """Indexes a LEAF output directory, or several LEAF samples side by side, by split.

  Writers that appear in several samples (independent LEAF samplings overlap) are kept once:
  each writer's data, train and test, comes from one sample, the first in sorted folder order
  that holds the writer's *train* part (or, for writers only ever seen in test, the first that
  holds its test part). Taking both splits from one sample keeps LEAF's own disjoint train/test
  split of that writer; mixing samples could put an image in train and test at once.

  Args:
    data_dir: a LEAF output directory (with `train/` and `test/`), or a directory of them.
    cache_bytes: the budget for parsed shards kept in memory, shared by the splits.

  Returns:
    `{'train': source, 'test': source}` (a split with no directory gets no users).

  Raises:
    FileNotFoundError: if no LEAF output directory is found (see `find_samples`).
    DataFormatError: if a shard's header is not valid LEAF JSON, or is corrupt (e.g. a
      truncated gzip); a `ValueError`.

  Example:
    >>> write_leaf_shard('data/train/s.json', {'f0': {'x': [[0.5]], 'y': [3]}})
    >>> write_leaf_shard('data/test/s.json', {'f0': {'x': [[0.25]], 'y': [1]}})
    >>> splits = read_leaf_splits('data')
    >>> sorted(splits), splits['train'].client_ids
    (['test', 'train'], ['f0'])
  """
  samples = find_samples(data_dir)
  headers: dict[tuple[str, str], dict[str, ShardEntry]] = {}
  for sample in samples:
    for split in SPLITS:
      entries: dict[str, ShardEntry] = {}
      directory = os.path.join(sample, split)
      for path in _shards(directory) if os.path.isdir(directory) else []:
        for user, n in zip(*_read_header(path)):
          entries.setdefault(user, ShardEntry(path, n))
      headers[sample, split] = entries
  owner: dict[str, str] = {}
  for split in SPLITS:  # Train first: a writer's owner is the first sample with its train part.
    for sample in samples:
      for user in headers[sample, split]:
        owner.setdefault(user, sample)
  cache = _ShardCache(cache_bytes)
  return {
      split: LeafClientSource(
          {u: e for s in samples for u, e in headers[s, split].items() if owner[u] == s},
          cache, f"the {split} split of {os.fspath(data_dir)!r}")
      for split in SPLITS
  }


def write_leaf_shard(path: str | os.PathLike, user_data: Mapping[str, Mapping[str, Sequence]]
                     ) -> None:
  """Writes one LEAF shard (gzipped if `path` ends in .gz); fixtures and exports.

  Example:
    >>> write_leaf_shard('train/s.json', {'f0': {'x': [[0.5]], 'y': [3]}})
  """
  path = os.fspath(path)
  users = list(user_data)
  data = {
      "users": users,
      "num_samples": [len(user_data[u]["y"]) for u in users],
      "user_data": {u: {k: np.asarray(v).tolist() for k, v in d.items()}
                    for u, d in user_data.items()},
  }
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wt", encoding="utf-8") as f:
    json.dump(data, f)


def load_leaf(data_dir: str | os.PathLike,
              element_fn: Callable[[dict[str, np.ndarray]], Any] | None = None,
              cache_bytes: int = DEFAULT_CACHE_BYTES) -> tuple[Any, Any]:
  """Loads any LEAF data set (FEMNIST, Shakespeare, Sent140, ...) as (train, test) `ClientData`.

  Args:
    data_dir: a LEAF output directory, or a directory of several LEAF samples (merged as
      `read_leaf_splits` describes).
    element_fn: maps one user's `{'x': array, 'y': array}` to the tensors to slice; the
      identity if None.
    cache_bytes: the budget for parsed shards kept in memory.

  Returns:
    `(train, test)`, lazy `ClientData` keyed by LEAF user id.

  Raises:
    FileNotFoundError: if no LEAF output directory is found.

  Example:
    >>> write_leaf_shard('data/train/s.json', {'f0': {'x': [[0.5]], 'y': [3]}})
    >>> write_leaf_shard('data/test/s.json', {'f0': {'x': [[0.25]], 'y': [1]}})
    >>> train, test = load_leaf('data')
    >>> [e['x'].tolist() for e in train.create_dataset('f0')]
    [[0.5]]
  """
  from federax.simulation.client_data import ClientData  # pylint: disable=g-import-not-at-top
  from federax.data import Dataset  # pylint: disable=g-import-not-at-top
  from federax.data._elements import frozen  # pylint: disable=g-import-not-at-top

  def client_data(source: LeafClientSource):
    def create_dataset(client_id: str) -> Dataset:
      features = source.read(client_id)
      try:
        elements = element_fn(features) if element_fn else features
      except DataFormatError as e:  # A loader's check of the features: say where they are.
        raise in_user(source, client_id, e) from None
      return Dataset.from_tensor_slices(frozen(elements))
    return ClientData.from_clients_and_fn(source.client_ids, create_dataset)

  splits = read_leaf_splits(data_dir, cache_bytes)
  return client_data(splits["train"]), client_data(splits["test"])
