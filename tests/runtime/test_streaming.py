"""Cohorts above `chunk_size` clients are read by the program one chunk at a time."""

import sys
import tracemalloc

import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.runtime.vectorized import streaming
from federax.simulation import Dataset

BATCH_TYPE = fx.to_type({"x": (np.float32, [4, 3]), "y": (np.float32, [4]), "mask": (np.bool_, [4])})
DATA_TYPE = fx.FederatedType(fx.SequenceType(BATCH_TYPE), fx.CLIENTS)
WEIGHTS_TYPE = fx.TensorType(np.float32, [3])


@fx.computation((WEIGHTS_TYPE, np.float32), BATCH_TYPE)
def sgd_step(acc, batch):
  """Least-squares SGD on one masked batch, counting the examples seen."""
  w, seen = acc
  mask = batch["mask"].astype(jnp.float32)
  err = (batch["x"] @ w - batch["y"]) * mask
  grad = batch["x"].T @ err / jnp.maximum(mask.sum(), 1.0)
  return w - 0.1 * grad, seen + mask.sum()


@fx.federated_computation(WEIGHTS_TYPE, fx.SequenceType(BATCH_TYPE))
def local_sgd(w, data):
  return fx.sequence_reduce(data, (w, np.float32(0.0)), sgd_step)


@fx.computation
def weights_of(pair):
  return pair[0]


@fx.computation
def seen_of(pair):
  return pair[1]


@fx.federated_computation(fx.FederatedType(WEIGHTS_TYPE, fx.SERVER), DATA_TYPE)
def fedavg_round(w, data):
  results = fx.federated_map(local_sgd, (fx.federated_broadcast(w), data))
  seen = fx.federated_map(seen_of, results)
  return fx.federated_mean(fx.federated_map(weights_of, results), seen), fx.federated_sum(seen)


def client_datasets(sizes, seed=0, epochs=2):
  rng = np.random.default_rng(seed)
  return [Dataset.from_tensor_slices({"x": rng.normal(size=(k, 3)).astype(np.float32),
                                      "y": rng.normal(size=k).astype(np.float32)})
          .repeat(epochs).masked_batch(4) for k in sizes]


def numpy_round(w, datasets):
  """The same round in NumPy, client by client: the independent reference."""
  news, seens = [], []
  for ds in datasets:
    v, seen = w.astype(np.float32).copy(), 0.0
    for b in ds:
      mask = b["mask"].astype(np.float32)
      err = (b["x"] @ v - b["y"]) * mask
      v = v - 0.1 * (b["x"].T @ err / max(mask.sum(), 1.0))
      seen += mask.sum()
    news.append(v)
    seens.append(seen)
  seens = np.asarray(seens)
  mean = (seens[:, None] * np.stack(news)).sum(0) / seens.sum() if seens.sum() else np.zeros(3)
  return mean, seens.sum()


class ReadSpy:
  """Records each chunk the program reads: (slot, first client, number of clients)."""

  def __init__(self, monkeypatch):
    self.reads = []
    original = streaming.Streams.read

    def read(streams, slot, start, size):
      self.reads.append((slot, start, size))
      return original(streams, slot, start, size)

    monkeypatch.setattr(streaming.Streams, "read", read)


W = np.array([0.5, -1.0, 2.0], np.float32)
VECTORIZED = sys.modules["federax.runtime.vectorized.stacking"]  # Where STREAM_BYTES is read.


@pytest.fixture(autouse=True)
def stream_every_cohort(monkeypatch):
  """These cohorts are a few kB: stream them as if they were over the 32 MB threshold."""
  monkeypatch.setattr(VECTORIZED, "STREAM_BYTES", 0)


@pytest.mark.parametrize("client_loop", ["map", "vmap"])
@pytest.mark.parametrize("sequence_loop", ["while", "scan"])
def test_streamed_round_matches_numpy_and_the_sequential_runtime(monkeypatch, client_loop,
                                                                 sequence_loop):
  sizes = [5, 0, 9, 1, 13, 4, 7, 2, 11, 6, 3]  # Ragged, an empty client, 11 = 2 chunks + 3.
  datasets = client_datasets(sizes)
  spy = ReadSpy(monkeypatch)
  with fx.runtime.vectorized(chunk_size=4, shard=False, client_loop=client_loop,
                             sequence_loop=sequence_loop):
    mean, total = fedavg_round(W, datasets)
  # 11 clients, chunk_size 4: read in 4 parts of at most a quarter of the cohort (3 clients),
  # all of one size (one compiled body): the last read is filled up with an empty client.
  assert sorted(spy.reads) == [("arguments.data", 0, 3), ("arguments.data", 3, 3),
                               ("arguments.data", 6, 3), ("arguments.data", 9, 3)]
  expected_mean, expected_total = numpy_round(W, datasets)
  np.testing.assert_allclose(mean, expected_mean, rtol=1e-5, atol=1e-6)
  assert total == expected_total == 2 * sum(sizes)
  with fx.runtime.sequential():
    sequential = fedavg_round(W, datasets)
  np.testing.assert_allclose(mean, sequential[0], rtol=1e-5, atol=1e-6)


def test_the_compiled_program_reads_each_call_s_own_cohort(monkeypatch):
  spy = ReadSpy(monkeypatch)
  runtime = fx.runtime.vectorized(chunk_size=3, shard=False)
  first, second = client_datasets([4, 6, 2, 8, 5, 3, 7], 1), client_datasets([6, 2, 5, 3, 7, 4, 1], 2)
  with runtime:
    results = [fedavg_round(W, first), fedavg_round(W, second), fedavg_round(W, first)]
  assert len(runtime._programs[fedavg_round]) == 1
  assert len(spy.reads) == 12  # Three calls of 4 reads (2 + 2 + 2 + 1 clients).
  for result, datasets in zip(results, (first, second, first)):
    np.testing.assert_allclose(result[0], numpy_round(W, datasets)[0], rtol=1e-5, atol=1e-6)


def test_cohorts_under_the_stream_threshold_are_stacked_before_the_call(monkeypatch):
  monkeypatch.setattr(VECTORIZED, "STREAM_BYTES", 8192)  # 20 and 7 clients: 5.5 and 1.9 kB.
  spy = ReadSpy(monkeypatch)
  small, large = client_datasets([3, 5, 2, 4] * 5), client_datasets([3, 5, 2, 4, 6, 1, 3])
  with fx.runtime.vectorized(chunk_size=4, shard=False):
    small_mean, _ = fedavg_round(W, small)
    assert spy.reads == []  # More clients than chunk_size, but small.
    monkeypatch.setattr(VECTORIZED, "STREAM_BYTES", 1024)
    large_mean, _ = fedavg_round(W, large)
    assert len(spy.reads) == 4  # Parts of 2, 2, 2 and 1 clients.
  np.testing.assert_allclose(small_mean, numpy_round(W, small)[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(large_mean, numpy_round(W, large)[0], rtol=1e-5, atol=1e-6)


def test_cached_cohorts_of_any_size_stay_on_the_device(monkeypatch):
  spy = ReadSpy(monkeypatch)
  datasets = client_datasets([3, 5, 2, 4, 6])
  runtime = fx.runtime.vectorized(chunk_size=2, shard=False)
  with runtime:
    mean, _ = fedavg_round(W, datasets)
    assert len(spy.reads) == 3  # Parts of 2, 2 and 1 clients.
    cached = [d.cache() for d in datasets]
    for _ in range(2):
      cached_mean, _ = fedavg_round(W, cached)
  assert len(spy.reads) == 3 and len(runtime._cohorts._entries) == 1
  expected = numpy_round(W, datasets)[0]
  np.testing.assert_allclose(mean, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(cached_mean, expected, rtol=1e-5, atol=1e-6)


def test_datasets_mapped_twice_and_two_streamed_arguments(monkeypatch):
  @fx.computation(np.float32, BATCH_TYPE)
  def add_examples(n, batch):
    return n + batch["mask"].sum().astype(jnp.float32)

  @fx.federated_computation(DATA_TYPE, DATA_TYPE)
  def seen_twice(a, b):
    count = lambda data: fx.federated_sum(fx.sequence_reduce(data, np.float32(0.0), add_examples))
    return count(a), count(a), count(b)

  spy = ReadSpy(monkeypatch)
  a, b = client_datasets([1, 2, 3, 4, 5]), client_datasets([6, 7, 8, 9, 10], 1, epochs=1)
  with fx.runtime.vectorized(chunk_size=2, shard=False):
    assert seen_twice(a, b) == (30.0, 30.0, 40.0)
  assert {slot for slot, _, _ in spy.reads} == {"arguments.a", "arguments.b"}
  assert len(spy.reads) == 9


def test_datasets_whose_shapes_are_unknown_before_reading_are_stacked_whole(monkeypatch):
  spy = ReadSpy(monkeypatch)
  filtered = [d.filter(lambda batch: batch["mask"].any()) for d in client_datasets([3, 6, 9, 2, 5])]
  assert filtered[0].cardinality() < 0
  with fx.runtime.vectorized(chunk_size=2, shard=False):
    mean, total = fedavg_round(W, filtered)
  assert spy.reads == []
  np.testing.assert_allclose(mean, numpy_round(W, filtered)[0], rtol=1e-5, atol=1e-6)
  assert total == 50.0


def test_a_dataset_that_breaks_its_promise_is_named_after_the_call():
  class Lying:
    """Claims one batch, then produces two."""

    def __init__(self, dataset):
      self._dataset = dataset
      self.element_spec = dataset.element_spec

    def cardinality(self):
      return 1

    def to_stacked(self):
      return self._dataset.to_stacked()

  datasets = client_datasets([4, 4, 4]) + [Lying(d) for d in client_datasets([8])]
  with fx.runtime.vectorized(chunk_size=2, shard=False):
    with pytest.raises(ValueError, match=r"arguments\.data\[client 3\]: the dataset gave 4 "
                       r"elements .* not at most 2"):
      fedavg_round(W, datasets)
    mean, _ = fedavg_round(W, client_datasets([4, 4, 4]))  # The runtime still works.
  np.testing.assert_allclose(mean, numpy_round(W, client_datasets([4, 4, 4]))[0], rtol=1e-5)


def test_type_errors_are_reported_before_the_call_as_for_stacked_cohorts():
  wrong = [Dataset.from_tensor_slices({"x": np.ones((4, 2), np.float32),
                                       "y": np.ones(4, np.float32)}).masked_batch(4)] * 5
  with fx.runtime.vectorized(chunk_size=2, shard=False):
    with pytest.raises(TypeError, match=r"arguments\.data\[client 0\]: the dataset's elements "
                       r"do not fit"):
      fedavg_round(W, wrong)


def test_host_memory_is_bounded_by_the_chunk_not_the_cohort():
  """Peak NumPy allocations of a round over 120 clients: chunks of 10 against the whole."""
  datasets = client_datasets([200] * 120, epochs=5)

  def peak_mb(chunk_size):
    with fx.runtime.vectorized(chunk_size=chunk_size, shard=False):
      fedavg_round(W, datasets)  # Compiles; then measure one more call.
      tracemalloc.start()
      fedavg_round(W, datasets)
      peak = tracemalloc.get_traced_memory()[1]
      tracemalloc.stop()
    return peak / 2**20

  streamed, whole = peak_mb(10), peak_mb(None)
  # A chunk is 1/12 of the cohort; with the one read ahead, two chunks can be on the host.
  assert streamed < whole / 4, (streamed, whole)


def test_dataset_pipelines_that_call_jax_are_read_while_the_program_runs(monkeypatch):
  """The reads run inside the program's callback and on the read-ahead thread."""
  spy = ReadSpy(monkeypatch)
  doubled = [d.map(lambda b: {**b, "x": np.asarray(jnp.asarray(b["x"]) * 2.0)})
             for d in client_datasets([5, 9, 3, 7, 2, 8])]
  with fx.runtime.vectorized(chunk_size=2, shard=False):
    mean, total = fedavg_round(W, doubled)
  assert len(spy.reads) == 3
  np.testing.assert_allclose(mean, numpy_round(W, doubled)[0], rtol=1e-5, atol=1e-6)
  assert total == 68.0


def test_explain_says_which_cohorts_stream_and_why_others_do_not(monkeypatch):
  datasets = client_datasets([5, 9, 1, 13, 4, 7])
  with fx.runtime.vectorized(chunk_size=4, shard=False, client_loop="vmap"):
    streamed = fx.runtime.explain(fedavg_round, W, datasets)
    monkeypatch.setattr(VECTORIZED, "STREAM_BYTES", 2**25)
    stacked = fx.runtime.explain(fedavg_round, W, datasets)
    cached = [d.cache() for d in datasets]
    fedavg_round(W, cached)
    from_cache = fx.runtime.explain(fedavg_round, W, cached)
  # 6 clients, chunk_size 4: reads of at most a quarter of the cohort, 2 clients.
  assert "arguments.data: streamed, 2 clients a read" in streamed
  assert "federated_map over 6 clients: vmap, streamed a read at a time" in streamed
  assert "arguments.data: stacked (0.0 MB padded, under STREAM_BYTES (32 MB))" in stacked
  assert "arguments.data: the cohort kept from an earlier call, already on the device" in from_cache
