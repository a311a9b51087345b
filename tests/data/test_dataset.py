"""Tests for `Dataset`: tf.data's documented semantics, the vectorized plan against streaming."""

import collections

import numpy as np
import pytest

from federax.core.types import TensorType
from federax.data import Dataset, RaggedElementsError


def _r(n):
  return Dataset.from_tensor_slices(np.arange(n))


def _ints(ds):
  return [np.asarray(x).tolist() for x in ds]


def _streamed(ds):
  """The elements by the per-element streaming path (the reference for the vectorized plan)."""
  return list(ds._node.iterate(()))


def _assert_same_elements(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_equal(x, y)


# --- tf.data semantics -------------------------------------------------------------------------


def test_batch_of_range_10_by_3_keeps_the_short_last_batch():
  assert _ints(_r(10).batch(3)) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
  assert _ints(_r(10).batch(3, drop_remainder=True)) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
  assert len(_r(10).batch(3)) == 4 and len(_r(10).batch(3, drop_remainder=True)) == 3


def test_repeat_then_batch_crosses_the_epoch_boundary():
  assert _ints(_r(4).repeat(2).batch(3)) == [[0, 1, 2], [3, 0, 1], [2, 3]]


def test_take_skip_concatenate_enumerate_unbatch_reduce():
  assert _ints(_r(10).skip(3).take(4)) == [3, 4, 5, 6]
  assert _ints(_r(3).concatenate(_r(2))) == [0, 1, 2, 0, 1]
  lazy = Dataset.concatenate_lazily([lambda: _r(3), lambda: _r(2)])
  assert _ints(lazy) == [0, 1, 2, 0, 1] and lazy.cardinality() == -2
  assert [(int(i), int(x)) for i, x in _r(3).enumerate(start=5)] == [(5, 0), (6, 1), (7, 2)]
  assert _ints(_r(7).batch(3).unbatch()) == list(range(7))
  assert int(_r(5).reduce(np.int64(0), lambda s, x: s + x)) == 10
  assert _r(3).prefetch(2) is not None and _ints(_r(3).prefetch(2)) == [0, 1, 2]
  assert _ints(_r(3).as_numpy_iterator()) == [0, 1, 2]
  assert _ints(_r(3).take(-1)) == [0, 1, 2]


def test_as_numpy_iterator_is_a_generator_that_keras_reads():
  # Keras 3's fit/evaluate take generators (not other iterators): the tutorials pass
  # `ds.as_numpy_iterator()`, after take() (an islice inside) as after batch().
  import types
  for ds in (_r(5).take(3), _r(5).batch(2), _r(5).shuffle(5, seed=0)):
    assert isinstance(ds.as_numpy_iterator(), types.GeneratorType)
  assert _ints(_r(5).take(3).as_numpy_iterator()) == [0, 1, 2]


def test_map_unpacks_tuples_and_filter_keeps_matches():
  ds = Dataset.from_tensor_slices((np.arange(4), 10 * np.arange(4)))
  assert _ints(ds.map(lambda x, y: x + y)) == [0, 11, 22, 33]
  assert _ints(_r(10).filter(lambda x: x % 3 == 0)) == [0, 3, 6, 9]
  assert _r(10).filter(lambda x: x > 4).to_stacked().tolist() == [5, 6, 7, 8, 9]


def test_shuffle_with_buffer_1_is_identity_and_full_buffer_is_a_permutation():
  assert _ints(_r(20).shuffle(1, seed=3)) == list(range(20))
  out = _ints(_r(50).shuffle(50, seed=3))
  assert sorted(out) == list(range(50)) and out != list(range(50))


def test_shuffle_is_reproducible_and_reshuffles_each_repeat_epoch():
  ds = _r(30).shuffle(30, seed=7).repeat(2)
  out = _ints(ds)
  assert out == _ints(_r(30).shuffle(30, seed=7).repeat(2))
  first, second = out[:30], out[30:]
  assert sorted(first) == sorted(second) == list(range(30)) and first != second
  same = _ints(_r(30).shuffle(30, seed=7, reshuffle_each_iteration=False).repeat(2))
  assert same[:30] == same[30:]
  assert _ints(_r(30).shuffle(30, seed=8)) != _ints(_r(30).shuffle(30, seed=7))


def test_repeat_then_shuffle_mixes_across_epochs():
  out = _ints(_r(10).repeat(2).shuffle(20, seed=0))
  assert sorted(out) == sorted(list(range(10)) * 2)
  assert sorted(out[:10]) != list(range(10))  # Some element of epoch 2 comes early.


def test_small_buffer_only_moves_elements_a_bounded_distance():
  # With a buffer of b, output t is one of inputs 0..t+b-1 (tf.data's buffer semantics).
  out = np.array(_ints(_r(200).shuffle(5, seed=1)))
  assert sorted(out.tolist()) == list(range(200))
  assert np.all(out <= np.arange(200) + 4)


def test_shuffle_is_uniform_over_positions():
  # For a full buffer, element 0 lands at each of 4 positions about equally often.
  counts = np.zeros(4)
  for seed in range(2000):
    counts[_ints(_r(4).shuffle(4, seed=seed)).index(0)] += 1
  assert np.all(np.abs(counts - 500) < 5 * np.sqrt(500))


def test_shuffle_orders_are_kept_read_only_and_bounded(monkeypatch):
  from federax.data import _shuffle
  ds = _r(50).shuffle(8, seed=11).repeat(2)
  first = _shuffle.shuffle_positions(50, 8, [11])
  assert _shuffle.shuffle_positions(50, 8, [11]) is first and not first.flags.writeable
  # The kept order is the one the per-element buffer gives (the streaming reference).
  np.testing.assert_array_equal(_r(50).shuffle(8, seed=11).to_stacked(), first)
  assert _ints(ds) == _ints(_streamed(ds)) == _ints(ds)
  monkeypatch.setattr(_shuffle, "KEPT_BYTES", 2 * first.nbytes)
  for seed in range(3):  # Three orders of 50 positions: the oldest is let go.
    _shuffle.shuffle_positions(50, 8, [100 + seed])
  assert list(_shuffle._kept) == [(50, 8, (101,)), (50, 8, (102,))]
  assert _shuffle._kept_bytes[0] == 2 * first.nbytes


@pytest.mark.parametrize("make", [
    lambda: _r(23).shuffle(7, seed=1).repeat(3).batch(4),
    lambda: _r(23).repeat(3).shuffle(7, seed=2).batch(4, drop_remainder=True),
    lambda: _r(23).shuffle(5, seed=1).repeat(2).skip(3).take(30).batch(5),
    lambda: _r(10).repeat().shuffle(4, seed=5).take(37),
    lambda: _r(9).map(lambda x: x * 2).shuffle(9, seed=0).repeat(2).filter(lambda x: x % 3 != 0),
    lambda: _r(9).batch(2).shuffle(3, seed=4).repeat(2).unbatch(),
    lambda: Dataset.from_tensor_slices({'x': np.arange(11)}).shuffle(4, seed=9).masked_batch(3),
    lambda: _r(5).shuffle(5, seed=1).concatenate(_r(3).map(lambda x: x + 100)).repeat(2),
    lambda: Dataset.from_elements([np.ones(i) for i in range(1, 6)]).shuffle(3, seed=2),
    lambda: _r(23).shuffle(7, seed=1).batch(5).map(lambda x: {'y': x * 2}).repeat(2),
    lambda: _r(11).batch(4).map(lambda x: x[::-1]).shuffle(3, seed=1).unbatch(),
    lambda: _r(6).map(lambda x: np.arange(x)).take(5),
])
def test_vectorized_plan_matches_streaming(make):
  ds = make()
  _assert_same_elements(list(ds), _streamed(ds))


def test_cardinality_and_len():
  assert _r(10).repeat(3).cardinality() == 30
  assert _r(10).repeat().cardinality() == -1
  assert _r(10).filter(lambda x: True).cardinality() == -2
  assert _r(10).repeat().take(5).cardinality() == 5
  assert len(_r(10).skip(4)) == 6 and len(_r(10).batch(3)) == 4
  assert len(_r(6).batch(2, drop_remainder=True).unbatch()) == 6
  assert _r(5).batch(2).unbatch().cardinality() == -2
  assert repr(_r(3).repeat()) == "<Dataset repeat: cardinality=inf>"
  with pytest.raises(TypeError, match="The dataset is infinite"):
    len(_r(3).repeat())
  with pytest.raises(TypeError, match="The dataset length is unknown"):
    len(_r(3).filter(lambda x: True))


def test_repeat_of_empty_dataset_terminates():
  assert _ints(_r(0).repeat()) == [] and _r(0).repeat().cardinality() == 0


# --- Element specs -----------------------------------------------------------------------------


def test_element_spec_keeps_containers_and_marks_varying_dims():
  Point = collections.namedtuple("Point", ["x", "y"])
  ds = Dataset.from_tensor_slices({'pixels': np.zeros([5, 784], np.float32),
                                   'label': np.zeros([5], np.int32)})
  assert ds.element_spec == {'pixels': TensorType(np.float32, [784]),
                             'label': TensorType(np.int32)}
  assert ds.batch(2).element_spec['pixels'] == TensorType(np.float32, [None, 784])
  assert ds.batch(2, drop_remainder=True).element_spec['label'] == TensorType(np.int32, [2])
  assert ds.masked_batch(2).element_spec['mask'] == TensorType(np.bool_, [2])
  point = Dataset.from_tensor_slices(Point(np.zeros([3, 2]), np.zeros(3, np.int64)))
  assert point.element_spec == Point(TensorType(np.float64, [2]), TensorType(np.int64))
  assert Dataset.from_tensor_slices(np.array(['a', 'bc'])).element_spec == TensorType(np.str_)
  ragged = Dataset.from_elements([np.ones([1, 3]), np.ones([4, 3])])
  assert ragged.element_spec == TensorType(np.float64, [None, 3])
  assert ragged.padded_batch(2).element_spec == TensorType(np.float64, [None, None, 3])
  assert _r(4).map(lambda x: {'y': x, 'z': np.ones(2)}).element_spec == {
      'y': TensorType(np.int64), 'z': TensorType(np.float64, [2])}
  assert _r(4).enumerate().element_spec == (TensorType(np.int64), TensorType(np.int64))


# --- to_stacked: the runtime hook --------------------------------------------------------------


def test_to_stacked_of_the_training_pipeline_matches_a_numpy_reference():
  x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
  ds = Dataset.from_tensor_slices({'x': x, 'y': np.arange(10)})
  stacked = ds.shuffle(10, seed=1).repeat(3).batch(5, drop_remainder=True).to_stacked()
  assert stacked['x'].shape == (6, 5, 3) and stacked['y'].shape == (6, 5)
  np.testing.assert_array_equal(stacked['x'], x[stacked['y']])
  for epoch in range(3):
    assert sorted(stacked['y'][2 * epoch:2 * epoch + 2].ravel()) == list(range(10))
  elements = list(ds.shuffle(10, seed=1).repeat(3).batch(5, drop_remainder=True))
  for i, e in enumerate(elements):
    np.testing.assert_array_equal(e['y'], stacked['y'][i])


def test_masked_batch_pads_with_zeros_and_masks():
  ds = Dataset.from_tensor_slices({'x': np.arange(1, 8, dtype=np.float32),
                                   's': np.array(list('abcdefg'))})
  stacked = ds.masked_batch(3).to_stacked()
  np.testing.assert_array_equal(stacked['x'], [[1, 2, 3], [4, 5, 6], [7, 0, 0]])
  np.testing.assert_array_equal(stacked['mask'], [[1, 1, 1], [1, 1, 1], [1, 0, 0]])
  assert stacked['s'][2].tolist() == ['g', '', ''] and stacked['x'].dtype == np.float32
  _assert_same_elements(list(ds.masked_batch(3)), _streamed(ds.masked_batch(3)))


def test_to_stacked_of_full_batches_and_after_map():
  assert _r(6).batch(3).to_stacked().tolist() == [[0, 1, 2], [3, 4, 5]]
  assert _r(4).map(lambda x: (x, -x)).to_stacked()[1].tolist() == [0, -1, -2, -3]


def test_to_stacked_of_empty_dataset_uses_the_spec():
  ds = Dataset.from_tensor_slices({'x': np.zeros([0, 4], np.float32)})
  assert ds.to_stacked()['x'].shape == (0, 4)
  assert ds.batch(2).to_stacked()['x'].shape == (0, 2, 4)
  assert ds.masked_batch(2).to_stacked()['mask'].shape == (0, 2)


def test_to_stacked_does_not_call_python_per_element(monkeypatch):
  from federax.data import _node, _plan, _sources  # pylint: disable=g-import-not-at-top

  def fail(*args, **kwargs):
    raise AssertionError("per-element gather on the vectorized path")

  ds = Dataset.from_tensor_slices({'x': np.arange(100_000)})
  pipeline = ds.shuffle(1000, seed=0).repeat(3).skip(5).take(200_000).masked_batch(64)
  monkeypatch.setattr(_plan, "plan_elements", fail)
  monkeypatch.setattr(_node, "plan_elements", fail)
  monkeypatch.setattr(_sources.Slices, "iterate", fail)
  stacked = pipeline.to_stacked()
  assert stacked['x'].shape == (3125, 64) and stacked['mask'].sum() == 200_000


def test_ragged_final_batch_raises_with_a_hint():
  with pytest.raises(RaggedElementsError, match=r"3 rows and 1 rows.*masked_batch"):
    _r(10).batch(3).to_stacked()
  with pytest.raises(RaggedElementsError, match=r"differ in shape at <element>: \(1,\), \(2,\)"):
    Dataset.from_elements([np.ones(1), np.ones(2)]).to_stacked()
  assert issubclass(RaggedElementsError, ValueError)


# --- padded_batch ------------------------------------------------------------------------------


def test_padded_batch_pads_to_longest_or_to_padded_shapes():
  ds = Dataset.from_elements([{'t': np.arange(1, i + 1)} for i in (1, 3, 2)])
  assert [b['t'].tolist() for b in ds.padded_batch(2)] == [[[1, 0, 0], [1, 2, 3]], [[1, 2]]]
  out = next(iter(ds.padded_batch(3, padded_shapes={'t': [4]}, padding_values=-1)))
  assert out['t'].tolist() == [[1, -1, -1, -1], [1, 2, 3, -1], [1, 2, -1, -1]]
  assert ds.padded_batch(3, padded_shapes={'t': [4]}).element_spec['t'] == TensorType(
      np.int64, [None, 4])
  with pytest.raises(ValueError, match=r"\['t'\] has an element of shape \(3,\) that does not fit"):
    list(ds.padded_batch(3, padded_shapes={'t': [2]}))


# --- Errors ------------------------------------------------------------------------------------


def test_errors_name_expected_and_actual():
  with pytest.raises(ValueError, match=r"leading \(example\) axis; got lengths \['a'\]: 2, \['b'\]: 3"):
    Dataset.from_tensor_slices({'a': np.zeros(2), 'b': np.zeros(3)})
  with pytest.raises(ValueError, match=r"but \['a'\] has shape \(\) \(a scalar\)"):
    Dataset.from_tensor_slices({'a': np.float32(1.0)})
  with pytest.raises(ValueError, match="at least one element"):
    Dataset.from_elements([])
  with pytest.raises(ValueError, match="different structures"):
    Dataset.from_elements([{'a': 1}, {'b': 1}])
  with pytest.raises(TypeError, match=r"needs elements that are mappings.*got elements of type"):
    _r(3).masked_batch(2)
  with pytest.raises(ValueError, match=r"already have it \(keys: \['mask'\]\)"):
    Dataset.from_tensor_slices({'mask': np.zeros(3)}).masked_batch(2)
  with pytest.raises(ValueError, match="batch_size >= 1, got 0"):
    _r(3).batch(0)
  with pytest.raises(ValueError, match="buffer_size >= 1, got 0"):
    _r(3).shuffle(0)
  with pytest.raises(ValueError, match="non-negative int, got -1"):
    _r(3).shuffle(2, seed=-1)
  with pytest.raises(ValueError, match="count >= 0, got -2"):
    _r(3).take(-2)
  with pytest.raises(ValueError, match=r"repeat\(count\) expects count >= 0"):
    _r(3).repeat(-3)
  with pytest.raises(ValueError, match="infinite"):
    _r(3).repeat().to_stacked()
  with pytest.raises(TypeError, match=r"one dtype per feature; <element> is float64 and int64"):
    Dataset.from_tensor_slices(np.zeros(2)).concatenate(_r(2))
  with pytest.raises(TypeError, match="expects a Dataset, got list"):
    _r(2).concatenate([1])
  with pytest.raises(ValueError, match=r"concatenate_lazily\(\) expects at least one"):
    Dataset.concatenate_lazily([])
  with pytest.raises(ValueError, match=r"unbatch\(\) splits along a leading axis"):
    _r(2).unbatch()
  with pytest.raises(ValueError, match="different ranks"):
    list(Dataset.from_elements([np.ones(2), np.ones([1, 1])]).padded_batch(2))
  with pytest.raises(ValueError, match="cannot infer the element_spec"):
    Dataset.from_tensor_slices(np.zeros([0, 2])).map(lambda x: x[5]).element_spec
  with pytest.raises(AttributeError, match="immutable"):
    _r(2).foo = 1
  with pytest.raises(RaggedElementsError, match=r"batch\(\).*padded_batch"):
    list(Dataset.from_elements([np.ones(1), np.ones(2)]).batch(2))
  with pytest.raises(ValueError, match="different leading dimensions"):
    list(Dataset.from_elements([(np.ones(2), np.ones(3))]).unbatch())


def test_map_infers_its_element_spec_once():
  calls = []

  def double(x):
    calls.append(1)
    return {"x": x * 2}

  ds = Dataset.from_tensor_slices(np.arange(4)).map(double)
  assert ds.element_spec == ds.element_spec
  assert len(calls) == 1


def test_cache_runs_the_pipeline_once_and_keeps_the_first_pass():
  calls = []

  def double(x):
    calls.append(1)
    return {"x": x * 2}

  source = Dataset.from_tensor_slices(np.arange(7)).shuffle(7, seed=3).map(double)
  cached = source.cache()
  first = [int(e["x"]) for e in cached]
  assert first == [int(e["x"]) for e in source]
  before = len(calls)
  assert [int(e["x"]) for e in cached] == first
  stacked = cached.to_stacked()
  assert cached.to_stacked()["x"] is stacked["x"]
  assert len(calls) == before  # Neither iteration nor stacking re-ran the map.
  with pytest.raises(ValueError, match="read-only"):
    stacked["x"][0] = 1
  # As tf.data: a shuffle below the cache is not redone for later epochs.
  epochs = np.asarray(cached.repeat(2).to_stacked()["x"]).reshape(2, 7)
  np.testing.assert_array_equal(epochs[0], epochs[1])
  reshuffled = np.asarray(source.repeat(2).to_stacked()["x"]).reshape(2, 7)
  assert not np.array_equal(reshuffled[0], reshuffled[1])


# --- map keeps unknown dims, takes tf.data's options; len() after each operation ---------------


def _tutorial_format(element):
  return collections.OrderedDict(x=element['pixels'].reshape(-1, 784),
                                 y=element['label'].reshape(-1, 1))


def test_map_after_batch_keeps_the_unknown_batch_dimension():
  ds = Dataset.from_tensor_slices({'pixels': np.zeros([24, 28, 28], np.float32),
                                   'label': np.zeros([24], np.int32)})
  mapped = ds.batch(20).map(_tutorial_format)
  assert mapped.element_spec == collections.OrderedDict(
      x=TensorType(np.float32, [None, 784]), y=TensorType(np.int32, [None, 1]))
  # What the function does to the other dimensions is still read from an element.
  assert ds.batch(20).map(lambda e: e['pixels'].sum(0)).element_spec == TensorType(
      np.float32, [28, 28])
  assert ds.batch(5, drop_remainder=True).map(_tutorial_format).element_spec['x'] == TensorType(
      np.float32, [5, 784])
  ragged = Dataset.from_elements([np.ones([1, 3]), np.ones([4, 3])])
  assert ragged.map(lambda x: x * 2).element_spec == TensorType(np.float64, [None, 3])


def test_map_accepts_tf_data_options_and_ignores_them():
  ds = _r(5)
  for options in ({'num_parallel_calls': -1}, {'num_parallel_calls': 4},
                  {'num_parallel_calls': None, 'deterministic': False}):
    assert _ints(ds.map(lambda x: x * 2, **options)) == [0, 2, 4, 6, 8]
  assert _ints(ds.map(lambda x: x + 1, 2, True)) == [1, 2, 3, 4, 5]


def test_len_after_every_operation_whose_length_is_known():
  ds = _r(10)
  assert len(ds.batch(3)) == 4 and len(ds.batch(3, drop_remainder=True)) == 3
  assert len(ds.batch(3).map(lambda x: x * 2)) == 4
  assert len(ds.map(lambda x: {'x': x}).masked_batch(4)) == 3
  assert len(ds.shuffle(4, seed=0).repeat(3).batch(20)) == 2
  assert len(ds.take(4)) == 4 and len(ds.skip(7)) == 3 and len(ds.repeat(2)) == 20
  assert len(ds.cache()) == 10 and len(ds.prefetch(2)) == 10 and len(ds.enumerate()) == 10
  assert len(ds.concatenate(ds)) == 20 and len(ds.padded_batch(4)) == 3
  assert len(ds.repeat().take(7)) == 7


def test_len_names_the_operation_that_makes_the_length_unknown():
  with pytest.raises(TypeError) as e:
    len(_r(10).filter(lambda x: x > 2).batch(2))
  assert str(e.value) == (
      "len(dataset): The dataset length is unknown: filter() keeps a number of elements known "
      "only by reading them.\n  hint: count with sum(1 for _ in dataset), or use cardinality(), "
      "which returns -2 (UNKNOWN_CARDINALITY) instead of raising")
  with pytest.raises(TypeError, match=r"infinite: repeat\(\) without a count repeats it"):
    len(_r(3).repeat().map(lambda x: x))
  with pytest.raises(TypeError, match=r"unknown: unbatch\(\)"):
    len(_r(5).batch(2).unbatch())
  with pytest.raises(TypeError, match=r"unknown: concatenate_lazily\(\)"):
    len(Dataset.concatenate_lazily([lambda: _r(2)]))


# --- to_padded_stacked: short batches for the vectorized runtime --------------------------------


def _tutorial_pipeline(batch):
  rng = np.random.default_rng(0)
  ds = Dataset.from_tensor_slices({'pixels': rng.random([47, 28, 28]).astype(np.float32),
                                   'label': rng.integers(0, 10, 47).astype(np.int32)})
  return batch(ds.repeat(2).shuffle(20, seed=1))


def test_padded_stacked_of_the_tff_way_pipeline_equals_masked_batch():
  def masked_format(e):
    return dict(_tutorial_format(e), mask=e['mask'])

  padded, rows = _tutorial_pipeline(lambda d: d.batch(20).map(_tutorial_format)).to_padded_stacked()
  masked = _tutorial_pipeline(lambda d: d.masked_batch(20).map(masked_format)).to_stacked()
  assert padded['x'].shape == (5, 20, 784) and rows.shape == (5, 20)
  np.testing.assert_array_equal(rows, masked['mask'])
  for key in ('x', 'y'):
    np.testing.assert_array_equal(padded[key], masked[key])
  assert rows.sum() == 94 and list(rows.sum(axis=1)) == [20, 20, 20, 20, 14]


def test_padded_stacked_pads_nothing_without_short_batches_and_keeps_cached_arrays():
  full = _r(8).batch(4)
  stacked, rows = full.to_padded_stacked()
  assert rows is None and stacked.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
  cached = _r(9).batch(4).map(lambda x: {'x': x}).cache()
  first = cached.to_padded_stacked()
  assert cached.to_padded_stacked()[0]['x'] is first[0]['x']
  assert not first[0]['x'].flags.writeable and not first[1].flags.writeable
  ragged = Dataset.from_elements([np.ones([3, 2]), np.ones([1, 2])])  # Streamed, not planned.
  stacked, rows = ragged.to_padded_stacked()
  assert stacked.shape == (2, 3, 2) and rows.tolist() == [[True] * 3, [True, False, False]]
  with pytest.raises(RaggedElementsError, match="differ in more than their rows"):
    Dataset.from_elements([np.ones([3, 2]), np.ones([1, 3])]).to_padded_stacked()


def test_tf_data_autotune_ports_by_renaming():
  import federax as fx
  ds = Dataset.from_tensor_slices({"x": np.arange(5)}).batch(2)
  mapped = ds.map(lambda e: e, num_parallel_calls=fx.data.AUTOTUNE).prefetch(fx.data.AUTOTUNE)
  assert fx.data.AUTOTUNE == -1  # tf.data.AUTOTUNE's value.
  assert [list(e["x"]) for e in mapped] == [[0, 1], [2, 3], [4]]
