"""Tests for `map` over batches (`federax/data/_batched_map.py`) against the per-element path."""

import collections

import jax
import numpy as np
import pytest

from federax.data import Dataset

rng = np.random.default_rng(0)


def _source(n=47):
  return Dataset.from_tensor_slices({'pixels': rng.random([n, 4, 3]).astype(np.float32),
                                     'label': rng.integers(0, 10, n).astype(np.int32)})


def _tff_format(e):  # TFF's `batch_format_fn`: reshapes only, so its results are views.
  return collections.OrderedDict(x=e['pixels'].reshape(-1, 12), y=e['label'].reshape(-1, 1))


def _streamed(ds):
  """The elements by the per-element streaming path (the reference)."""
  return list(ds._node.iterate(()))


def _padded_reference(elements):
  """NumPy: each element's leaves zero-padded to the most rows and stacked, and the row mask
  (None when no element is short), from the per-element batches."""
  leaves = [[np.asarray(x) for x in jax.tree_util.tree_leaves(e)] for e in elements]
  if all(len({x.shape for x in column}) == 1 for column in zip(*leaves)):
    return [np.stack(column) for column in zip(*leaves)], None
  counts = [x[0].shape[0] for x in leaves]
  width = max(counts)
  out = []
  for column in zip(*leaves):
    padded = np.zeros((len(column), width) + column[0].shape[1:], column[0].dtype)
    for i, x in enumerate(column):
      padded[i, :len(x)] = x
    out.append(padded)
  return out, np.arange(width)[None, :] < np.asarray(counts)[:, None]


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert jax.tree_util.tree_structure(x) == jax.tree_util.tree_structure(y)
    for u, v in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y)):
      assert np.asarray(u).dtype == np.asarray(v).dtype
      np.testing.assert_array_equal(u, v, strict=True)


PIPELINES = {
    'tff_way': lambda: _source().repeat(3).shuffle(10, seed=1).batch(8).map(_tff_format),
    'new_arrays': lambda: _source().shuffle(5, seed=2).batch(6).map(
        lambda e: {'x': e['pixels'] * 2.0, 'y': e['label'] + 1}),
    'mixed': lambda: _source().batch(5).map(
        lambda e: {'x': e['pixels'].reshape(-1, 12), 'y': e['label'].astype(np.int64)}),
    'reversed_rows': lambda: _source().batch(10).map(lambda e: e['pixels'][::-1]),
    'one_input_twice': lambda: _source().batch(10).map(
        lambda e: {'a': e['pixels'], 'b': e['pixels'].reshape(-1, 12)}),
    'in_place_mutation': lambda: _source().batch(9).map(
        lambda e: {'x': np.multiply(e['pixels'], 3.0, out=e['pixels'])}),
    'drops_a_row': lambda: _source().batch(6).map(lambda e: e['pixels'][1:]),
    'per_batch_scalar': lambda: _source().batch(6).map(lambda e: e['label'].sum()),
    'tuple_elements': lambda: Dataset.from_tensor_slices(
        (np.arange(23.0), np.arange(23))).batch(4).map(lambda x, y: (y.reshape(-1, 1), x)),
    'masked': lambda: _source().shuffle(7, seed=3).masked_batch(6).map(
        lambda e: dict(_tff_format(e), mask=e['mask'])),
    'repeated_after_map': lambda: _source(11).batch(4).map(_tff_format).repeat(2),
    'two_short_batches': lambda: _source(3).batch(5).concatenate(_source(2).batch(5)).map(
        _tff_format),
    'full_batches_only': lambda: _source(48).batch(8).map(_tff_format),
}


@pytest.mark.parametrize('name', PIPELINES)
def test_batched_map_gives_the_per_element_batches_in_order(name):
  ds = PIPELINES[name]()
  expected = _streamed(ds)
  _assert_same(list(ds), expected)
  stacked, rows = ds.to_padded_stacked()
  reference, reference_rows = _padded_reference(expected)
  if reference_rows is None:
    assert rows is None
  else:
    np.testing.assert_array_equal(rows, reference_rows, strict=True)
  got = jax.tree_util.tree_leaves(stacked)
  assert len(got) == len(reference)
  for x, y in zip(got, reference):
    np.testing.assert_array_equal(x, y, strict=True)


def test_batched_map_reads_each_batch_once_and_keeps_views_where_they_lie():
  results = []

  def fmt(e):
    out = _tff_format(e)
    results.append(out)
    return out

  ds = _source().shuffle(10, seed=1).batch(8).map(fmt)
  len(ds.element_spec)  # The spec is read from a first element: not counted below.
  results.clear()
  stacked, rows = ds.to_padded_stacked()
  assert len(results) == 6 and rows.sum() == 47  # Once per batch: 5 full, then 7 rows.
  # The reshaped views are the returned arrays: the batches were gathered once, not copied again.
  assert all(np.shares_memory(stacked['x'], r['x']) for r in results)
  assert all(np.shares_memory(stacked['y'], r['y']) for r in results)
  assert not np.any(stacked['x'][5, 7:]) and not np.any(stacked['y'][5, 7:])
  results.clear()
  ds.to_padded_stacked()
  assert len(results) == 6  # Every read runs the function again, as tf.data does.
  source = ds._node.parent.parent.parent.leaves
  assert not any(np.shares_memory(stacked['x'], s) for s in source)


def test_batched_map_results_are_fresh_on_every_read_and_read_only_once_cached():
  ds = _source().batch(8).map(_tff_format)
  first, _ = ds.to_padded_stacked()
  second, _ = ds.to_padded_stacked()
  assert not np.shares_memory(first['x'], second['x'])
  first['x'][:] = -1  # The caller's to change: later reads are not affected.
  np.testing.assert_array_equal(ds.to_padded_stacked()[0]['x'], second['x'])
  cached = ds.cache()
  stacked, rows = cached.to_padded_stacked()
  assert not stacked['x'].flags.writeable and not rows.flags.writeable
  np.testing.assert_array_equal(stacked['x'], second['x'])
