"""Tests for the HDF5, SQLite and LEAF readers, on fixtures built here and on the real data."""

import gzip
import json
import pathlib
import pickle
import re
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from federax.simulation import formats
from federax.simulation.formats import hdf5, tf_example

h5py = pytest.importorskip("h5py")
# The shared data lives next to the project root (../shared/data), never inside it.
DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
FEMNIST = DATA / "femnist-leaf"


# --- HDF5 -----------------------------------------------------------------------------------


@pytest.fixture
def emnist_h5(tmp_path):
  """An EMNIST-like TFF HDF5 file, written with h5py directly (not with our writer)."""
  rng = np.random.default_rng(0)
  clients = {}
  path = tmp_path / "fed_emnist_digitsonly_train.h5"
  with h5py.File(path, "w") as f:
    for i, n in enumerate([3, 1, 5]):
      cid = f"f{i:04d}_{i:02d}"
      labels = rng.integers(0, 10, n).astype(np.int32)
      pixels = rng.random((n, 28, 28)).astype(np.float32)
      f.create_dataset(f"examples/{cid}/label", data=labels)
      f.create_dataset(f"examples/{cid}/pixels", data=pixels)
      clients[cid] = (labels, pixels)
    f.create_dataset("examples/text/fixed", data=np.array([b"ab", "é".encode()], "S3"))
    f.create_dataset("examples/text/vlen", data=["ab", "é"], dtype=h5py.string_dtype())
  return path, clients


def test_hdf5_reads_clients_lazily(emnist_h5):
  path, clients = emnist_h5
  source = hdf5.HDF5ClientSource(path)
  assert source.client_ids == sorted(clients) + ["text"]
  for cid, (labels, pixels) in clients.items():
    features = source.read(cid)
    assert list(features) == ["label", "pixels"]
    np.testing.assert_array_equal(features["label"], labels)
    np.testing.assert_array_equal(features["pixels"], pixels)
    assert features["pixels"].dtype == np.float32
  text = source.read("text")
  for name in ("fixed", "vlen"):
    assert text[name].dtype.kind == "U"
    assert text[name].tolist() == ["ab", "é"]
  source.close()
  np.testing.assert_array_equal(source.read("f0001_01")["label"], clients["f0001_01"][0])
  with hdf5.HDF5ClientSource(path) as again:
    assert len(again.client_ids) == 4


_FORK_SCRIPT = """
import os, sys
from federax.simulation.formats import hdf5
source = hdf5.HDF5ClientSource(sys.argv[1])
expected = {c: source.read(c) for c in source.client_ids}  # The parent holds an open handle.
pid = os.fork()
if pid == 0:  # The child inherits the handle; reads must reopen the file, not reuse it.
  ok = all((source.read(c)[k] == v).all() for c, f in expected.items() for k, v in f.items())
  os._exit(0 if ok and source._pid == os.getpid() else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert (source.read("f0001_01")["label"] == expected["f0001_01"]["label"]).all()
print("fork ok")
"""


def test_hdf5_source_survives_fork_and_pickle(emnist_h5):
  path, clients = emnist_h5
  source = hdf5.HDF5ClientSource(path)
  source.read("f0000_00")
  copy = pickle.loads(pickle.dumps(source))
  assert copy.client_ids == source.client_ids
  np.testing.assert_array_equal(copy.read("f0002_02")["label"], clients["f0002_02"][0])
  # Forked in a fresh interpreter: this one runs JAX threads, which fork would not respect.
  result = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
  assert result.returncode == 0 and "fork ok" in result.stdout, result.stderr


def test_hdf5_errors(tmp_path, emnist_h5, monkeypatch):
  with pytest.raises(FileNotFoundError, match="No HDF5 file at .*missing.h5.*TFF's layout"):
    hdf5.HDF5ClientSource(tmp_path / "missing.h5")
  with h5py.File(tmp_path / "flat.h5", "w") as f:
    f.create_dataset("label", data=[1])
  with pytest.raises(ValueError, match=r"expected a top-level group 'examples'.*found \['label'\]"):
    hdf5.HDF5ClientSource(tmp_path / "flat.h5")
  source = hdf5.HDF5ClientSource(emnist_h5[0])
  with pytest.raises(KeyError, match=r"Client 'f0000_0' is not in .* 4 clients .*Did you mean "
                     r"'f0000_00'"):
    source.read("f0000_0")
  monkeypatch.setitem(sys.modules, "h5py", None)
  with pytest.raises(ImportError, match=r"pip install 'federax\[data\]'"):
    hdf5.HDF5ClientSource(emnist_h5[0])


def test_write_hdf5_round_trip(tmp_path):
  formats.write_hdf5(tmp_path / "t.h5", {"a": {"s": np.array(["x", "yé"]), "v": np.arange(2)}})
  features = hdf5.HDF5ClientSource(tmp_path / "t.h5").read("a")
  assert features["s"].tolist() == ["x", "yé"]
  np.testing.assert_array_equal(features["v"], [0, 1])


# --- SQLite -----------------------------------------------------------------------------------


@pytest.fixture
def database(tmp_path):
  """A TFF-layout database built with sqlite3 directly, with rows interleaved across clients."""
  path = tmp_path / "data.sqlite"
  rows = [("train", "b", 1), ("train", "a", 2), ("test", "a", 3), ("train", "b", 4),
          ("train", "it's", 5), ("test", "c", 6)]
  con = sqlite3.connect(path)
  con.execute("CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL, "
              "serialized_example_proto BLOB NOT NULL)")
  con.execute("CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT NOT NULL, "
              "num_examples INTEGER NOT NULL)")
  con.execute("CREATE INDEX by_client ON examples (client_id, split_name)")
  for split, cid, value in rows:
    con.execute("INSERT INTO examples VALUES (?, ?, ?)",
                (split, cid, tf_example.encode_example({"v": value})))
  counts = {}
  for split, cid, _ in rows:
    counts[cid, split] = counts.get((cid, split), 0) + 1
  con.executemany("INSERT INTO client_metadata VALUES (?, ?, ?)",
                  [(c, s, n) for (c, s), n in counts.items()])
  con.commit()
  con.close()
  return path


def _values(source, cid):
  return [int(tf_example.decode_example(p)["v"][0]) for p in source.read_serialized(cid)]


def test_sqlite_splits_and_rows(database):
  train = formats.SQLiteClientSource(database, "train")
  assert train.client_ids == ["a", "b", "it's"]
  assert _values(train, "b") == [1, 4] and _values(train, "it's") == [5]
  assert train.num_examples("b") == 2
  test = formats.SQLiteClientSource(database, "test")
  assert test.client_ids == ["a", "c"] and _values(test, "a") == [3]
  everything = formats.SQLiteClientSource(database)
  assert everything.client_ids == ["a", "b", "c", "it's"]
  assert sorted(_values(everything, "a")) == [2, 3] and everything.num_examples("a") == 2


def test_sqlite_errors(tmp_path, database):
  with pytest.raises(FileNotFoundError, match="No SQLite file at .*nope.sqlite"):
    formats.SQLiteClientSource(tmp_path / "nope.sqlite")
  (tmp_path / "text.sqlite").write_text("not a database" * 100)
  with pytest.raises(formats.DatabaseFormatError, match="is not a SQLite database"):
    formats.SQLiteClientSource(tmp_path / "text.sqlite")
  con = sqlite3.connect(tmp_path / "partial.sqlite")
  con.execute("CREATE TABLE examples (client_id TEXT, split_name TEXT)")
  con.commit()
  with pytest.raises(formats.DatabaseFormatError, match=r"missing \['client_metadata'\]"):
    formats.SQLiteClientSource(tmp_path / "partial.sqlite")
  con.execute("CREATE TABLE client_metadata (client_id TEXT, split_name TEXT, num_examples INT)")
  con.commit()
  con.close()
  with pytest.raises(formats.DatabaseFormatError,
                     match=r"must have columns .* missing \['serialized_example_proto'\]"):
    formats.SQLiteClientSource(tmp_path / "partial.sqlite")
  with pytest.raises(ValueError, match=r"split 'validation'; the splits present are "
                     r"\['test', 'train'\]"):
    formats.SQLiteClientSource(database, "validation")
  train = formats.SQLiteClientSource(database, "train")
  with pytest.raises(KeyError, match="Client 'c' is not in"):
    train.read_serialized("c")
  with pytest.raises(FileExistsError, match="already exists"):
    formats.write_sqlite(database, {})


def test_sql_client_data_parses_examples(tmp_path):
  path = tmp_path / "w.sqlite"
  protos = tf_example.encode_examples({"label": [1, 2], "pixels": np.ones((2, 2, 2))})
  formats.write_sqlite(path, {("train", "x"): protos, ("test", "y"): protos[:1]})
  spec = {"label": tf_example.FixedLenFeature((), np.int32),
          "pixels": tf_example.FixedLenFeature((2, 2), np.float32)}
  cd = formats.sql_client_data(path, "train", spec)
  assert cd.client_ids == ["x"]
  elements = list(cd.create_dataset("x"))
  assert [int(e["label"]) for e in elements] == [1, 2]
  assert elements[0]["pixels"].shape == (2, 2) and elements[0]["pixels"].dtype == np.float32
  assert [int(e["label"]) for e in formats.sql_client_data(path, "test", spec).create_dataset(
      "y")] == [1]


# --- LEAF -------------------------------------------------------------------------------------


def _shard(path, users, key_order=("users", "num_samples", "user_data")):
  data = {"users": list(users), "num_samples": [len(d["y"]) for d in users.values()],
          "user_data": users}
  text = json.dumps({k: data[k] for k in key_order})
  path.parent.mkdir(parents=True, exist_ok=True)
  if path.suffix == ".gz":
    path.write_bytes(gzip.compress(text.encode()))
  else:
    path.write_text(text)


def _user(label, n=2):
  return {"x": [[label / 10.0] * 4] * n, "y": [label] * n}


def test_leaf_single_output_directory(tmp_path):
  _shard(tmp_path / "train" / "a.json.gz", {"w1": _user(1), "w2": _user(2, 3)})
  # LEAF writes users first; a shard in another key order still reads (a full parse).
  _shard(tmp_path / "train" / "b.json", {"w3": _user(3)}, ("user_data", "num_samples", "users"))
  _shard(tmp_path / "test" / "a.json.gz", {"w1": _user(1, 1), "w4": _user(4, 1)})
  splits = formats.read_leaf_splits(tmp_path)
  train, test = splits["train"], splits["test"]
  assert train.client_ids == ["w1", "w2", "w3"] and test.client_ids == ["w1", "w4"]
  assert train.num_samples("w2") == 3
  w2 = train.read("w2")
  assert w2["x"].dtype == np.float32 and w2["x"].shape == (3, 4)
  assert w2["y"].dtype == np.int32 and w2["y"].tolist() == [2, 2, 2]
  np.testing.assert_allclose(train.read("w3")["x"], 0.3)


def test_leaf_merges_samples_keeping_each_writer_once(tmp_path):
  # 'dup' is in both samples' train: kept from 'a' (first in sorted order), train and test.
  # 'late' is only test in 'a' but train+test in 'b': kept from 'b', its train owner.
  _shard(tmp_path / "b" / "train" / "s.json", {"dup": _user(9), "late": _user(7, 5)})
  _shard(tmp_path / "b" / "test" / "s.json", {"dup": _user(9, 4), "late": _user(7, 6)})
  _shard(tmp_path / "a" / "train" / "s.json", {"dup": _user(1)})
  _shard(tmp_path / "a" / "test" / "s.json", {"dup": _user(1, 1), "late": _user(5, 1)})
  splits = formats.read_leaf_splits(tmp_path)
  assert splits["train"].client_ids == ["dup", "late"]
  assert splits["train"].read("dup")["y"].tolist() == [1, 1]
  assert splits["test"].read("dup")["y"].tolist() == [1]
  assert splits["train"].read("late")["y"].tolist() == [7] * 5
  assert splits["test"].read("late")["y"].tolist() == [7] * 6


def test_leaf_shard_cache_is_bounded(tmp_path):
  for i in range(4):
    _shard(tmp_path / "train" / f"{i}.json", {f"w{i}": _user(i, 10)})
  unbounded = formats.read_leaf_splits(tmp_path)["train"]
  for _ in range(2):
    for cid in unbounded.client_ids:
      unbounded.read(cid)
  assert unbounded._cache.parses == 4  # Every shard parsed once, then served from the cache.
  tiny = formats.read_leaf_splits(tmp_path, cache_bytes=1)["train"]
  for _ in range(2):
    for cid in tiny.client_ids:
      tiny.read(cid)
  assert tiny._cache.parses == 8 and len(tiny._cache._shards) == 1



def test_leaf_read_feature_scans_the_labels_without_parsing_the_shard(tmp_path):
  # Odd but valid JSON: indentation, y before x, a string feature, escaped and numeric-looking
  # user ids, user_data before the header: the scanned labels are the parsed ones, and no shard
  # is parsed.
  users = {"w\\\"1": {"y": [3, 1], "x": [[0.5, 1.0], [2.0, 3.0]], "s": ["a:b", "\"{"]},
           "17": {"x": [[1.0, 2.0]], "y": [7], "s": ["c"]}, "w3": {"y": [], "x": [], "s": []}}
  path = tmp_path / "train" / "a.json.gz"
  _shard(path, users)
  text = json.dumps({"users": list(users), "num_samples": [2, 1, 0], "user_data": users},
                    indent=2)
  (tmp_path / "train" / "b.json").write_text(text.replace('"w', '"v'))
  _shard(tmp_path / "train" / "c.json", {"u": _user(4)}, ("user_data", "num_samples", "users"))
  scanned = formats.read_leaf_splits(tmp_path)["train"]
  labels = {c: scanned.read_feature(c, "y") for c in scanned.client_ids}
  assert scanned._cache.parses == 0
  parsed = formats.read_leaf_splits(tmp_path)["train"]
  for client, y in labels.items():
    expected = parsed.read(client)["y"]
    assert y.dtype == expected.dtype and y.tolist() == expected.tolist(), client
  assert labels['w\\"1'].tolist() == [3, 1] and labels["17"].tolist() == [7]


@pytest.mark.parametrize("y,error", [
    ([1], "does not hold one value per example"),  # Fewer labels than num_samples.
    ([1.5, 2.5], None),  # Not integers: the full parse converts them, as `read` does.
    (None, KeyError),  # No labels.
])
def test_leaf_read_feature_falls_back_to_the_full_parse(tmp_path, y, error):
  user = {"x": [[0.5], [1.0]]} | ({} if y is None else {"y": y})
  text = json.dumps({"users": ["w"], "num_samples": [2], "user_data": {"w": user}})
  (tmp_path / "train").mkdir()
  (tmp_path / "train" / "s.json").write_text(text)
  source = formats.read_leaf_splits(tmp_path)["train"]
  if error is KeyError:
    with pytest.raises(KeyError):
      source.read_feature("w", "y")
  elif error:
    with pytest.raises(formats.DataFormatError, match=error):
      source.read_feature("w", "y")
  else:
    assert source.read_feature("w", "y").tolist() == source.read("w")["y"].tolist()
    assert source._cache.parses == 1

def test_leaf_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="No directory at .*nowhere"):
    formats.read_leaf_splits(tmp_path / "nowhere")
  (tmp_path / "empty" / "misc").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match="is not a LEAF output directory: expected train/ "
                     "and test/"):
    formats.read_leaf_splits(tmp_path / "empty")
  bad = tmp_path / "bad" / "train"
  bad.mkdir(parents=True)
  (bad / "s.json").write_text('{"users": ["a", "b"], "num_samples": [1], "user_data": {}}')
  with pytest.raises(ValueError, match="lists 2 users but 1 num_samples"):
    formats.read_leaf_splits(tmp_path / "bad")
  (bad / "s.json").write_text('{"user_data": {}, "users": []}')
  with pytest.raises(ValueError, match=r"is not a LEAF shard: .*missing \['num_samples'\]"):
    formats.read_leaf_splits(tmp_path / "bad")
  (bad / "s.json").write_text('{"users": [')
  with pytest.raises(ValueError, match="is not valid JSON"):
    formats.read_leaf_splits(tmp_path / "bad")
  _shard(tmp_path / "ok" / "train" / "s.json", {"w": _user(1)})
  with pytest.raises(KeyError, match="Client 'v' is not in the train split"):
    formats.read_leaf_splits(tmp_path / "ok")["train"].read("v")


def test_leaf_corrupt_or_missing_shards_name_the_file(tmp_path):
  users = {f"w{i}": {"x": [[i / 7.0] * 784] * 40, "y": list(range(40))} for i in range(3)}
  _shard(tmp_path / "good" / "train" / "s.json.gz", users)
  whole = (tmp_path / "good" / "train" / "s.json.gz").read_bytes()
  cases = {
      # Header readable, body cut: indexing works, the first read fails.
      "half.json.gz": (whole[:len(whole) // 2], r"is corrupt: EOFError: Compressed file ended"),
      "stub.json.gz": (whole[:20], r"is corrupt: EOFError"),
      "plain.json.gz": (b'{"users": []}', r"is corrupt: BadGzipFile: Not a gzipped file"),
      "cut.json": (json.dumps({"users": ["w0"], "num_samples": [1],
                               "user_data": {"w0": {"x": [[0.5]], "y": [1]}}}).encode()[:-9],
                   r"is not valid JSON .*may be truncated"),
  }
  for name, (content, message) in cases.items():
    shard = tmp_path / name / "train" / name
    shard.parent.mkdir(parents=True)
    shard.write_bytes(content)
    with pytest.raises(ValueError, match=rf"LEAF shard '{re.escape(str(shard))}' {message}"):
      source = formats.read_leaf_splits(tmp_path / name)["train"]
      source.read(source.client_ids[0])
  source = formats.read_leaf_splits(tmp_path / "good")["train"]
  (tmp_path / "good" / "train" / "s.json.gz").unlink()
  shard = re.escape(str(tmp_path / "good" / "train" / "s.json.gz"))
  with pytest.raises(FileNotFoundError, match=rf"LEAF shard '{shard}' is missing; it was listed "
                     r"when the directory was indexed\. Re-open the data"):
    source.read("w1")


def test_missing_leaf_and_hdf5_paths_are_named(tmp_path):
  with pytest.raises(FileNotFoundError,
                     match=rf"No directory at '{re.escape(str(tmp_path / 'nowhere'))}'"):
    formats.load_leaf(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError,
                     match=rf"No HDF5 file at '{re.escape(str(tmp_path / 'gone.h5'))}'"):
    formats.hdf5_client_data(tmp_path / "gone.h5")


def test_write_leaf_shard_round_trip(tmp_path):
  formats.write_leaf_shard(tmp_path / "train" / "s.json.gz", {"w": _user(3, 2)})
  assert formats.read_leaf_splits(tmp_path)["train"].read("w")["y"].tolist() == [3, 3]


@pytest.mark.skipif(not FEMNIST.is_dir(), reason="shared FEMNIST data not present")
def test_leaf_real_femnist_flic_counts():
  train = formats.read_leaf_splits(FEMNIST / "flic")["train"]
  assert len(train.client_ids) == 110
  assert sum(train.num_samples(c) for c in train.client_ids) == 14_697
  first = train.read(train.client_ids[0])
  assert first["x"].shape == (train.num_samples(train.client_ids[0]), 784)
  assert 0.0 <= first["x"].min() and first["x"].max() <= 1.0


@pytest.mark.skipif(not FEMNIST.is_dir(), reason="shared FEMNIST data not present")
def test_leaf_real_femnist_merge_keeps_duplicates_once():
  samples = ["flic", "leaf-torch", "wenzhu"]
  merged = formats.read_leaf_splits(FEMNIST)
  for split in ("train", "test"):
    distinct = set()
    for s in samples:
      distinct |= set(formats.read_leaf_splits(FEMNIST / s)[split].client_ids)
    assert len(merged[split].client_ids) == len(distinct)
    assert set(merged[split].client_ids) == distinct
  sizes = [len(formats.read_leaf_splits(FEMNIST / s)["train"].client_ids) for s in samples]
  assert len(merged["train"].client_ids) < sum(sizes)  # Some writers were in two samples.


# --- What every loader hands out -----------------------------------------------------------


def test_the_loaders_datasets_read_from_read_only_arrays(tmp_path, emnist_h5):
  """A loader owns the arrays it parsed, so it makes them read-only: a dataset of them then
  reads the same every time, and the vectorized runtime keeps a cohort of them between calls
  (`CohortCache`). A user's array passed to `from_tensor_slices` stays writable."""
  from federax.data import Dataset
  from federax.simulation.datasets import femnist
  formats.write_leaf_shard(tmp_path / "leaf" / "train" / "s.json", {"w": _user(3, 2)})
  formats.write_leaf_shard(tmp_path / "leaf" / "test" / "s.json", {"w": _user(3, 1)})
  protos = tf_example.encode_examples({"label": [1, 2]})
  formats.write_sqlite(tmp_path / "w.sqlite", {("train", "x"): protos})
  loaded = {
      "leaf": formats.load_leaf(tmp_path / "leaf")[0].create_dataset("w"),
      "hdf5": formats.hdf5_client_data(emnist_h5[0]).create_dataset("f0000_00"),
      "sqlite": formats.sql_client_data(tmp_path / "w.sqlite", "train", {
          "label": tf_example.FixedLenFeature((), np.int32)}).create_dataset("x"),
  }
  if FEMNIST.is_dir():
    train, _ = femnist.load_data(FEMNIST / "flic", only_digits=True)
    loaded["femnist"] = train.create_dataset(train.client_ids[0])
  for name, dataset in loaded.items():
    assert dataset._node.immutable(), name  # pylint: disable=protected-access
    assert dataset.shuffle(3, seed=0).batch(2).map(dict)._node.immutable(), name
  assert not Dataset.from_tensor_slices({"x": np.zeros(3)})._node.immutable()
