"""The vectorized runtime reads a cohort of datasets at once (`Dataset.to_padded_cohort`): the
same values as reading them one by one, and as the sequential runtime."""

import collections
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.data import Dataset

rng = np.random.default_rng(3)
BATCH_TYPE = collections.OrderedDict(x=(np.float32, [None, 6]), y=(np.int32, [None, 1]))
CLIENT_DATA = fx.FederatedType(fx.SequenceType(BATCH_TYPE), fx.CLIENTS)


def _tff_format(e):
  return collections.OrderedDict(x=e['pixels'].reshape(-1, 6), y=e['label'].reshape(-1, 1))


def _datasets(sizes=(23, 9, 40)):
  return [Dataset.from_tensor_slices({
      'pixels': rng.random([n, 2, 3]).astype(np.float32),
      'label': rng.integers(0, 5, n).astype(np.int32)}).repeat(2).shuffle(7, seed=1).batch(
          5).map(_tff_format) for n in sizes]


def _with_mask(batch, mask):
  return collections.OrderedDict(batch, mask=mask)


@fx.computation(np.float32, BATCH_TYPE, row_mask=_with_mask)
def _add_batch(total, batch):
  rows = batch.get('mask', jnp.ones(batch['y'].shape[:1], bool))  # Sequential: no mask.
  weights = jnp.where(rows, batch['y'][:, 0] + 1, 0).astype(np.float32)
  return total + jnp.sum(weights[:, None] * batch['x'])  # Weighted: rows must not mix.


@fx.federated_computation(CLIENT_DATA)
def _client_totals(data):
  return fx.sequence_reduce(data, np.float32(0.0), _add_batch)


def _numpy_totals(datasets):
  return [sum(float(np.sum((b['y'][:, 0] + 1.0)[:, None] * b['x'])) for b in d) for d in datasets]


def test_a_cohort_read_at_once_gives_what_numpy_and_the_sequential_runtime_give(monkeypatch):
  reads = []
  cohort_read = Dataset.to_padded_cohort

  def counted(datasets, padded_length):
    out = cohort_read(datasets, padded_length)
    reads.append(out is not None)
    return out

  monkeypatch.setattr(Dataset, 'to_padded_cohort', staticmethod(counted))
  datasets = _datasets()
  runtime = fx.runtime.vectorized()
  with runtime, warnings.catch_warnings():
    warnings.simplefilter('error')  # No fallback.
    vectorized = [_client_totals(datasets) for _ in range(2)]
    assert "read at once into the cohort's arrays" in runtime.explain(_client_totals, datasets)
  assert reads == [True, True, True]
  with fx.runtime.sequential():
    sequential = _client_totals(datasets)
  want = _numpy_totals(datasets)
  np.testing.assert_allclose(sequential, want, rtol=1e-5)
  for got in vectorized:
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_a_cohort_it_cannot_read_at_once_is_read_one_by_one(monkeypatch):
  refuse = staticmethod(lambda datasets, padded_length: None)
  monkeypatch.setattr(Dataset, 'to_padded_cohort', refuse)
  datasets = _datasets()
  with fx.runtime.vectorized(), warnings.catch_warnings():
    warnings.simplefilter('error')
    np.testing.assert_allclose(_client_totals(datasets), _numpy_totals(datasets), rtol=1e-5)


def test_a_map_function_failing_in_a_cohort_read_fails_the_call_with_its_error():
  def broken(e):
    raise ValueError('the user map failed')

  datasets = [d.map(broken) for d in _datasets()[:1]] + _datasets()[1:]
  with fx.runtime.vectorized():
    with pytest.raises(ValueError, match='the user map failed'):
      _client_totals(datasets)


def test_datasets_whose_elements_do_not_fit_the_type_are_refused_naming_the_client():
  fits = _datasets()[0]
  wrong = Dataset.from_tensor_slices({'pixels': np.zeros([4, 2, 3], np.float32)}).batch(3).map(
      lambda e: {'x': e['pixels'].reshape(-1, 6)})  # No 'y'.
  with fx.runtime.vectorized():
    with pytest.raises(TypeError, match=r"argument\[client 1\]: the dataset's elements do not fit"):
      _client_totals([fits, wrong])


def _counting_reads(monkeypatch):
  """The list of cohort reads `Dataset.to_padded_cohort` makes from now on."""
  reads = []
  cohort_read = Dataset.to_padded_cohort

  def counted(datasets, padded_length):
    reads.append(len(datasets))
    return cohort_read(datasets, padded_length)

  monkeypatch.setattr(Dataset, 'to_padded_cohort', staticmethod(counted))
  return reads


def _read_only_sources(sizes=(23, 9, 40)):
  sources = []
  for n in sizes:
    pixels = rng.random([n, 2, 3]).astype(np.float32)
    label = rng.integers(0, 5, n).astype(np.int32)
    pixels.setflags(write=False)
    label.setflags(write=False)
    sources.append({'pixels': pixels, 'label': label})
  return sources


def _pipeline(source):
  return Dataset.from_tensor_slices(source).repeat(2).shuffle(7, seed=1).batch(5).map(_tff_format)


def test_a_loop_over_the_same_read_only_cohort_stops_reading_it_from_its_second_call(
    monkeypatch):
  datasets = [_pipeline(s) for s in _read_only_sources()]
  want = _numpy_totals(datasets)
  reads = _counting_reads(monkeypatch)
  runtime = fx.runtime.vectorized()
  with runtime, warnings.catch_warnings():
    warnings.simplefilter('error')  # No fallback.
    for _ in range(4):
      np.testing.assert_allclose(_client_totals(datasets), want, rtol=1e-5)
    assert 'the cohort kept from an earlier call, already on the device' in runtime.explain(_client_totals, datasets)
  assert reads == [3, 3]  # Read, read again (it came back: kept), then taken as kept.


def test_a_cohort_of_writable_arrays_is_read_every_call_and_sees_them_change(monkeypatch):
  sources = _read_only_sources()
  sources[1] = {k: v.copy() for k, v in sources[1].items()}  # One client's arrays writable.
  datasets = [_pipeline(s) for s in sources]
  reads = _counting_reads(monkeypatch)
  with fx.runtime.vectorized():
    for _ in range(3):
      np.testing.assert_allclose(_client_totals(datasets), _numpy_totals(datasets), rtol=1e-5)
    sources[1]['pixels'][...] *= 2  # The user changes the array a dataset reads.
    np.testing.assert_allclose(_client_totals(datasets), _numpy_totals(datasets), rtol=1e-5)
  assert reads == [3] * 4


def test_new_datasets_each_call_are_read_each_call(monkeypatch):
  sources = _read_only_sources()
  reads = _counting_reads(monkeypatch)
  with fx.runtime.vectorized():
    for _ in range(3):
      datasets = [_pipeline(s) for s in sources]  # As `create_dataset` inside the loop makes.
      np.testing.assert_allclose(_client_totals(datasets), _numpy_totals(datasets), rtol=1e-5)
  assert reads == [3] * 3
