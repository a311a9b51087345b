"""Corrupt LEAF, HDF5 and SQLite files: each a `DataFormatError` naming the file, none loads.

Every case starts from a small valid file built here and damages one thing, as a truncated
download, a bad export or a hostile user would; the message must name the file and say what was
expected and what was found.
"""

import json
import re
import sqlite3

import numpy as np
import pytest

from federax.simulation import formats
from federax.simulation.datasets import cifar100, emnist, femnist, shakespeare, stackoverflow
from federax.simulation.formats import DataFormatError, tf_example

h5py = pytest.importorskip("h5py")


def _raises(path, *words):
  """`pytest.raises(DataFormatError)` whose message holds `path` and every word, in order."""
  pattern = "(?s)" + ".*".join(re.escape(str(w)) for w in (path, *words))
  return pytest.raises(DataFormatError, match=pattern)


# --- LEAF -------------------------------------------------------------------------------------


def _leaf_shard(n=3, pixels=784):
  users = {"f1695_12": {"x": [[(i + j) % 7 / 7 for j in range(pixels)] for i in range(n)],
                        "y": list(range(n))},
           "f0042_07": {"x": [[0.5] * pixels], "y": [61]}}
  return {"users": list(users), "num_samples": [len(u["y"]) for u in users.values()],
          "user_data": users}


def _first_client(data_dir, client_id="f1695_12"):
  train, _ = femnist.load_data(data_dir)
  return list(train.create_dataset(client_id))


def _set_pixel(value):
  def damage(shard):
    shard["user_data"]["f1695_12"]["x"][1][5] = value
  return damage


def _text(old, new):
  return lambda text: text.replace(old, new, 1)


# (damage to the JSON object, or to its text) -> the words the message must hold, in order.
LEAF_CASES = {
    "count_is_a_word": (lambda s: s.update(num_samples=["many", 1]), None,
                        ["num_samples[0]", "(user 'f1695_12')", "non-negative integer",
                         '"many"']),
    "listed_user_without_data": (lambda s: s["user_data"].pop("f1695_12"), None,
                                 ["'f1695_12' is listed in 'users'", "no entry in 'user_data'"]),
    "rows_of_783_pixels": (lambda s: s["user_data"]["f1695_12"].update(
        x=[[0.5] * 783] * 3), None, ["user 'f1695_12'", "feature 'x'", "the wrong shape",
                                      "[n, 28, 28] (784 values per example)", "[3, 783]"]),
    "nested_too_deeply": (None, _text('"y": [0, 1, 2]', '"y": ' + "[" * 100_000 + "]" * 100_000),
                          ["nested too deeply"]),
    "null_pixel": (_set_pixel(None), None, ["user 'f1695_12'", "feature 'x'", "wrong kind",
                                            "null and float"]),
    "nan_pixel": (None, _text("0.14285714285714285", "NaN"), ["non-JSON number NaN",
                                                              "finite numbers"]),
    "infinite_pixel": (None, _text("0.14285714285714285", "-Infinity"),
                       ["non-JSON number -Infinity"]),
    "pixel_beyond_float32": (_set_pixel(1e39), None, ["feature 'x'", "holds 1e+39",
                                                      "float32 cannot hold"]),
    "ragged_rows": (lambda s: s["user_data"]["f1695_12"]["x"][2].pop(), None,
                    ["feature 'x'", "is ragged"]),
    "pixel_as_text": (_set_pixel("0.5"), None, ["feature 'x'", "wrong kind", "float and str"]),
    "label_as_text": (lambda s: s["user_data"]["f1695_12"].update(y=["a", "b", "c"]), None,
                      ["user 'f1695_12'", "feature 'y'", "<U1 values", "integers"]),
    "fractional_label": (lambda s: s["user_data"]["f1695_12"].update(y=[1.5, 2, 3]), None,
                         ["feature 'y'", "float32 values", "integers"]),
    "label_beyond_the_classes": (lambda s: s["user_data"]["f1695_12"].update(y=[0, 62, 1]),
                                 None, ["feature 'y'", "holds 62 in example 1",
                                        "values in [0, 61]"]),
    "no_labels": (lambda s: s["user_data"]["f1695_12"].pop("y"), None,
                  ["feature 'y': missing", "only ['x']"]),
    "more_labels_than_examples": (lambda s: s["user_data"]["f1695_12"]["y"].append(4), None,
                                  ["feature 'y'", "one value per example", "3 (its num_samples)",
                                   "found 4"]),
    "users_not_a_list": (lambda s: s.update(users="f1695_12"), None,
                         ["'users' is not a list", "a JSON list"]),
    "user_data_not_an_object": (lambda s: s.update(user_data=[]), None,
                                ["'user_data' is not an object"]),
}


@pytest.mark.parametrize("case", sorted(LEAF_CASES))
def test_corrupt_leaf_shards_name_the_file(tmp_path, case):
  damage_object, damage_text, words = LEAF_CASES[case]
  shard = _leaf_shard()
  if damage_object:
    damage_object(shard)
  text = json.dumps(shard)
  if damage_text:
    damaged = damage_text(text)
    assert damaged != text
    text = damaged
  path = tmp_path / "train" / "all_data_0.json"
  path.parent.mkdir()
  path.write_text(text)
  with _raises(path, *words) as info:
    _first_client(tmp_path)
  assert isinstance(info.value, ValueError)  # What the readers raised before: still caught.


def test_an_intact_leaf_shard_still_loads(tmp_path):
  path = tmp_path / "train" / "all_data_0.json"
  path.parent.mkdir()
  path.write_text(json.dumps(_leaf_shard()))
  elements = _first_client(tmp_path, "f0042_07")
  assert [int(e["label"]) for e in elements] == [61]
  assert elements[0]["pixels"].shape == (28, 28) and elements[0]["pixels"].dtype == np.float32


def test_leaf_shards_read_without_femnist_also_name_the_file(tmp_path):
  shard = _leaf_shard()
  shard["user_data"]["f1695_12"]["x"][0][0] = None
  path = tmp_path / "train" / "s.json"
  path.parent.mkdir()
  path.write_text(json.dumps(shard))
  train, _ = formats.load_leaf(tmp_path)
  with _raises(path, "user 'f1695_12'", "feature 'x'", "null"):
    train.create_dataset("f1695_12")
  # A user's element_fn raising our error gets the file and the user too; its own errors pass.
  def element_fn(features):
    raise DataFormatError("feature 'z' is missing")
  good = tmp_path / "ok" / "train" / "s.json"
  good.parent.mkdir(parents=True)
  good.write_text(json.dumps(_leaf_shard()))
  train, _ = formats.load_leaf(tmp_path / "ok", element_fn)
  with _raises(good, "user 'f0042_07'", "feature 'z' is missing"):
    train.create_dataset("f0042_07")
  train, _ = formats.load_leaf(tmp_path / "ok", lambda f: {}["nope"])
  with pytest.raises(KeyError, match="nope"):
    train.create_dataset("f0042_07")


# --- HDF5 -------------------------------------------------------------------------------------


def _emnist_files(directory, damage=None, prefix="fed_emnist_digitsonly"):
  """TFF's EMNIST layout, written with h5py; `damage(examples_group)` spoils the train file."""
  paths = []
  for split in ("train", "test"):
    path = directory / f"{prefix}_{split}.h5"
    with h5py.File(path, "w") as f:
      examples = f.create_group("examples")
      for cid, labels in (("f0000_14", [3, 1, 4]), ("f0001_41", [5])):
        group = examples.create_group(cid)
        group.create_dataset("label", data=np.array(labels, np.int32))
        group.create_dataset("pixels", data=np.full((len(labels), 28, 28), 0.5, np.float32))
      if damage is not None and split == "train":
        damage(examples)
    paths.append(path)
  return paths


def _replace(name, data):
  def damage(examples):
    del examples["f0000_14"][name]
    examples["f0000_14"].create_dataset(name, data=data)
  return damage


HDF5_CASES = {
    "pixels_27_wide": (_replace("pixels", np.zeros((3, 28, 27), np.float32)),
                       ["client 'f0000_14'", "feature 'pixels'", "the wrong shape",
                        "[n, 28, 28] (784 values per example)",
                        "[3, 28, 27]"]),
    "nan_pixel": (_replace("pixels", np.where(np.arange(3 * 784).reshape(3, 28, 28) == 900,
                                              np.nan, 0.5).astype(np.float32)),
                  ["client 'f0000_14'", "feature 'pixels'", "non-finite value", "example 1",
                   "finite numbers"]),
    "fewer_labels": (_replace("label", np.array([3, 1], np.int32)),
                     ["client 'f0000_14'", "different numbers of examples",
                      "label: 2, pixels: 3"]),
    "no_pixels": (lambda e: e["f0000_14"].pop("pixels"),
                  ["client 'f0000_14'", "feature 'pixels': missing", "only ['label']"]),
    "letter_in_digits": (_replace("label", np.array([3, 11, 4], np.int32)),
                         ["client 'f0000_14'", "feature 'label'", "holds 11 in example 1",
                          "values in [0, 9]"]),
    "float_labels": (_replace("label", np.array([3.0, 1.5, 4.0])),
                     ["client 'f0000_14'", "feature 'label'", "float64 values",
                      "integers"]),
    "client_is_a_dataset": (lambda e: (e.pop("f0000_14"), e.create_dataset("f0000_14",
                                                                           data=[1])),
                            ["client 'f0000_14' is a Dataset, not a group"]),
    "feature_is_a_group": (lambda e: (e["f0000_14"].pop("label"),
                                      e["f0000_14"].create_group("label")),
                           ["feature 'label' of client 'f0000_14' is a Group"]),
}


@pytest.mark.parametrize("case", sorted(HDF5_CASES))
def test_corrupt_hdf5_clients_name_the_file_and_client(tmp_path, case):
  damage, words = HDF5_CASES[case]
  train_path, _ = _emnist_files(tmp_path, damage)
  train, _ = emnist.load_data(cache_dir=tmp_path)
  with _raises(train_path, *words):
    train.create_dataset("f0000_14")
  assert [int(e["label"]) for e in train.create_dataset("f0001_41")] == [5]  # Others still load.


@pytest.mark.parametrize("damage, words", [
    (lambda b: b[:len(b) // 2], ["HDF5 cannot read the file", "truncated"]),
    (lambda b: b[:100], ["HDF5 cannot read the file"]),
    (lambda b: b"not an HDF5 file\n" * 100, ["HDF5 cannot read the file", "signature"]),
], ids=["half", "first_100_bytes", "text"])
def test_truncated_or_foreign_hdf5_files_name_the_file(tmp_path, damage, words):
  train_path, _ = _emnist_files(tmp_path)
  train_path.write_bytes(damage(train_path.read_bytes()))
  with _raises(train_path, *words, "download it again"):
    emnist.load_data(cache_dir=tmp_path)


def test_hdf5_examples_that_are_not_a_group(tmp_path):
  with h5py.File(tmp_path / "flat.h5", "w") as f:
    f.create_dataset("examples", data=[1, 2])
  with _raises(tmp_path / "flat.h5", "expected a top-level group 'examples'",
               "found a Dataset 'examples'"):
    formats.HDF5ClientSource(tmp_path / "flat.h5")


def test_hdf5_snippets_that_are_not_utf8(tmp_path):
  path = tmp_path / "shakespeare_train.h5"
  with h5py.File(path, "w") as f:
    f.create_dataset("examples/THE_TEMPEST_ARIEL/snippets",
                     data=np.array([b"Full fathom five", b"thy father \xff lies"], "S20"))
  train = formats.hdf5_client_data(path, shakespeare.to_elements)
  with _raises(path, "feature 'snippets' of client 'THE_TEMPEST_ARIEL'", "not UTF-8",
               "byte 11"):
    train.create_dataset("THE_TEMPEST_ARIEL")


def test_cifar100_pixels_outside_a_byte(tmp_path):
  for split in ("train", "test"):
    with h5py.File(tmp_path / f"fed_cifar100_{split}.h5", "w") as f:
      image = np.zeros((2, 32, 32, 3), np.int16)
      image[1, 0, 0, 0] = 300  # A uint8 cast would load it as 44.
      f.create_dataset("examples/0/image", data=image)
      f.create_dataset("examples/0/label", data=np.array([1, 2]))
      f.create_dataset("examples/0/coarse_label", data=np.array([1, 2]))
  train, _ = cifar100.load_data(cache_dir=tmp_path)
  with _raises(tmp_path / "fed_cifar100_train.h5", "feature 'image'", "holds 300 in example 1",
               "values in [0, 255]"):
    train.create_dataset("0")


# --- SQLite -----------------------------------------------------------------------------------


def _database(path, rows=3, metadata_columns="client_id TEXT NOT NULL, split_name TEXT NOT NULL,"
              " num_examples INTEGER NOT NULL"):
  con = sqlite3.connect(path)
  con.execute("PRAGMA page_size = 1024")
  con.execute("CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL, "
              "serialized_example_proto BLOB NOT NULL)")
  con.execute(f"CREATE TABLE client_metadata ({metadata_columns})")
  for i in range(rows):
    proto = tf_example.encode_example({
        "creation_date": "2010-01-08", "score": i, "tags": "sql", "title": "t" * 200,
        "tokens": "a b", "type": "answer"})
    con.execute("INSERT INTO examples VALUES (?, ?, ?)", ("train", f"u{i % 3}", proto))
  if "split_name" in metadata_columns:  # Stack Overflow's three splits, one client each.
    con.executemany("INSERT INTO client_metadata VALUES (?, ?, ?)",
                    [(f"u{i}", "train", 1) for i in range(3)] + [("h", "heldout", 0),
                                                                 ("t", "test", 0)])
  con.commit()
  con.close()
  return path


def test_sqlite_metadata_without_split_name(tmp_path):
  path = _database(tmp_path / "stackoverflow.sqlite",
                   metadata_columns="client_id TEXT NOT NULL, num_examples INTEGER NOT NULL")
  with _raises(path, "table `client_metadata` must have columns", "missing ['split_name']"):
    stackoverflow.load_data(cache_dir=tmp_path)


def test_sqlite_damaged_pages_name_the_file(tmp_path):
  path = _database(tmp_path / "stackoverflow.sqlite", rows=60)
  data = bytearray(path.read_bytes())
  data[3 * 1024:6 * 1024] = b"\xa5" * 3 * 1024  # Three b-tree pages of the examples table.
  path.write_bytes(bytes(data))
  with _raises(path, "SQLite cannot read it", "malformed", "download it again"):
    train, _, _ = stackoverflow.load_data(cache_dir=tmp_path)
    for cid in train.client_ids:
      list(train.create_dataset(cid))


def test_sqlite_truncated_file_names_the_file(tmp_path):
  path = _database(tmp_path / "stackoverflow.sqlite", rows=60)
  path.write_bytes(path.read_bytes()[:2500])
  with _raises(path, "database disk image is malformed"):
    train, _, _ = stackoverflow.load_data(cache_dir=tmp_path)
    for cid in train.client_ids:
      list(train.create_dataset(cid))


def test_sqlite_text_where_a_blob_belongs(tmp_path):
  path = _database(tmp_path / "stackoverflow.sqlite")
  con = sqlite3.connect(path)
  con.execute("UPDATE examples SET serialized_example_proto = 'hello' WHERE client_id = 'u1'")
  con.commit()
  con.close()
  train, _, _ = stackoverflow.load_data(cache_dir=tmp_path)
  with _raises(path, "example 0 of client 'u1' holds TEXT", "expected a BLOB"):
    train.create_dataset("u1")
  assert [int(e["score"]) for e in train.create_dataset("u2")] == [2]


def test_sqlite_corrupt_example_names_the_file_client_and_row(tmp_path):
  path = _database(tmp_path / "stackoverflow.sqlite", rows=6)
  con = sqlite3.connect(path)
  rowid = con.execute("SELECT rowid FROM examples WHERE client_id = 'u2' ORDER BY rowid"
                      ).fetchall()[1][0]
  con.execute("UPDATE examples SET serialized_example_proto = ? WHERE rowid = ?",
              (b"\x0a\x05\x0a\x03\x0a\x01\xff", rowid))
  con.commit()
  con.close()
  train, _, _ = stackoverflow.load_data(cache_dir=tmp_path)
  with pytest.raises(formats.ExampleParseError) as info:
    train.create_dataset("u2")
  message = str(info.value)
  assert message.startswith(f"{str(path)!r}, client 'u2', example 1: ")
  assert "not valid UTF-8" in message
  assert isinstance(info.value, DataFormatError)
