"""TFF's HDF5 layout (`examples/<client_id>/<feature>`), read lazily with h5py."""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from federax.simulation.formats.errors import DataFormatError, data_format_error

_REDOWNLOAD = ("The file is damaged (truncated or overwritten) or not one of TFF's HDF5 files: "
               "download it again.")


def import_h5py() -> Any:
  """Imports h5py, the optional dependency behind the HDF5 readers."""
  try:
    import h5py  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "Reading TFF's HDF5 files needs h5py, which is not installed. Install it with "
        "`pip install 'federax[data]'` (or `pip install h5py`).") from e
  return h5py


def to_numpy(array: np.ndarray) -> np.ndarray:
  """Byte strings (fixed or variable length) become `np.str_` arrays; other arrays pass through.

  Raises:
    UnicodeDecodeError: if a byte string is not UTF-8.
  """
  if array.dtype.kind == "S":
    return np.char.decode(array, "utf-8")
  if array.dtype.kind == "O":
    flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
    return np.array(flat, dtype=np.str_).reshape(array.shape)
  return array


class UnknownClientError(KeyError):
  """A client id a reader does not hold (a KeyError whose message prints unquoted)."""

  def __str__(self) -> str:
    return str(self.args[0]) if self.args else ""


def unknown_client_error(client_id: Any, client_ids: list[str], where: str) -> KeyError:
  """The KeyError every reader raises for a client id it does not hold."""
  close = difflib.get_close_matches(str(client_id), client_ids, n=3)
  hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
  shown = ", ".join(map(repr, client_ids[:3])) + (", ..." if len(client_ids) > 3 else "")
  return UnknownClientError(
      f"Client {client_id!r} is not in {where}, which holds {len(client_ids)} clients "
      f"({shown}).{hint} Use one of `client_ids`.")


class HDF5ClientSource:
  """The clients of one TFF HDF5 file: `examples/<client_id>/<feature>` datasets.

  The file is opened on first use and the handle is kept; a process forked after that reopens
  it (HDF5 handles must not be shared across fork), and a lock serializes reads from threads.
  Only the client ids are read up front: `read(client_id)` loads one client.

  Args:
    path: an `.h5` file in TFF's layout (e.g. `shakespeare_train.h5`).

  Raises:
    FileNotFoundError: if `path` does not exist.
    DataFormatError: if the file is not a readable HDF5 file (truncated, overwritten) or has
      no `examples` group; a `ValueError`.
    ImportError: if h5py is not installed.

  Example:
    >>> write_hdf5('tiny.h5', {'a': {'snippets': np.array(['Yonder comes my master.'])}})
    >>> source = HDF5ClientSource('tiny.h5')
    >>> source.read(source.client_ids[0])['snippets'][:1]
    array(['Yonder comes my master.'], dtype='<U...')
  """

  def __init__(self, path: str | os.PathLike):
    self._h5py = import_h5py()
    self.path = os.fspath(path)
    if not os.path.isfile(self.path):
      raise FileNotFoundError(
          f"No HDF5 file at {self.path!r}. Expected a file in TFF's layout "
          "(examples/<client_id>/<feature>); check the path.")
    self._lock = threading.Lock()
    self._file = None
    self._pid = None
    with self._lock:
      examples = self._examples()
      self.client_ids: list[str] = self._guard(lambda: list(examples.keys()), "its client list")

  def _examples(self):
    """The `examples` group of a handle valid in this process (call with the lock held)."""
    if self._file is None or self._pid != os.getpid():
      # After fork, the parent's handle is dropped unused rather than closed here.
      self._file = self._guard(lambda: self._h5py.File(self.path, "r"), "the file")
      self._pid = os.getpid()
    examples = self._guard(lambda: self._file.get("examples"), "the group 'examples'")
    if not isinstance(examples, self._h5py.Group):
      found = (sorted(self._file.keys()) if examples is None
               else f"a {type(examples).__name__} 'examples'")
      raise DataFormatError(
          f"{self.path!r} is not in TFF's HDF5 layout: expected a top-level group 'examples' "
          f"holding one group per client, found {found}.")
    return examples

  def _guard(self, read: Callable[[], Any], what: str) -> Any:
    """`read()`, with HDF5's errors on a damaged file raised as one that names the file."""
    try:
      return read()
    except (OSError, RuntimeError, KeyError, ValueError) as e:
      if isinstance(e, DataFormatError):
        raise
      raise data_format_error(repr(self.path), f"HDF5 cannot read {what} ({e})",
                              hint=_REDOWNLOAD) from None

  def read(self, client_id: str) -> dict[str, np.ndarray]:
    """Loads one client's features (sorted by name, as TFF yields them) as NumPy arrays.

    Raises:
      KeyError: if the file holds no client `client_id`.
      DataFormatError: if the client's data cannot be read (a damaged file), is not a group of
        datasets, or holds byte strings that are not UTF-8.
    """
    with self._lock:
      examples = self._examples()
      what = f"client {client_id!r}"
      if not self._guard(lambda: client_id in examples, what):
        raise unknown_client_error(client_id, self.client_ids, repr(self.path))
      group = self._guard(lambda: examples.get(client_id), what)
      if not isinstance(group, self._h5py.Group):
        raise data_format_error(
            repr(self.path), f"{what} is a {type(group).__name__}, not a group",
            expected="examples/<client_id>/<feature> datasets", hint=_REDOWNLOAD)
      features = {}
      for name in self._guard(lambda: sorted(group.keys()), what):
        feature = f"feature {name!r} of {what}"
        dataset = self._guard(lambda: group[name], feature)
        if not isinstance(dataset, self._h5py.Dataset):
          raise data_format_error(
              repr(self.path), f"{feature} is a {type(dataset).__name__}",
              expected="a dataset", hint=_REDOWNLOAD)
        try:
          features[name] = to_numpy(self._guard(lambda: dataset[()], feature))
        except UnicodeDecodeError as e:
          raise data_format_error(
              repr(self.path), f"{feature} holds a byte string that is not "
              f"UTF-8 ({e.reason} at byte {e.start} of {e.object[:32]!r})",
              expected="UTF-8 text, as TFF writes it", hint=_REDOWNLOAD) from None
      return features

  def close(self) -> None:
    """Closes the file; a later `read` reopens it."""
    with self._lock:
      if self._file is not None and self._pid == os.getpid():
        self._file.close()
      self._file = None

  def __enter__(self) -> HDF5ClientSource:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def __getstate__(self):
    # Pickled (e.g. to a worker process) without the handle or lock; the copy reopens the file.
    return {"path": self.path, "client_ids": self.client_ids}

  def __setstate__(self, state):
    self._h5py = import_h5py()
    self.path, self.client_ids = state["path"], state["client_ids"]
    self._lock, self._file, self._pid = threading.Lock(), None, None


def write_hdf5(path: str | os.PathLike, clients: dict[str, dict[str, Any]]) -> None:
  """Writes clients in TFF's HDF5 layout (used to build fixtures and to export data).

  Args:
    path: the file to create (overwritten).
    clients: client id -> feature name -> array with a leading example axis. Strings are stored
      as UTF-8 byte strings, as TFF stores them.

  Example:
    >>> write_hdf5('tiny.h5', {'a': {'label': np.array([1, 2], np.int32)}})
  """
  h5py = import_h5py()
  with h5py.File(os.fspath(path), "w") as f:
    examples = f.create_group("examples")
    for client_id, features in clients.items():
      group = examples.create_group(client_id)
      for name, value in features.items():
        array = np.asarray(value)
        if array.dtype.kind == "U":
          array = np.char.encode(array, "utf-8")
        group.create_dataset(name, data=array)


def hdf5_client_data(path: str | os.PathLike,
                     element_fn: Callable[[dict[str, np.ndarray]], Any] | None = None) -> Any:
  """A lazy `ClientData` over a TFF HDF5 file, like TFF's `HDF5ClientData`.

  Args:
    path: an `.h5` file in TFF's layout.
    element_fn: maps one client's dict of feature arrays (leading example axis) to the tensors
      to slice (e.g. to cast dtypes or order keys); the identity if None.

  Returns:
    A `ClientData` whose datasets are `Dataset.from_tensor_slices` of each client's features;
    a client is read only when its dataset is created.

  Example:
    >>> write_hdf5('tiny.h5', {'a': {'snippets': np.array(['Yonder comes my master.'])}})
    >>> train = hdf5_client_data('tiny.h5')
    >>> str(next(iter(train.create_dataset(train.client_ids[0])))['snippets'])
    'Yonder comes my master.'
  """
  # Imported here: formats sit below ClientData and must import without it.
  from federax.simulation.client_data import ClientData  # pylint: disable=g-import-not-at-top
  from federax.data import Dataset  # pylint: disable=g-import-not-at-top
  from federax.data._elements import frozen  # pylint: disable=g-import-not-at-top

  source = HDF5ClientSource(path)

  def create_dataset(client_id: str) -> Dataset:
    features = source.read(client_id)
    try:
      elements = element_fn(features) if element_fn else features
    except DataFormatError as e:  # A loader's check of the features: say where they are.
      raise DataFormatError(f"{source.path!r}, client {client_id!r}, {e} {_REDOWNLOAD}"
                            ) from None
    return Dataset.from_tensor_slices(frozen(elements))

  return ClientData.from_clients_and_fn(source.client_ids, create_dataset)
