"""CSVFileReleaseManager: columns by path, header growth, rewinds on resume, exact numbers."""

import collections
import csv
import json
import logging
import os

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from federax import program


def read(path):
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    return reader.fieldnames, list(reader)


def metrics(loss, extra=None):
  value = collections.OrderedDict(
      client_work=collections.OrderedDict(train={"loss": np.float32(loss), "num_examples": 22}))
  if extra:
    value["finalizer"] = extra
  return value


@pytest.mark.parametrize("mode", list(program.CSVSaveMode))
def test_rows_by_key_with_columns_named_by_path(tmp_path, mode):
  path = tmp_path / "out" / "metrics.csv"
  manager = program.CSVFileReleaseManager(path, save_mode=mode)
  manager.release(metrics(1.5), 1)
  manager.release(metrics(0.75), 2)
  fieldnames, rows = read(path)
  assert fieldnames == ["key", "client_work/train/loss", "client_work/train/num_examples"]
  assert rows == [
      {"key": "1", "client_work/train/loss": "1.5", "client_work/train/num_examples": "22"},
      {"key": "2", "client_work/train/loss": "0.75", "client_work/train/num_examples": "22"}]


def test_append_mode_appends_in_place(tmp_path):
  path = tmp_path / "metrics.csv"
  manager = program.CSVFileReleaseManager(path)
  manager.release(metrics(1.0), 1)
  inode = os.stat(path).st_ino
  manager.release(metrics(2.0), 2)
  assert os.stat(path).st_ino == inode  # Appended, not rewritten.
  manager.release(metrics(3.0, extra={"norm": 0.5}), 3)
  assert os.stat(path).st_ino != inode  # A new column rewrites the file (atomically).


def test_new_columns_extend_the_header(tmp_path):
  path = tmp_path / "metrics.csv"
  manager = program.CSVFileReleaseManager(path)
  manager.release({"a": 1}, 1)
  manager.release({"b": 2, "a": 3}, 2)
  manager.release({"c": "x"}, 3)
  fieldnames, rows = read(path)
  assert fieldnames == ["key", "a", "b", "c"]
  assert [list(r.values()) for r in rows] == [["1", "1", "", ""], ["2", "3", "2", ""],
                                             ["3", "", "", "x"]]


def test_a_resumed_run_rewrites_the_rounds_after_its_checkpoint(tmp_path):
  path = tmp_path / "metrics.csv"
  first_run = program.CSVFileReleaseManager(path)
  for key in range(1, 6):
    first_run.release({"loss": float(key)}, key)
  resumed = program.CSVFileReleaseManager(path)  # Resumed from the checkpoint of round 2.
  resumed.release({"loss": 30.0, "new": True}, 3)
  resumed.release({"loss": 40.0}, 4)
  fieldnames, rows = read(path)
  assert fieldnames == ["key", "loss", "new"]
  assert [(r["key"], r["loss"], r["new"]) for r in rows] == [
      ("1", "1.0", ""), ("2", "2.0", ""), ("3", "30.0", "True"), ("4", "40.0", "")]
  resumed.release({"loss": 0.0}, 1)  # A rewind within one run drops the later rows too.
  assert [r["key"] for r in read(path)[1]] == ["1"]


def test_floats_read_back_exactly_in_their_dtype(tmp_path):
  rng = np.random.default_rng(0)
  float32s = np.concatenate([rng.normal(size=200) * 10.0 ** rng.integers(-30, 30, 200),
                             [0.1, 1e-45, 3.4028235e38, -0.0, np.inf, -np.inf, np.nan]])
  float32s = float32s.astype(np.float32)
  float64s = [float(x) for x in rng.normal(size=50)] + [0.1, 1 / 3, 5e-324]
  float16s = (rng.normal(size=30) * 100).astype(np.float16)
  bfloat16s = rng.normal(size=20).astype(ml_dtypes.bfloat16)
  path = tmp_path / "metrics.csv"
  manager = program.CSVFileReleaseManager(path)
  columns = zip(float32s, float64s * 5, np.tile(float16s, 8), np.tile(bfloat16s, 12))
  for i, (x32, x64, x16, b16) in enumerate(columns):
    manager.release({"f32": x32, "f64": x64, "f16": x16, "bf16": b16}, i)
  rows = read(path)[1]
  back32 = np.array([r["f32"] for r in rows]).astype(np.float32)
  np.testing.assert_array_equal(back32.view(np.uint32), float32s[:len(rows)].view(np.uint32))
  assert [float(r["f64"]) for r in rows] == (float64s * 5)[:len(rows)]
  back16 = np.array([r["f16"] for r in rows]).astype(np.float16)
  np.testing.assert_array_equal(back16, np.tile(float16s, 8)[:len(rows)])
  backbf = np.array([float(r["bf16"]) for r in rows]).astype(ml_dtypes.bfloat16)
  np.testing.assert_array_equal(backbf.view(np.uint16),
                                np.tile(bfloat16s, 12)[:len(rows)].view(np.uint16))
  assert len(rows) == len(float32s)
  assert [r["f32"] for r in rows[-7:]] == ["0.1", "1e-45", "3.4028235e+38", "-0.0", "inf", "-inf",
                                           "nan"]
  assert rows[0]["f32"] == str(float32s[0])  # Shortest float32 digits, not float64's.


def test_arrays_are_scalars_or_json_lists(tmp_path):
  path = tmp_path / "metrics.csv"
  manager = program.CSVFileReleaseManager(path)
  matrix = np.array([[0.1, np.nan], [np.inf, 2.0]], np.float32)
  manager.release({"one": jnp.ones((1, 1)), "m": matrix, "flags": np.array([True, False]),
                   "ints": np.arange(3, dtype=np.int8), "names": np.array(["a", 'b"c'])}, 1)
  row = read(path)[1][0]
  assert row["one"] == "1.0"
  assert row["m"] == "[[0.1, NaN], [Infinity, 2.0]]"
  np.testing.assert_array_equal(np.array(json.loads(row["m"]), np.float32), matrix)
  assert json.loads(row["flags"]) == [True, False] and json.loads(row["ints"]) == [0, 1, 2]
  assert json.loads(row["names"]) == ["a", 'b"c']


def test_a_row_torn_by_a_crash_is_dropped_with_a_warning(tmp_path, caplog):
  path = tmp_path / "metrics.csv"
  path.write_text("key,loss\r\n1,0.5\r\n2,0.2")  # The append of round 2 was cut short.
  manager = program.CSVFileReleaseManager(path)
  with caplog.at_level(logging.WARNING):
    manager.release({"loss": 0.25}, 2)
  assert read(path)[1] == [{"key": "1", "loss": "0.5"}, {"key": "2", "loss": "0.25"}]
  assert "dropped the incomplete last line" in caplog.text


def test_an_incompatible_file_is_refused(tmp_path):
  path = tmp_path / "metrics.csv"
  path.write_text("round,loss\n1,0.5\n")
  with pytest.raises(program.FileReleaseManagerIncompatibleFileError,
                     match=r"metrics.csv exists but has no 'key' column \(its columns: "
                           r"\['round', 'loss'\]\)"):
    program.CSVFileReleaseManager(path)
  assert read(path)[1] == [{"round": "1", "loss": "0.5"}]  # Untouched.
  program.CSVFileReleaseManager(path, key_fieldname="round").release({"loss": 0.25}, 2)
  path.write_text("key,loss\n1,0.5\nnext,0.1\n")
  with pytest.raises(program.FileReleaseManagerIncompatibleFileError,
                     match=r"line 3 of .* has key 'next' in column 'key', expected an integer"):
    program.CSVFileReleaseManager(path)


def test_bad_arguments_are_refused(tmp_path):
  manager = program.CSVFileReleaseManager(tmp_path / "m.csv")
  with pytest.raises(ValueError, match=r"has a leaf named 'key', the key column's name"):
    manager.release({"key": 1}, 1)
  with pytest.raises(TypeError, match=r"release\(key=...\) expects an int, got '1' \(a str\)"):
    manager.release({"a": 1}, "1")
  with pytest.raises(TypeError, match=r"`save_mode` must be a CSVSaveMode, got 'append'"):
    program.CSVFileReleaseManager(tmp_path / "m.csv", save_mode="append")
  with pytest.raises(ValueError, match=r"`key_fieldname` must not be empty"):
    program.CSVFileReleaseManager(tmp_path / "m.csv", key_fieldname="")


def test_rows_longer_than_the_header_and_empty_paths_are_refused(tmp_path):
  path = tmp_path / "metrics.csv"
  path.write_text("key,loss\n1,0.5,extra\n")
  with pytest.raises(program.FileReleaseManagerIncompatibleFileError,
                     match=r"line 2 of .*metrics.csv has more cells than the header has columns"):
    program.CSVFileReleaseManager(path)
  with pytest.raises(ValueError, match="`file_path` must not be empty"):
    program.CSVFileReleaseManager("")


def test_a_rewrite_killed_midway_leaves_the_old_file_and_a_removable_temp(tmp_path):
  path = tmp_path / "metrics.csv"
  program.CSVFileReleaseManager(path).release({"loss": 0.5}, 1)
  before = path.read_bytes()
  leftover = tmp_path / ".metrics.csv.tmp-0123abcd"  # A rewrite killed before its rename.
  leftover.write_text("key,loss,new\n1,0.5,")
  other = tmp_path / ".other.csv.tmp-0123abcd"
  other.write_text("")
  manager = program.CSVFileReleaseManager(path)
  assert not leftover.exists() and other.exists() and path.read_bytes() == before
  manager.release({"loss": 0.25}, 2)
  assert [r["loss"] for r in read(path)[1]] == ["0.5", "0.25"]


def test_flush_fsyncs_the_file(tmp_path, monkeypatch):
  import os
  synced = []
  real_fsync = os.fsync
  monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
  manager = program.CSVFileReleaseManager(tmp_path / "m.csv")
  manager.flush()  # No file yet: nothing to do.
  manager.release({"loss": 1.0}, key=1)
  manager.release({"loss": 2.0}, key=2)
  before = len(synced)
  manager.flush()
  assert len(synced) == before + 1
