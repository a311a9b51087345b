"""Tests for the data set loaders: real Shakespeare and FEMNIST, fixtures for the others."""

import collections
import json
import pathlib
import sqlite3

import numpy as np
import pytest

import federax.simulation.datasets as datasets
from federax.simulation.datasets import (cifar100, download, emnist, femnist, shakespeare,
                                         stackoverflow)
from federax.simulation.formats import tf_example

h5py = pytest.importorskip("h5py")
# The shared data lives next to the project root (../shared/data), never inside it.
DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
SHAKESPEARE = DATA / "shakespeare-tff"
FEMNIST = DATA / "femnist-leaf"


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
  """No test here may reach the network or a real cache."""
  monkeypatch.setenv(download.ENV_OFFLINE, "1")
  monkeypatch.delenv(download.ENV_DATA_DIR, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _count(client_data):
  return sum(len(client_data.create_dataset(c)) for c in client_data.client_ids)


def test_package_exposes_the_modules():
  assert set(datasets.__all__) == {"cifar100", "download", "emnist", "femnist", "movielens",
                                   "shakespeare",
                                   "stackoverflow", "synthetic"}
  assert datasets.emnist is emnist


@pytest.mark.skipif(not SHAKESPEARE.is_dir(), reason="shared Shakespeare data not present")
def test_shakespeare_real_files_match_tffs_counts():
  train, test = shakespeare.load_data(cache_dir=SHAKESPEARE)
  assert len(set(train.client_ids) | set(test.client_ids)) == 715
  assert _count(train) == 16_068 and _count(test) == 2_356
  spec = train.element_type_structure
  assert list(spec) == ["snippets"] and spec["snippets"].dtype.kind == "U"
  first = next(iter(train.create_dataset("ALL_S_WELL_THAT_ENDS_WELL_ADAM")))
  assert isinstance(first, collections.OrderedDict)
  assert str(first["snippets"]) == "Yonder comes my master, your brother."


def test_shakespeare_missing_files_error(tmp_path):
  with pytest.raises(download.DataNotFoundError,
                     match=r"(?s)\['shakespeare_train.h5', 'shakespeare_test.h5'\].*"
                     + str(tmp_path / "nothing" / "shakespeare_train.h5")):
    shakespeare.load_data(cache_dir=tmp_path / "nothing")


def _write_emnist(path, clients):
  with h5py.File(path, "w") as f:
    for cid, labels in clients.items():
      n = len(labels)
      f.create_dataset(f"examples/{cid}/label", data=np.array(labels, np.int64))
      f.create_dataset(f"examples/{cid}/pixels",
                       data=np.linspace(0, 1, n * 784).reshape(n, 28, 28).astype(np.float64))


@pytest.mark.parametrize("only_digits,prefix", [(True, "fed_emnist_digitsonly"),
                                                 (False, "fed_emnist")])
def test_emnist_from_tff_hdf5_files(tmp_path, only_digits, prefix):
  _write_emnist(tmp_path / f"{prefix}_train.h5", {"f0000_14": [3, 1, 4], "f0001_41": [5]})
  _write_emnist(tmp_path / f"{prefix}_test.h5", {"f0000_14": [9], "f0001_41": [2, 6]})
  train, test = emnist.load_data(only_digits=only_digits, cache_dir=tmp_path)
  assert train.client_ids == ["f0000_14", "f0001_41"]
  spec = train.element_type_structure
  assert list(spec) == ["label", "pixels"]
  assert spec["label"].dtype == np.int32 and spec["label"].shape == ()
  assert spec["pixels"].dtype == np.float32 and spec["pixels"].shape == (28, 28)
  elements = list(train.create_dataset("f0000_14"))
  assert [int(e["label"]) for e in elements] == [3, 1, 4]
  np.testing.assert_allclose(elements[1]["pixels"].reshape(-1)[0], 784 / (3 * 784 - 1),
                             rtol=1e-6)
  assert _count(test) == 3


def test_loaders_read_no_client_until_asked(tmp_path, monkeypatch):
  from federax.simulation.formats import hdf5  # pylint: disable=g-import-not-at-top
  _write_emnist(tmp_path / "fed_emnist_digitsonly_train.h5", {f"w{i}": [i % 10] for i in range(50)})
  _write_emnist(tmp_path / "fed_emnist_digitsonly_test.h5", {"w0": [1]})
  reads = []
  original = hdf5.HDF5ClientSource.read
  monkeypatch.setattr(hdf5.HDF5ClientSource, "read",
                      lambda self, cid: reads.append(cid) or original(self, cid))
  train, _ = emnist.load_data(cache_dir=tmp_path)
  assert len(train.client_ids) == 50 and reads == []
  assert [int(e["label"]) for e in train.create_dataset("w7")] == [7]
  assert reads == ["w7"]


def test_emnist_offline_error_names_the_files(tmp_path):
  with pytest.raises(download.DataNotFoundError,
                     match=r"(?s)fed_emnist_train.h5.*fed_emnist.tar.bz2.*FEDERAX_DATA_DIR"):
    emnist.load_data(only_digits=False, cache_dir=tmp_path)


def test_cifar100_from_tff_hdf5_files(tmp_path):
  rng = np.random.default_rng(0)
  for split, ids in (("train", ["0", "1", "10"]), ("test", ["0"])):
    with h5py.File(tmp_path / f"fed_cifar100_{split}.h5", "w") as f:
      for cid in ids:
        f.create_dataset(f"examples/{cid}/image",
                         data=rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
        f.create_dataset(f"examples/{cid}/label", data=np.array([0, 51, 88, 99]))
        f.create_dataset(f"examples/{cid}/coarse_label", data=np.array([4, 4, 8, 19]))
  train, test = cifar100.load_data(cache_dir=tmp_path)
  assert train.client_ids == ["0", "1", "10"] and test.client_ids == ["0"]
  spec = train.element_type_structure
  assert list(spec) == ["coarse_label", "image", "label"]
  assert spec["image"].dtype == np.uint8 and spec["image"].shape == (32, 32, 3)
  assert spec["label"].dtype == np.int64 and spec["coarse_label"].dtype == np.int64
  elements = list(train.create_dataset("1"))
  assert [int(e["label"]) for e in elements] == [0, 51, 88, 99]
  assert [int(e["coarse_label"]) for e in elements] == [4, 4, 8, 19]


# Rows from TFF's own synthetic Stack Overflow data (stackoverflow.get_synthetic).
_POSTS = [
    ("train", "synthetic_1", "2010-01-08 09:34:05 UTC", 172,
     "sql|sql-server|aggregate-functions|median", "function to calculate median in sql server",
     "if you're using sql 2005 or better this is a nice , simple-ish median calculation", "answer"),
    ("train", "synthetic_1", "2008-08-10 08:28:52.1 UTC", 80,
     "css|cross-browser|rounded-corners|css3", "creating rounded corners using css",
     "css3 does finally define the", "question"),
    ("heldout", "synthetic_2", "2010-07-15 18:15:58.5 UTC", -1, "android|android-emulator|monkey",
     "writing to / system / framework in emulator", "thanks .", "question"),
    ("test", "synthetic_3", "2008-10-30 16:49:26.9 UTC", 1,
     "vb . net|design-patterns|iterator|yield",
     "iterator pattern in vb . net ( c # would use yield ! )", "edit :", "answer"),
]


def test_stackoverflow_from_tff_sqlite(tmp_path):
  con = sqlite3.connect(tmp_path / "stackoverflow.sqlite")
  con.execute("CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL, "
              "serialized_example_proto BLOB NOT NULL)")
  con.execute("CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT NOT NULL, "
              "num_examples INTEGER NOT NULL)")
  for split, cid, date, score, tags, title, tokens, kind in _POSTS:
    proto = tf_example.encode_example({"creation_date": date, "score": score, "tags": tags,
                                       "title": title, "tokens": tokens, "type": kind})
    con.execute("INSERT INTO examples VALUES (?, ?, ?)", (split, cid, proto))
  con.executemany("INSERT INTO client_metadata VALUES (?, ?, ?)",
                  [("synthetic_1", "train", 2), ("synthetic_2", "heldout", 1),
                   ("synthetic_3", "test", 1)])
  con.commit()
  con.close()
  train, held_out, test = stackoverflow.load_data(cache_dir=tmp_path)
  assert (train.client_ids, held_out.client_ids, test.client_ids) == (
      ["synthetic_1"], ["synthetic_2"], ["synthetic_3"])
  spec = train.element_type_structure
  assert list(spec) == ["creation_date", "score", "tags", "title", "tokens", "type"]
  assert spec["score"].dtype == np.int64 and spec["tokens"].dtype.kind == "U"
  elements = list(train.create_dataset("synthetic_1"))
  assert [int(e["score"]) for e in elements] == [172, 80]
  assert str(elements[1]["type"]) == "question"
  assert str(elements[0]["tags"]).split("|")[-1] == "median"
  assert int(next(iter(held_out.create_dataset("synthetic_2")))["score"]) == -1


def test_stackoverflow_word_and_tag_counts(tmp_path):
  (tmp_path / "stackoverflow.word_count").write_text("the 10\n. 8\nsql 3\n")
  (tmp_path / "stackoverflow.tag_count").write_text(json.dumps({"css": 2, "sql": 5, "git": 1}))
  assert stackoverflow.load_word_counts(cache_dir=tmp_path) == {"the": 10, ".": 8, "sql": 3}
  assert list(stackoverflow.load_word_counts(cache_dir=tmp_path, vocab_size=2)) == ["the", "."]
  assert list(stackoverflow.load_tag_counts(cache_dir=tmp_path).items()) == [
      ("sql", 5), ("css", 2), ("git", 1)]
  with pytest.raises(TypeError, match=r"vocab_size must be None or an int, got 2.0 \(float\)"):
    stackoverflow.load_word_counts(cache_dir=tmp_path, vocab_size=2.0)
  with pytest.raises(ValueError, match="vocab_size must be positive, got 0"):
    stackoverflow.load_word_counts(cache_dir=tmp_path, vocab_size=0)


@pytest.mark.skipif(not FEMNIST.is_dir(), reason="shared FEMNIST data not present")
def test_femnist_real_flic_sample():
  train, test = femnist.load_data(FEMNIST / "flic")
  assert len(train.client_ids) == 110 and len(test.client_ids) == 198
  assert _count(train) == 14_697
  spec = train.element_type_structure
  assert list(spec) == ["label", "pixels"]
  assert spec["pixels"].shape == (28, 28) and spec["label"].dtype == np.int32
  element = next(iter(train.create_dataset(train.client_ids[0])))
  assert element["pixels"].max() == 1.0  # LEAF's white background, as TFF's EMNIST.
  assert 0 <= int(element["label"]) < 62


@pytest.mark.slow
@pytest.mark.skipif(not FEMNIST.is_dir(), reason="shared FEMNIST data not present")
def test_femnist_real_merged_samples_keep_duplicates_once():
  samples = ("flic", "leaf-torch", "wenzhu")
  train, test = femnist.load_data(FEMNIST)
  per_sample = {s: femnist.load_data(FEMNIST / s) for s in samples}
  for merged, split in ((train, "train"), (test, "test")):
    distinct = set()
    for sample in samples:
      distinct |= set(per_sample[sample][split == "test"].client_ids)
    assert len(merged.client_ids) == len(set(merged.client_ids)) == len(distinct)
    assert set(merged.client_ids) == distinct

  # Each writer appears once: a writer in two samples keeps one copy of its examples (the
  # first sample's, in folder order), not both.
  shared = 0
  for writer in train.client_ids:
    holders = [s for s in samples if writer in per_sample[s][0].client_ids]
    shared += len(holders) > 1
    assert len(train.create_dataset(writer)) == len(
        per_sample[holders[0]][0].create_dataset(writer))
  assert shared > 0  # The README's ~20 writers in two samples, so the check above bites.

  labels = collections.Counter()
  for writer in train.client_ids[:40]:  # Decoding every writer's images takes most of a minute.
    stacked = train.create_dataset(writer).to_stacked()
    pixels = stacked["pixels"]
    assert pixels.dtype == np.float32 and 0.0 <= pixels.min() and pixels.max() <= 1.0
    values, counts = np.unique(pixels, return_counts=True)
    assert values[np.argmax(counts)] == 1.0, writer  # White background, as TFF's EMNIST.
    labels.update(stacked["label"].tolist())
  assert sorted(labels) == list(range(62))  # Digits, upper and lower case all occur.
  total = sum(len(train.create_dataset(w)) for w in train.client_ids)
  assert total < 14_697 + 14_708 + 14_640  # Duplicated writers counted once.


def test_femnist_only_digits_drops_letters_and_empty_writers(tmp_path):
  from federax.simulation.formats import write_leaf_shard  # pylint: disable=g-import-not-at-top
  pixels = np.ones((3, 784)) * 0.5
  write_leaf_shard(tmp_path / "train" / "s.json.gz", {
      "digits": {"x": pixels, "y": [1, 12, 9]},
      "letters": {"x": pixels[:2], "y": [10, 61]},
  })
  write_leaf_shard(tmp_path / "test" / "s.json.gz", {"digits": {"x": pixels[:1], "y": [4]}})
  train, _ = femnist.load_data(tmp_path, only_digits=True)
  assert train.client_ids == ["digits"]
  assert [int(e["label"]) for e in train.create_dataset("digits")] == [1, 9]
  train_all, _ = femnist.load_data(tmp_path)
  assert train_all.client_ids == ["digits", "letters"]
  assert [int(e["label"]) for e in train_all.create_dataset("digits")] == [1, 12, 9]
