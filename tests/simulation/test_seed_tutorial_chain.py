"""TFF's seed tutorial preprocessing chain on one real FEMNIST writer, checked against raw LEAF.

The chain is the one in TFF's "Federated Learning for Image Classification" tutorial:
`repeat(5).shuffle(100, seed=1).batch(20).map(flatten)`. The reference is the writer's raw
examples, read here with gzip and json only (no federax reader).
"""

import collections
import gzip
import json
import math
import pathlib

import numpy as np
import pytest

from federax.simulation.datasets import femnist

# The shared data lives next to the project root (../shared/data), never inside it.
FLIC = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "femnist-leaf" / "flic"
EPOCHS, BUFFER, BATCH, SEED = 5, 100, 20, 1


def _raw_train_writers():
  """writer -> (x float64[n, 784], y int[n]) from every train shard, with gzip and json."""
  writers = {}
  for shard in sorted((FLIC / "train").glob("*.json.gz")):
    with gzip.open(shard, "rt", encoding="utf-8") as f:
      data = json.load(f)
    for user in data["users"]:
      d = data["user_data"][user]
      writers[user] = (np.array(d["x"], np.float64), np.array(d["y"], np.int64))
  return writers


def _row_keys(x, y):
  """One hashable key per example: its label and its pixels rounded to float32."""
  x = np.asarray(x, np.float32).reshape(len(y), 784)
  return [(int(label), row.tobytes()) for label, row in zip(np.asarray(y).reshape(-1), x)]


@pytest.mark.skipif(not FLIC.is_dir(), reason="shared FEMNIST data not present")
def test_seed_tutorial_chain_on_a_real_writer():
  raw = _raw_train_writers()
  train, _ = femnist.load_data(FLIC)
  assert sorted(raw) == train.client_ids
  # A writer whose count is not a multiple of 20, so the last batch is short.
  writer = next(w for w in train.client_ids if (EPOCHS * len(raw[w][1])) % BATCH)
  raw_x, raw_y = raw[writer]
  n = len(raw_y)

  ds = train.create_dataset(writer)
  assert len(ds) == n
  chain = ds.repeat(EPOCHS).shuffle(BUFFER, seed=SEED).batch(BATCH).map(
      lambda e: {"x": e["pixels"].reshape(-1, 784), "y": e["label"].reshape(-1, 1)})
  batches = list(chain)

  assert len(batches) == math.ceil(EPOCHS * n / BATCH)
  assert sum(len(b["y"]) for b in batches) == EPOCHS * n
  for b in batches[:-1]:
    assert b["x"].shape == (BATCH, 784) and b["y"].shape == (BATCH, 1)
  assert batches[-1]["x"].shape == ((EPOCHS * n) % BATCH, 784)
  assert batches[-1]["y"].shape == ((EPOCHS * n) % BATCH, 1)
  assert all(b["x"].dtype == np.float32 and b["y"].dtype == np.int32 for b in batches)

  got = collections.Counter(
      key for b in batches for key in _row_keys(b["x"], b["y"][:, 0]))
  expected = collections.Counter(_row_keys(raw_x, raw_y))
  assert got == collections.Counter({k: EPOCHS * c for k, c in expected.items()})
  # The shuffle moved examples: the first batch is not the writer's first 20 examples in order.
  assert _row_keys(batches[0]["x"], batches[0]["y"][:, 0]) != _row_keys(raw_x[:BATCH],
                                                                         raw_y[:BATCH])
