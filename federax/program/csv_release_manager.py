"""`CSVFileReleaseManager`: one CSV row per released value, one column per metric."""

from __future__ import annotations

import csv
import enum
import io
import json
import logging
import math
import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from federax._checks import check_int
from federax.program import _atomic
from federax.program._flatten import flatten
from federax.program.release_manager import ReleaseManager

_logger = logging.getLogger(__name__)


class CSVSaveMode(enum.Enum):
  """How `CSVFileReleaseManager` writes a row (TFF's `tff.program.CSVSaveMode`).

  APPEND appends the row to the file when its columns are already in the header; WRITE rewrites
  the whole file (atomically) on each release.
  """

  APPEND = "append"
  WRITE = "write"


class FileReleaseManagerIncompatibleFileError(ValueError):
  """An existing file cannot be continued: no key column, or rows that do not parse."""


def _float_text(x: Any) -> str:
  """Text that reads back as exactly `x` in its dtype: NumPy's shortest digits, else `repr`."""
  if isinstance(x, np.generic) and x.dtype in (np.float16, np.float32, np.float64):
    return str(x)  # NumPy prints the shortest round-tripping digits for the dtype.
  return repr(float(x))  # Python floats; ml_dtypes' (bfloat16, ...) widen exactly to float64.


def _is_float(x: Any) -> bool:
  return isinstance(x, float) or (isinstance(x, np.generic)
                                  and jnp.issubdtype(x.dtype, jnp.floating))


def _cell(leaf: Any) -> str:
  if isinstance(leaf, (bool, np.bool_)):
    return str(bool(leaf))
  if isinstance(leaf, np.ndarray):
    return _json_array(leaf)
  if _is_float(leaf):
    return _float_text(leaf)
  if isinstance(leaf, np.generic) and jnp.issubdtype(leaf.dtype, jnp.integer):
    return str(int(leaf))  # ml_dtypes' int4 included.
  return str(leaf)


def _json_array(array: np.ndarray) -> str:
  """`array` as a JSON list, floats exact for their dtype (`NaN`/`Infinity` as Python's json)."""
  if array.ndim > 1:
    return "[" + ", ".join(_json_array(row) for row in array) + "]"
  if array.ndim == 1:
    return "[" + ", ".join(_json_scalar(x) for x in array) + "]"
  return _json_scalar(array[()])


def _json_scalar(x: Any) -> str:
  if isinstance(x, (np.bool_, bool)):
    return "true" if x else "false"
  if isinstance(x, (str, bytes)):
    return json.dumps(x.decode() if isinstance(x, bytes) else str(x))
  if jnp.issubdtype(x.dtype, jnp.integer):
    return str(int(x))
  if jnp.issubdtype(x.dtype, jnp.complexfloating):
    return json.dumps(str(x))
  value = float(x)
  if math.isnan(value):
    return "NaN"
  if math.isinf(value):
    return "Infinity" if value > 0 else "-Infinity"
  return _float_text(x)


class CSVFileReleaseManager(ReleaseManager):
  """Releases values as rows of a CSV file: TFF's `tff.program.CSVFileReleaseManager`.

  Each release writes one row: the key in column `key_fieldname`, then one column per leaf of
  the value, named by `flatten` (`{'client_work': {'train': {'loss': 1.0}}}` fills column
  `client_work/train/loss`). Cells are exact: a float reads back as the identical value when
  parsed in the dtype it was released in (`np.float32(text)` for a float32 metric, `float(text)`
  for a Python float); a one-element array is written as its scalar; a larger array as a JSON
  list (`[1.5, 2.0]`); booleans as `True`/`False`. A value with new columns extends the header,
  earlier rows leaving them empty.

  Releasing a key less than or equal to the latest released key first removes the rows with
  keys from that key on. A program resumed from the checkpoint of round `k` therefore rewrites
  rounds `k+1, ...` instead of duplicating them. Every change other than an append rewrites the
  file atomically (temporary sibling, fsync, rename; a sibling left by a crash is removed when
  the file is next opened); a row torn by a crash during an append is dropped, with a warning, at
  the next release. Appends are not fsync'ed one by one (they survive the process being killed,
  not the machine crashing); `flush()`, which `run_training_process` calls before each
  checkpoint, fsyncs them.

  Example:
    >>> manager = fx.program.CSVFileReleaseManager("/tmp/run1/metrics.csv")
    >>> manager.release({"train": {"loss": np.float32(0.52)}}, key=1)
    >>> open("/tmp/run1/metrics.csv").read()
    'key,train/loss\\n1,0.52\\n'
  """

  def __init__(self, file_path: str | os.PathLike[str],
               save_mode: CSVSaveMode = CSVSaveMode.APPEND, key_fieldname: str = "key"):
    """Opens (or creates) the CSV file at `file_path`.

    Raises:
      ValueError: if `file_path` or `key_fieldname` is empty.
      TypeError: if `save_mode` is not a `CSVSaveMode`.
      FileReleaseManagerIncompatibleFileError: if the file exists without a `key_fieldname`
        column, or a row's key is not an integer.
    """
    if not os.fspath(file_path):
      raise ValueError("CSVFileReleaseManager: `file_path` must not be empty.")
    if not isinstance(save_mode, CSVSaveMode):
      raise TypeError(f"CSVFileReleaseManager: `save_mode` must be a CSVSaveMode, got "
                      f"{save_mode!r}.")
    if not key_fieldname:
      raise ValueError("CSVFileReleaseManager: `key_fieldname` must not be empty.")
    self._path = os.fspath(file_path)
    self._save_mode = save_mode
    self._key = key_fieldname
    os.makedirs(os.path.dirname(os.path.abspath(self._path)), exist_ok=True)
    for temp in _atomic.remove_stale_temp_files(self._path):
      _logger.info("Removed the temporary file of an interrupted rewrite: %s", temp)
    self._torn = False
    self._latest_key = None
    if os.path.exists(self._path) and os.path.getsize(self._path):
      self._fieldnames, rows, self._torn = self._read()
      if rows:
        self._latest_key = rows[-1][1]
    else:
      self._fieldnames = [self._key]
      self._write(self._fieldnames, [])

  def _read(self) -> tuple[list[str], list[tuple[dict[str, Any], int]], bool]:
    """Returns the header, the rows with their keys, and whether a torn last row was dropped."""
    with open(self._path, newline="", encoding="utf-8") as f:
      text = f.read()
    torn = bool(text) and not text.endswith("\n")
    if torn:
      text = text[:text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text))
    fieldnames = list(reader.fieldnames or [])
    if self._key not in fieldnames:
      raise FileReleaseManagerIncompatibleFileError(
          f"CSVFileReleaseManager: {self._path} exists but has no {self._key!r} column (its "
          f"columns: {fieldnames}). It was written by something else, or with another "
          "`key_fieldname`; pass that, or another file.")
    rows = []
    for row in reader:
      if None in row:
        raise FileReleaseManagerIncompatibleFileError(
            f"CSVFileReleaseManager: line {reader.line_num} of {self._path} has more cells than "
            "the header has columns.")
      try:
        rows.append((row, int(row[self._key])))
      except (KeyError, TypeError, ValueError):
        raise FileReleaseManagerIncompatibleFileError(
            f"CSVFileReleaseManager: line {reader.line_num} of {self._path} has key "
            f"{row.get(self._key)!r} in column {self._key!r}, expected an integer.") from None
    return fieldnames, rows, torn

  def _write(self, fieldnames: list[str], rows: list[dict[str, Any]]) -> None:
    with _atomic.atomic_file(self._path, "w", newline="", encoding="utf-8") as f:
      writer = csv.DictWriter(f, fieldnames=fieldnames)
      writer.writeheader()
      writer.writerows(rows)

  def flush(self) -> None:
    """fsyncs the file, so every row released so far survives a machine crash."""
    if os.path.exists(self._path):
      _atomic.fsync_file(self._path)

  def release(self, value: Any, key: int) -> None:
    """Writes `value` as the row of `key`, first removing rows with keys `>= key` if any.

    Args:
      value: a structure of metrics (see `flatten`).
      key: the round or step, an integer.

    Raises:
      ValueError: if a leaf's name is the key column's name, or two leaves share a name.
    """
    key = check_int(key, "CSVFileReleaseManager.release(key=...)")
    row = {self._key: str(key)}
    for name, leaf in flatten(value).items():
      if name == self._key:
        raise ValueError(f"CSVFileReleaseManager: the released value has a leaf named "
                         f"{name!r}, the key column's name; rename it or pass another "
                         "`key_fieldname`.")
      row[name] = _cell(leaf)
    new_columns = [name for name in row if name not in self._fieldnames]
    rewind = self._latest_key is not None and key <= self._latest_key
    if self._save_mode is CSVSaveMode.APPEND and not (rewind or new_columns or self._torn):
      with open(self._path, "a", newline="", encoding="utf-8") as f:
        csv.DictWriter(f, fieldnames=self._fieldnames).writerow(row)
    else:
      fieldnames, rows, torn = self._read()
      if torn:
        _logger.warning("CSVFileReleaseManager: dropped the incomplete last line of %s (an "
                        "interrupted append).", self._path)
      kept = [r for r, k in rows if k < key]
      fieldnames += [name for name in row if name not in fieldnames]
      self._write(fieldnames, kept + [row])
      self._fieldnames, self._torn = fieldnames, False
    self._latest_key = key
