"""`ClientStateStore`: lazy initial states, gather/scatter, type checks, snapshots, memory."""

import collections
import os
import tracemalloc

import numpy as np
import pytest

import federax as fx
from federax.program import ClientStateStore


def initial():
  return collections.OrderedDict(c=np.zeros(3, np.float32), n=np.int32(0))


def state(value, n):
  return collections.OrderedDict(c=np.full(3, value, np.float32), n=np.int32(n))


@pytest.fixture(params=["memory", "disk"])
def store(request, tmp_path):
  directory = None if request.param == "memory" else tmp_path / "store"
  return ClientStateStore(initial, directory=directory, num_shards=4)


def test_lazy_gather_scatter_round_trip(store):
  got = store.gather(["x", "y"])
  assert len(store) == 0  # Gathering does not store initial states.
  assert [s["c"].tolist() for s in got] == [[0, 0, 0], [0, 0, 0]]
  store.scatter(["x", "y"], [state(1.5, 1), state(-2.0, 2)])
  store.scatter(["z"], {"c": np.full((1, 3), 7, np.float32), "n": np.array([3], np.int32)})
  stacked = store.gather_stacked(["y", "new", "x", "z", "y"])
  np.testing.assert_array_equal(stacked["c"][:, 0], [-2.0, 0.0, 1.5, 7.0, -2.0])
  np.testing.assert_array_equal(stacked["n"], [2, 0, 1, 3, 2])
  assert stacked["c"].dtype == np.float32 and stacked["n"].dtype == np.int32
  assert sorted(store.client_ids()) == ["x", "y", "z"] and "x" in store and "w" not in store
  assert store.nbytes == 3 * (12 + 4)
  store.scatter(["x", "x"], [state(5.0, 5), state(6.0, 6)])  # Listed twice: the last wins.
  assert store.gather(["x"])[0]["n"] == 6 and len(store) == 3


def test_a_changed_state_type_is_a_clear_error(store):
  with pytest.raises(TypeError, match=r"'b'.*other leaf types.*may not change between rounds"):
    store.scatter(["a", "b"], [state(1, 1), {"c": np.zeros(3, np.float64), "n": np.int32(0)}])
  with pytest.raises(TypeError, match=r"\['c'\]: expected float32\[3\], got float32\[4\]"):
    store.scatter(["a"], [{"c": np.zeros(4, np.float32), "n": np.int32(0)}])
  with pytest.raises(TypeError, match="another structure"):
    store.scatter(["a"], [{"c": np.zeros(3, np.float32)}])
  with pytest.raises(ValueError, match="one state per client id"):
    store.scatter(["a", "b"], [state(1, 1)])
  with pytest.raises(TypeError, match="client ids must be strings"):
    store.gather([3])
  assert len(store) == 0  # A failed scatter writes nothing.


def test_snapshot_restores_bit_for_bit_and_stays_as_saved(store, tmp_path):
  rng = np.random.default_rng(0)
  ids = [f"c{k}" for k in range(20)]
  values = [collections.OrderedDict(c=rng.normal(size=3).astype(np.float32), n=np.int32(k))
            for k in range(20)]
  store.scatter(ids, values)
  snapshot = tmp_path / "snap"
  snapshot.mkdir()
  store.save(snapshot)
  store.scatter(ids[:5], [state(9, 9)] * 5)  # Later writes do not reach the snapshot.
  store.scatter(["late"], [state(1, 1)])
  store.restore(snapshot)
  assert sorted(store.client_ids()) == sorted(ids)
  for k, got in zip(ids, store.gather(ids)):
    np.testing.assert_array_equal(got["c"], values[int(k[1:])]["c"])
    assert got["n"] == int(k[1:])
  memory = ClientStateStore(initial(), num_shards=4)  # Either backend reads the other's.
  memory.restore(snapshot)
  np.testing.assert_array_equal(memory.gather_stacked(ids)["c"], store.gather_stacked(ids)["c"])


def test_restore_refuses_another_type_or_no_snapshot(store, tmp_path):
  store.scatter(["a"], [state(1, 1)])
  snapshot = tmp_path / "snap"
  snapshot.mkdir()
  store.save(snapshot)
  other = ClientStateStore({"c": np.zeros(3, np.float64), "n": np.int32(0)}, num_shards=4)
  with pytest.raises(ValueError, match="client state type is not the store's"):
    other.restore(snapshot)
  with pytest.raises(ValueError, match="other shard count"):
    ClientStateStore(initial, num_shards=5).restore(snapshot)
  with pytest.raises(ValueError, match="no readable client state snapshot"):
    store.restore(tmp_path)


def test_on_disk_store_writes_npz_shards_without_pickle(tmp_path):
  store = ClientStateStore(initial, directory=tmp_path / "s", num_shards=4)
  store.scatter([f"c{k}" for k in range(50)], [state(k, k) for k in range(50)])
  names = sorted(os.listdir(tmp_path / "s"))
  assert names and all(n.startswith("shard_") and n.endswith(".npz") for n in names)
  with np.load(tmp_path / "s" / names[0], allow_pickle=False) as npz:
    assert npz["ids"].dtype.kind == "U" and npz["leaf_0"].shape[1:] == (3,)
  reopened = ClientStateStore(initial, directory=tmp_path / "s", num_shards=4)
  assert len(reopened) == 50 and reopened.gather(["c17"])[0]["n"] == 17


def test_memory_grows_with_the_clients_touched_not_the_population():
  population = [f"client_{k:06d}" for k in range(100_000)]
  touched = population[::100]  # 1,000 clients of a 10^5 population.
  state_bytes = 16 * 4  # float32[16]
  tracemalloc.start()
  store = ClientStateStore({"c": np.zeros(16, np.float32)})
  before = tracemalloc.get_traced_memory()[0]
  for start in range(0, len(touched), 100):  # Ten rounds of 100 clients.
    ids = touched[start:start + 100]
    stacked = store.gather_stacked(ids)
    store.scatter(ids, {"c": stacked["c"] + 1.0})
  grown = tracemalloc.get_traced_memory()[0] - before
  tracemalloc.stop()
  assert len(store) == 1000 and store.nbytes == 1000 * state_bytes
  # Per stored client: its array and dict entry, a few hundred bytes; the 10^5 others cost none.
  print(f"store memory for 1,000 of 10^5 clients: {grown} bytes traced")
  assert grown < 1000 * 600, grown
  assert store.gather([population[1]])[0]["c"][0] == 0.0  # Untouched: initial, not stored.
  assert len(store) == 1000
