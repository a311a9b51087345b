"""MovieLens: GroupLens's two layouts, the real 100K counts, bad lines, the tutorial's splits."""

import collections

import numpy as np
import pytest

import federax as fx
from federax.simulation.datasets import movielens
from federax.simulation.formats.errors import DataFormatError


def test_movielens_100k_counts(shared_data):
  directory = shared_data / 'movielens-100k'
  ratings = movielens.read_ratings(directory)
  assert len(ratings.rating) == 100_000
  assert len(np.unique(ratings.user_id)) == 943
  assert len(np.unique(ratings.movie_id)) == 1682
  users = movielens.load_data(directory)
  assert len(users.client_ids) == 943
  first = users.create_dataset('1')
  assert first._node.immutable()  # pylint: disable=protected-access
  assert str(first.element_spec['x']) == 'int64[1]' and str(first.element_spec['y']) == 'float32[1]'
  # User 1 as counted straight from the file (columns: user, item, rating, time).
  rows = np.loadtxt(directory / 'u.data', dtype=np.int64)
  mine = rows[rows[:, 0] == 1]
  mine = mine[np.lexsort((mine[:, 1], mine[:, 3]))]
  batch = next(iter(first.batch(1000)))
  np.testing.assert_array_equal(batch['x'][:, 0], mine[:, 1] - 1)  # 100K's ids are 1..1682.
  np.testing.assert_array_equal(batch['y'][:, 0], mine[:, 2].astype(np.float32))
  train, val, test = movielens.split_users(users)
  assert [len(p.client_ids) for p in (train, val, test)] == [754, 94, 95]
  assert not set(train.client_ids) & set(test.client_ids)


def test_1m_layout_and_movie_reindexing(tmp_path):
  (tmp_path / 'ml-1m').mkdir()
  (tmp_path / 'ml-1m' / 'ratings.dat').write_text(
      '1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n\n')
  users = movielens.load_data(tmp_path)
  assert users.client_ids == ['1', '2']
  batch = next(iter(users.create_dataset('1').batch(5)))
  assert batch['x'][:, 0].tolist() == [1, 0]  # Time order; movies 661 -> 0, 1193 -> 1.
  assert batch['y'][:, 0].tolist() == [5.0, 3.0]


@pytest.mark.parametrize('line, words', [
    ('1\t2\t3', ['3 fields']),
    ('1\tx\t3\t4', ["'1\\tx\\t3\\t4'"]),
    ('1\t2\t9\t4', ['out of range']),
])
def test_a_bad_line_names_the_file_and_line(tmp_path, line, words):
  path = tmp_path / 'u.data'
  path.write_text('1\t1\t5\t100\n' + line + '\n')
  with pytest.raises(DataFormatError) as e:
    movielens.load_data(tmp_path)
  message = str(e.value)
  assert 'u.data' in message and 'line 2' in message
  if words != ['3 fields']:
    assert all(w in message for w in words)


def test_missing_directory_says_what_it_looked_for(tmp_path):
  with pytest.raises(FileNotFoundError, match="'u.data' .*'ratings.dat'"):
    movielens.load_data(tmp_path)


def test_split_ratings_by_time_and_fraction():
  cd = fx.simulation.ClientData.from_dict(
      {'7': collections.OrderedDict(x=np.arange(20)[:, None], y=np.ones((20, 1), np.float32))})
  train, val, test = movielens.split_ratings(cd, 0.5, 0.25, by='time')
  col = lambda part: next(iter(part.create_dataset('7').batch(100)))['x'][:, 0].tolist()
  assert col(train) == list(range(10)) and col(val) == list(range(10, 15))
  assert col(test) == list(range(15, 20))
  assert all(p.create_dataset('7')._node.immutable() for p in (train, val, test))
  parts = [col(p) for p in movielens.split_ratings(cd, 0.5, 0.25, by='fraction')]
  assert sorted(sum(parts, [])) == list(range(20)) and [len(p) for p in parts] == [10, 5, 5]
  assert parts[0] != list(range(10)) and parts[0] == sorted(parts[0])
  with pytest.raises(ValueError, match="by must be 'time' or 'fraction'"):
    movielens.split_ratings(cd, by='random')


def test_tutorial_preprocessing_caps_and_batches():
  cd = fx.simulation.ClientData.from_dict(
      {'1': collections.OrderedDict(x=np.arange(12)[:, None], y=np.ones((12, 1), np.float32))})
  batches = list(movielens.preprocess_for_tutorial(cd, 5, 11).create_dataset('1'))
  assert [len(b['x']) for b in batches] == [5, 5, 1]
  seen = np.concatenate([b['x'][:, 0] for b in batches])
  assert sorted(seen.tolist()) == list(range(11)) and seen.tolist() != list(range(11))
