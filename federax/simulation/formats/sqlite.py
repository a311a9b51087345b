"""TFF's SQLite layout: serialized `tf.train.Example` rows keyed by client and split.

The schema (from TFF's `sql_client_data.py` and `sql_client_data_utils.py`):

    CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL,
                           serialized_example_proto BLOB NOT NULL);
    CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT NOT NULL,
                                  num_examples INTEGER NOT NULL);

Client ids come from `client_metadata`; a client's examples are the `examples` rows with its
`client_id` (and `split_name` when a split is chosen).
"""

from __future__ import annotations

import collections
import contextlib
import os
import pathlib
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional

import numpy as np

from federax.simulation.formats.errors import DataFormatError
from federax.simulation.formats.hdf5 import unknown_client_error
from federax.simulation.formats.tf_example import ExampleParseError, FixedLenFeature
from federax.simulation.formats.tf_example import parse_example

REQUIRED_TABLES = frozenset({"examples", "client_metadata"})
REQUIRED_EXAMPLES_COLUMNS = frozenset({"split_name", "client_id", "serialized_example_proto"})
REQUIRED_METADATA_COLUMNS = frozenset({"client_id", "split_name", "num_examples"})
_DAMAGED = ("The file is damaged (truncated or overwritten) or not one of TFF's SQLite files: "
            "download it again.")


class DatabaseFormatError(DataFormatError):
  """A SQLite file is damaged or lacks the tables, columns or values of TFF's layout."""


@contextlib.contextmanager
def _connect(path: str) -> Iterator[sqlite3.Connection]:
  """A read-only connection; SQLite's errors on a damaged file name the file.

  One short-lived connection per call: sqlite3 connections must not cross threads or a fork,
  and opening one costs microseconds next to reading a client.
  """
  uri = pathlib.Path(path).resolve().as_uri() + "?mode=ro"
  try:
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
      yield connection
  except sqlite3.DatabaseError as e:
    raise DatabaseFormatError(f"{path!r}: SQLite cannot read it ({e}). {_DAMAGED}") from None


class SQLiteClientSource:
  """The clients of one split of a TFF SQLite file.

  Args:
    path: a `.sqlite` file in TFF's layout.
    split_name: the `split_name` to select (e.g. 'train', 'heldout', 'test'); `None` reads all
      rows, as TFF does.

  Raises:
    FileNotFoundError: if `path` does not exist.
    DatabaseFormatError: if the file is damaged, or a required table or column is missing.
    ValueError: if no client belongs to `split_name` (the message lists the splits present).

  Example:
    >>> from federax.simulation.formats.tf_example import encode_example
    >>> write_sqlite('tiny.sqlite', {('train', 'a'): [encode_example({'label': 1})]})
    >>> source = SQLiteClientSource('tiny.sqlite', 'train')
    >>> protos = source.read_serialized(source.client_ids[0])  # list of bytes
    >>> len(protos)
    1
  """

  def __init__(self, path: str | os.PathLike, split_name: Optional[str] = None):
    self.path = os.fspath(path)
    self.split_name = split_name
    if not os.path.isfile(self.path):
      raise FileNotFoundError(f"No SQLite file at {self.path!r}; check the path.")
    with _connect(self.path) as connection:
      try:
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
      except sqlite3.DatabaseError as e:
        raise DatabaseFormatError(f"{self.path!r} is not a SQLite database ({e}).") from e
      missing = REQUIRED_TABLES - tables
      if missing:
        raise DatabaseFormatError(
            f"{self.path!r} is not in TFF's SQLite layout: expected tables "
            f"{sorted(REQUIRED_TABLES)}, missing {sorted(missing)} (found {sorted(tables)}).")
      for table, required in (("examples", REQUIRED_EXAMPLES_COLUMNS),
                              ("client_metadata", REQUIRED_METADATA_COLUMNS)):
        columns = {r[1] for r in connection.execute(f"PRAGMA table_info({table})")}
        missing = required - columns
        if missing:
          raise DatabaseFormatError(
              f"{self.path!r}: table `{table}` must have columns {sorted(required)}, missing "
              f"{sorted(missing)} (found {sorted(columns)}).")
      query, args = "SELECT DISTINCT client_id FROM client_metadata", ()
      if split_name is not None:
        query, args = query + " WHERE split_name = ?", (split_name,)
      self.client_ids: list[str] = sorted(r[0] for r in connection.execute(query, args))
      if split_name is not None and not self.client_ids:
        splits = sorted(r[0] for r in connection.execute(
            "SELECT DISTINCT split_name FROM client_metadata"))
        raise ValueError(
            f"No client of {self.path!r} is in split {split_name!r}; the splits present are "
            f"{splits}. Pass one of them as split_name.")
    self._known = frozenset(self.client_ids)

  def _where(self, client_id: str) -> tuple[str, tuple]:
    if client_id not in self._known:
      raise unknown_client_error(client_id, self.client_ids, f"{self.path!r}")
    if self.split_name is None:
      return "client_id = ?", (client_id,)
    return "client_id = ? AND split_name = ?", (client_id, self.split_name)

  def read_serialized(self, client_id: str) -> list[bytes]:
    """Returns one client's serialized examples, in the database's row order (as TFF reads them).

    Raises:
      KeyError: if the split holds no client `client_id`.
      DatabaseFormatError: if the file is damaged, or a row holds no BLOB (e.g. TEXT).
    """
    where, args = self._where(client_id)
    with _connect(self.path) as connection:
      rows = connection.execute(f"SELECT serialized_example_proto FROM examples WHERE {where}",
                                args)
      protos = []
      for i, (value,) in enumerate(rows):
        if not isinstance(value, bytes):
          kind = {str: "TEXT", int: "an INTEGER", float: "a REAL"}.get(type(value), "NULL")
          raise DatabaseFormatError(
              f"{self.path!r}: example {i} of client {client_id!r} holds {kind} in "
              f"serialized_example_proto, expected a BLOB (a serialized tf.train.Example). "
              f"{_DAMAGED}")
        protos.append(value)
      return protos

  def num_examples(self, client_id: str) -> int:
    """One client's example count, from `client_metadata` (no example is read)."""
    where, args = self._where(client_id)
    with _connect(self.path) as connection:
      row = connection.execute(
          f"SELECT SUM(num_examples) FROM client_metadata WHERE {where}", args).fetchone()
    return int(row[0] or 0)


def write_sqlite(path: str | os.PathLike,
                 clients: Mapping[tuple[str, str], Sequence[bytes]]) -> None:
  """Writes serialized examples in TFF's SQLite layout (fixtures and exports).

  Args:
    path: the database to create (must not exist).
    clients: (split_name, client_id) -> that client's serialized `tf.train.Example`s.

  Raises:
    FileExistsError: if `path` exists.

  Example:
    >>> from federax.simulation.formats.tf_example import encode_example
    >>> write_sqlite('tiny.sqlite', {('train', 'a'): [encode_example({'label': 1})]})
  """
  path = os.fspath(path)
  if os.path.exists(path):
    raise FileExistsError(f"{path!r} already exists; remove it or choose another path.")
  connection = sqlite3.connect(path)
  try:
    connection.execute("CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT "
                       "NULL, serialized_example_proto BLOB NOT NULL)")
    connection.execute("CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT "
                       "NOT NULL, num_examples INTEGER NOT NULL)")
    for (split_name, client_id), protos in clients.items():
      connection.executemany(
          "INSERT INTO examples (split_name, client_id, serialized_example_proto) "
          "VALUES (?, ?, ?)", [(split_name, client_id, p) for p in protos])
      connection.execute(
          "INSERT INTO client_metadata (client_id, split_name, num_examples) VALUES (?, ?, ?)",
          (client_id, split_name, len(protos)))
    connection.commit()
  finally:
    connection.close()


def parse_columns(protos: Sequence[bytes], spec: Mapping[str, FixedLenFeature],
                  where: str = "") -> collections.OrderedDict[str, np.ndarray]:
  """Parses serialized Examples into one stacked array per feature, in the spec's order.

  Raises:
    ExampleParseError: naming `where` and the example's index, if one does not parse.
  """
  rows = []
  for i, proto in enumerate(protos):
    try:
      rows.append(parse_example(proto, spec))
    except ExampleParseError as e:
      raise ExampleParseError(f"{where}example {i}: {e}" if where else f"example {i}: {e}"
                              ) from None
  columns = collections.OrderedDict()
  for name, (shape, dtype) in spec.items():
    if rows:
      columns[name] = np.stack([r[name] for r in rows])
    else:
      columns[name] = np.zeros((0, *shape), np.dtype(dtype))
  return columns


def sql_client_data(path: str | os.PathLike, split_name: Optional[str],
                    spec: Mapping[str, FixedLenFeature]) -> Any:
  """A lazy `ClientData` over one split of a TFF SQLite file, with its Examples parsed.

  Args:
    path: a `.sqlite` file in TFF's layout.
    split_name: the split to read (None: all rows).
    spec: feature name -> `FixedLenFeature(shape, dtype)`; elements are dicts in this order.

  Returns:
    A `ClientData`; a client's rows are read and parsed only when its dataset is created.

  Raises:
    See `SQLiteClientSource`.

  Example:
    >>> from federax.simulation.formats.tf_example import FixedLenFeature, encode_example
    >>> write_sqlite('digits.sqlite', {('train', 'a'): [encode_example({'label': 7})]})
    >>> spec = {'label': FixedLenFeature((), np.int32)}
    >>> train = sql_client_data('digits.sqlite', 'train', spec)
    >>> [int(e['label']) for e in train.create_dataset('a')]
    [7]
  """
  from federax.simulation.client_data import ClientData  # pylint: disable=g-import-not-at-top
  from federax.data import Dataset  # pylint: disable=g-import-not-at-top
  from federax.data._elements import frozen  # pylint: disable=g-import-not-at-top

  source = SQLiteClientSource(path, split_name)
  spec = collections.OrderedDict(spec)

  def create_dataset(client_id: str) -> Dataset:
    where = f"{source.path!r}, client {client_id!r}, "
    return Dataset.from_tensor_slices(
        frozen(parse_columns(source.read_serialized(client_id), spec, where)))

  return ClientData.from_clients_and_fn(source.client_ids, create_dataset)
