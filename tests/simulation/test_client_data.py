"""Tests for `ClientData`: TFF's API, laziness, and a real FEMNIST (LEAF) shard."""

import gzip
import json
import pathlib

import numpy as np
import pytest

import federax as fx

from federax.core.types import FunctionType, TensorType
from federax.simulation.client_data import ClientData
from federax.simulation.dataset import Dataset

FEMNIST = (pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data" / "femnist-leaf"
           / "flic" / "train" / "all_data_0_niid_05_keep_0_train_9.json.gz")


def _ragged():
  return ClientData.from_dict({
      'alice': {'x': np.arange(3, dtype=np.float32), 'y': np.array([0, 1, 0])},
      'bob': {'x': np.arange(5, dtype=np.float32), 'y': np.array([1, 1, 1, 0, 0])},
      'carol': Dataset.from_tensor_slices({'x': np.arange(1, dtype=np.float32),
                                           'y': np.array([2])}),
  })


def test_tff_api_on_ragged_clients():
  cd = _ragged()
  assert cd.client_ids == ['alice', 'bob', 'carol'] and len(cd) == 3 and 'bob' in cd
  assert [len(cd.create_dataset(c)) for c in cd.client_ids] == [3, 5, 1]
  assert cd.create_tf_dataset_for_client('bob').to_stacked()['y'].tolist() == [1, 1, 1, 0, 0]
  assert cd.element_type_structure == {'x': TensorType(np.float32), 'y': TensorType(np.int64)}
  signature = cd.dataset_computation.type_signature
  assert isinstance(signature, FunctionType) and str(signature) == '(str -> <x=float32,y=int64>*)'
  assert isinstance(cd.dataset_computation, fx.Computation)
  # Called like any computation, it returns the sequence's elements (as sequence results are).
  assert [int(e['y']) for e in cd.dataset_computation('bob')] == [1, 1, 1, 0, 0]
  assert repr(cd) == "ClientData(3 clients: ['alice', 'bob', 'carol'])"


def test_preprocess_is_lazy_and_applies_per_client():
  calls = []

  def make(client_id):
    calls.append(client_id)
    return Dataset.from_tensor_slices({'x': np.arange(int(client_id))})

  cd = ClientData.from_clients_and_fn([str(i) for i in range(3400)], make)
  batched = cd.preprocess(lambda ds: ds.masked_batch(4))
  assert calls == []
  assert batched.create_dataset('6').to_stacked()['mask'].sum() == 6 and calls == ['6']
  assert batched.element_type_structure['mask'] == TensorType(np.bool_, [4])


def test_datasets_and_all_clients_are_seeded_permutations():
  cd = _ragged()
  sizes = [len(ds) for ds in cd.datasets(seed=1)]
  assert sorted(sizes) == [1, 3, 5] and sizes == [len(ds) for ds in cd.datasets(seed=1)]
  assert len(list(cd.datasets(limit_count=2, seed=0))) == 2
  all_x = cd.create_dataset_from_all_clients(seed=3).to_stacked()['x']
  assert sorted(all_x.tolist()) == sorted([0, 1, 2, 0, 1, 2, 3, 4, 0])
  assert np.array_equal(all_x, cd.create_dataset_from_all_clients(seed=3).to_stacked()['x'])
  assert len(list(cd.create_dataset_from_all_clients(seed=0))) == 9


def test_from_arrays_groups_rows_like_a_groupby():
  ids = np.array(['b', 'a', 'b', 'c', 'a', 'b'])
  cd = ClientData.from_arrays(ids, {'v': np.arange(6), 'w': np.arange(6) * 10})
  assert cd.client_ids == ['a', 'b', 'c']
  for client in cd.client_ids:
    expected = np.flatnonzero(ids == client)
    assert cd.create_dataset(client).to_stacked()['v'].tolist() == expected.tolist()
  assert ClientData.from_arrays(np.array([b'x', b'y']), np.zeros([2, 2])).client_ids == ['x', 'y']


def test_train_test_client_split_is_disjoint_and_seeded():
  cd = ClientData.from_dict({str(i): {'x': np.arange(i + 1)} for i in range(10)})
  train, test = ClientData.train_test_client_split(cd, 3, seed=0)
  assert len(test) == 3 and len(train) == 7
  assert set(train.client_ids) | set(test.client_ids) == set(cd.client_ids)
  assert not set(train.client_ids) & set(test.client_ids)
  assert ClientData.train_test_client_split(cd, 3, seed=0)[1].client_ids == test.client_ids
  with pytest.raises(ValueError, match=r"1 <= num_test_clients < 10.*got 10"):
    ClientData.train_test_client_split(cd, 10)


def test_errors():
  cd = _ragged()
  with pytest.raises(KeyError, match=r"Unknown client id 'alise'; this ClientData has 3 client "
                     r"ids. Did you mean 'alice'\?"):
    cd.create_dataset('alise')
  with pytest.raises(TypeError, match=r"expects str client ids; got \[1, 2\] \(int\)"):
    ClientData([1, 2], lambda c: None)
  with pytest.raises(ValueError, match=r"distinct client ids; 1 repeat \(e.g. \['a'\]\)"):
    ClientData(['a', 'a'], lambda c: None)
  with pytest.raises(TypeError, match="returned a list for client 'a'; expected a Dataset"):
    ClientData(['a'], lambda c: [1]).create_dataset('a')
  with pytest.raises(ValueError, match=r"ids of shape \(3,\) and feature lengths \[2\]"):
    ClientData.from_arrays(np.array([1, 2, 3]), {'x': np.zeros(2)})
  with pytest.raises(ValueError, match="has no clients"):
    ClientData([], lambda c: None).element_type_structure
  with pytest.raises(ValueError, match="has no clients"):
    ClientData([], lambda c: None).create_dataset_from_all_clients()
  with pytest.raises(AttributeError, match="immutable"):
    cd.foo = 1


def test_from_dict_rejects_clients_of_another_element_structure():
  a = {'x': np.zeros((2, 3), np.float32), 'y': np.array([1, 2])}
  hint = r"Every client must yield elements of one structure and dtype; fix the features of client 'b'"
  with pytest.raises(TypeError, match=r"from_dict\(data\): client 'b' has elements of another "
                     r"structure than client 'a': missing \['y'\]; unexpected \['label'\]\. " + hint):
    ClientData.from_dict({'a': a, 'b': {'x': a['x'], 'label': a['y']}})
  with pytest.raises(TypeError, match=r"another structure than client 'a': missing \['x'\], "
                     r"\['y'\]; unexpected \[0\], \[1\]"):
    ClientData.from_dict({'a': a, 'b': (a['x'], a['y'])})
  with pytest.raises(TypeError, match=r"client 'b' has other dtypes than client 'a': \['x'\]: "
                     r"float32 versus float64; \['y'\]: int64 versus int32\. " + hint):
    ClientData.from_dict({'a': a, 'b': {'x': np.zeros((1, 3)), 'y': np.array([1], np.int32)}})
  with pytest.raises(TypeError, match=r"client 'c' has other dtypes .*\['y'\]: int64 versus "
                     r"float64"):  # A Dataset value is checked like an array value.
    ClientData.from_dict({'a': a, 'c': Dataset.from_tensor_slices({'x': a['x'],
                                                                   'y': np.zeros(2)})})
  with pytest.raises(ValueError, match=r"from_dict\(data\): client 'b': from_tensor_slices\(\) "
                     r"expects arrays sharing one leading \(example\) axis; got lengths "
                     r"\['x'\]: 2, \['y'\]: 1"):
    ClientData.from_dict({'a': a, 'b': {'x': a['x'], 'y': np.array([1])}})
  with pytest.raises(ValueError, match=r"client 'a': from_tensor_slices\(\) slices along a "
                     r"leading axis, but \['y'\] has shape \(\)"):
    ClientData.from_dict({'a': {'x': a['x'], 'y': 3}})
  # Ragged clients (other shapes, same features and dtypes) are fine.
  ragged = ClientData.from_dict({'a': a, 'b': {'x': np.ones((5, 3), np.float32),
                                               'y': np.arange(5)}})
  assert ragged.create_dataset('b').to_stacked()['y'].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.skipif(not FEMNIST.exists(), reason="needs ../shared/data/femnist-leaf")
def test_femnist_leaf_shard_round_trip():
  with gzip.open(FEMNIST, "rt") as f:
    raw = json.load(f)
  cd = ClientData.from_dict({
      user: {'pixels': np.asarray(d['x'], np.float32), 'label': np.asarray(d['y'], np.int32)}
      for user, d in raw['user_data'].items()})
  assert cd.client_ids == list(raw['user_data']) and len(cd) == len(raw['users'])
  lengths = dict(zip(raw['users'], raw['num_samples']))
  assert {c: len(cd.create_dataset(c)) for c in cd.client_ids} == lengths
  assert cd.element_type_structure == {'label': TensorType(np.int32),
                                       'pixels': TensorType(np.float32, [784])}
  user = raw['users'][1]
  stacked = cd.create_dataset(user).masked_batch(20).to_stacked()
  n = lengths[user]
  assert stacked['pixels'].shape == (-(-n // 20), 20, 784)
  mask = stacked['mask'].reshape(-1)
  assert mask.sum() == n and not mask[n:].any()
  np.testing.assert_array_equal(stacked['pixels'].reshape(-1, 784)[:n],
                                np.asarray(raw['user_data'][user]['x'], np.float32))
  np.testing.assert_array_equal(stacked['label'].reshape(-1)[mask], raw['user_data'][user]['y'])
  assert (stacked['pixels'].reshape(-1, 784)[n:] == 0).all()


def test_tff_spellings_of_the_methods_are_aliases():
  # TFF's tutorials call these names; each is the federax method under TFF's name.
  cd = _ragged()
  assert np.array_equal(cd.create_tf_dataset_from_all_clients(seed=3).to_stacked()['x'],
                        cd.create_dataset_from_all_clients(seed=3).to_stacked()['x'])
  assert cd.serializable_dataset_fn('bob').to_stacked()['y'].tolist() == [1, 1, 1, 0, 0]
  made = ClientData.from_clients_and_tf_fn(['a', 'b'], lambda cid: Dataset.from_tensor_slices(
      {'x': np.arange(len(cid) + ord(cid) - ord('a'))}))
  assert made.client_ids == ['a', 'b'] and len(made.create_tf_dataset_for_client('b')) == 2
