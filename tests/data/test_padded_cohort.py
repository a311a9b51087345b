"""Tests for `Dataset.to_padded_cohort` (`federax/data/_cohort.py`): a cohort read at once must
equal each dataset's `to_padded_stacked()`, padded and stacked by NumPy."""

import collections

import jax
import numpy as np
import pytest

from federax.core.datasets import ALIGNMENT, CohortDataset
from federax.data import Dataset

rng = np.random.default_rng(0)


def _source(n):
  return Dataset.from_tensor_slices({'pixels': rng.random([n, 4, 3]).astype(np.float32),
                                     'label': rng.integers(0, 10, n).astype(np.int32)})


def _tff_format(e):  # TFF's `batch_format_fn`: reshapes only, so its results are views.
  return collections.OrderedDict(x=e['pixels'].reshape(-1, 12), y=e['label'].reshape(-1, 1))


def _reference(datasets, length):
  """NumPy: every dataset's `to_padded_stacked()`, its batches padded with zero rows to the
  cohort's widest and its elements with zeros to `length`, stacked; rows likewise (None when
  no dataset padded a batch)."""
  read = [d.to_padded_stacked() for d in datasets]
  flat = [jax.tree_util.tree_leaves(stacked) for stacked, _ in read]
  treedef = jax.tree_util.tree_structure(read[0][0])
  leaves = []
  for column in zip(*flat):
    width = max(x.shape[1] for x in column) if column[0].ndim > 1 else None
    tail = column[0].shape[1:] if width is None else (width,) + column[0].shape[2:]
    out = np.zeros((len(column), length) + tail, column[0].dtype)
    for i, x in enumerate(column):
      out[i, :x.shape[0], ...][(slice(None),) + tuple(slice(0, d) for d in x.shape[1:])] = x
    leaves.append(out)
  if all(rows is None for _, rows in read):
    return treedef.unflatten(leaves), None
  width = max(rows.shape[1] for _, rows in read if rows is not None)
  rows = np.zeros((len(read), length, width), bool)
  for i, ((stacked, r), d) in enumerate(zip(read, datasets)):
    m = len(jax.tree_util.tree_leaves(stacked)[0])
    rows[i, :m] = True if r is None else r
  return treedef.unflatten(leaves), rows


def _read(datasets, length):
  """The cohort read at `length`, checked to give each dataset's length."""
  got = Dataset.to_padded_cohort(datasets, lambda longest: length)
  if got is not None:
    np.testing.assert_array_equal(got[2], [sum(1 for _ in d) for d in datasets])
    return got[:2]
  return None


def _assert_same(got, want):
  assert jax.tree_util.tree_structure(got[0]) == jax.tree_util.tree_structure(want[0])
  for x, y in zip(jax.tree_util.tree_leaves(got[0]), jax.tree_util.tree_leaves(want[0])):
    np.testing.assert_array_equal(x, y, strict=True)
  if want[1] is None:
    assert got[1] is None
  else:
    np.testing.assert_array_equal(got[1], want[1], strict=True)


COHORTS = {
    # TFF's way: short last batches, `map` results that are views of the batches.
    'tff_way': lambda: [_source(n).repeat(2).shuffle(10, seed=1).batch(8).map(_tff_format)
                        for n in (47, 16, 9, 30)],
    # Every client's batches full but one's.
    'one_short': lambda: [_source(n).batch(4).map(_tff_format) for n in (8, 12, 10)],
    'no_short_batch': lambda: [_source(n).batch(4).map(_tff_format) for n in (8, 12, 4)],
    # New arrays from `map`: copied into the cohort's.
    'new_arrays': lambda: [_source(n).shuffle(5, seed=2).batch(6).map(
        lambda e: {'x': e['pixels'] * 2.0, 'y': e['label'] + 1}) for n in (13, 30)],
    'rows_dropped': lambda: [_source(n).batch(5).map(
        lambda e: {'x': e['pixels'][:2].reshape(-1, 12)}) for n in (13, 30)],
    'some_views': lambda: [_source(n).batch(5).map(
        lambda e: {'x': e['pixels'].reshape(-1, 12), 'y': e['label'].astype(np.int64)})
        for n in (13, 30)],
    'no_map': lambda: [_source(n).batch(8) for n in (20, 3, 16)],
    'masked': lambda: [_source(n).masked_batch(8) for n in (20, 3, 16)],
    'masked_map': lambda: [_source(n).repeat(2).masked_batch(8).map(
        lambda e: {'x': e['pixels'].reshape(-1, 12), 'mask': e['mask']}) for n in (20, 3, 16)],
    'tuple_elements': lambda: [Dataset.from_tensor_slices(
        (rng.random([n, 2]).astype(np.float32), np.arange(n))).batch(3).map(
            lambda x, y: (x.reshape(-1, 2), y)) for n in (7, 9)],
}


@pytest.mark.parametrize('name', sorted(COHORTS))
@pytest.mark.parametrize('extra', [0, 5])
def test_the_cohort_read_equals_each_dataset_padded_by_numpy(name, extra):
  datasets = COHORTS[name]()
  length = max(len(d) for d in datasets) + extra
  got = _read(datasets, length)
  assert got is not None
  _assert_same(got, _reference(datasets, length))
  for x in jax.tree_util.tree_leaves(got):
    assert x.ctypes.data % ALIGNMENT == 0 and x.flags.writeable  # Fresh, taken uncopied.


def test_a_dataset_reads_the_same_after_a_cohort_read():
  datasets = COHORTS['tff_way']()
  before = [d.to_padded_stacked() for d in datasets]
  _read(datasets, 20)
  for d, (stacked, rows) in zip(datasets, before):
    _assert_same(d.to_padded_stacked(), (stacked, rows))


def test_the_map_function_runs_once_per_batch():
  calls = []

  def fmt(e):
    calls.append(len(e['label']))
    return _tff_format(e)

  datasets = [_source(n).batch(8).map(fmt) for n in (20, 9)]
  Dataset.to_padded_cohort(datasets, lambda longest: 4)
  assert calls == [8, 8, 4, 8, 1]


@pytest.mark.parametrize('make', [
    lambda: [_source(9).batch(4).cache(), _source(5).batch(4).cache()],  # Kept by the runtime.
    lambda: [_source(9), _source(5)],  # Not batched.
    lambda: [_source(9).batch(4), Dataset.from_tensor_slices(
        {'pixels': np.zeros([5, 4, 3], np.float64), 'label': np.zeros(5, np.int32)}).batch(4)],
    lambda: [_source(9).batch(4), _source(9).batch(3)],  # Batch sizes differ.
    lambda: [Dataset.from_tensor_slices(np.array([b'a', b'b', b'c'])).batch(2)] * 2,
    lambda: [_source(9).batch(4), _source(0).batch(4)],  # An empty client.
    lambda: [_source(9).batch(4), _source(5).batch(4).map(lambda e: e)],
    lambda: [_source(n).batch(4).map(  # A scalar beside the rows: `to_padded_stacked` judges.
        lambda e: {'x': e['pixels'], 'n': np.float32(len(e['label']))}) for n in (9, 5)],
], ids=['cached', 'unbatched', 'dtypes_differ', 'batch_sizes_differ', 'strings', 'empty',
        'some_mapped', 'per_batch_scalar'])
def test_cohorts_it_does_not_read_are_left_to_the_one_by_one_read(make):
  datasets = make()
  assert _read(datasets, 8) is None


def test_a_length_shorter_than_the_longest_dataset_is_refused():
  with pytest.raises(ValueError, match=r"padded_length\(6\) gave 4, fewer elements than the "
                     "longest dataset has"):
    Dataset.to_padded_cohort([_source(9).batch(2), _source(11).batch(2)], lambda longest: 4)


def test_a_filtered_dataset_of_unknown_length_is_read_with_the_length_it_has():
  datasets = [_source(n).filter(lambda e: e['label'] < 5).batch(3).map(_tff_format)
              for n in (20, 31)]
  lengths = []
  got = Dataset.to_padded_cohort(datasets, lambda longest: lengths.append(longest) or 8)
  assert lengths == [max(sum(1 for _ in d) for d in datasets)]
  _assert_same(got[:2], _reference(datasets, 8))


def test_a_dataset_is_a_cohort_dataset():
  assert isinstance(_source(3).batch(2), CohortDataset)


def test_map_results_that_are_views_of_the_batches_are_not_copied(monkeypatch):
  from federax.data import _cohort

  def refuse(*args):
    raise AssertionError('copied')

  monkeypatch.setattr(_cohort, '_results_copied', refuse)
  for name in ('tff_way', 'masked_map', 'one_short'):
    datasets = COHORTS[name]()
    length = max(len(d) for d in datasets)
    _assert_same(_read(datasets, length), _reference(datasets, length))
  with pytest.raises(AssertionError, match='copied'):
    _read(COHORTS['new_arrays'](), 8)


def _frozen_source(n):
  pixels = rng.random([n, 4, 3]).astype(np.float32)
  label = rng.integers(0, 10, n).astype(np.int32)
  pixels.setflags(write=False)
  label.setflags(write=False)
  return Dataset.from_tensor_slices({'pixels': pixels, 'label': label})


def test_a_cohort_of_read_only_sources_is_read_as_read_only_arrays():
  datasets = [_frozen_source(n).repeat(2).shuffle(5, seed=1).batch(4).map(_tff_format)
              for n in (7, 3)]
  stacked, rows, _ = Dataset.to_padded_cohort(datasets, lambda longest: 4)
  leaves = jax.tree_util.tree_leaves((stacked, rows))
  assert leaves and not any(x.flags.writeable for x in leaves)
  again = Dataset.to_padded_cohort(datasets, lambda longest: 4)
  _assert_same(again[:2], (stacked, rows))  # What "read-only" promises: every read gives it.


@pytest.mark.parametrize('make', [
    lambda: _source(7),  # The user's arrays, which the user may still change.
    lambda: Dataset.from_tensor_slices({'pixels': np.zeros([7, 4, 3], np.float32)[::1],
                                        'label': np.zeros(7, np.int32)}),
    lambda: _frozen_source(7).concatenate(_source(2)),
])
def test_a_cohort_of_writable_sources_is_read_as_writable_arrays(make):
  stacked, _, _ = Dataset.to_padded_cohort([make().batch(4)], lambda longest: 4)
  assert all(x.flags.writeable for x in jax.tree_util.tree_leaves(stacked))


def test_a_read_only_view_of_a_writable_array_is_not_read_only():
  from federax.data._elements import frozen, read_only
  base = np.arange(6.0)
  view = base[2:]
  view.setflags(write=False)
  assert not read_only(view)  # `base[3] = 1` still changes it.
  assert read_only(np.frombuffer(b'abcd', np.uint8))  # A view of immutable bytes.
  assert read_only(frozen({'x': view})['x']) and not base.flags.writeable


def test_from_elements_stacks_copies_of_its_own_so_it_reads_the_same_every_time():
  elements = [{'x': np.full(3, float(i))} for i in range(5)]
  ds = Dataset.from_elements(elements)
  elements[0]['x'][0] = 99.0  # The caller's arrays are not the dataset's.
  assert ds._node.immutable()  # pylint: disable=protected-access
  assert next(iter(ds))['x'].tolist() == [0.0, 0.0, 0.0]
