"""Tests for the partitioners: exact coverage, determinism, and the statistics each promises."""

import numpy as np
import pytest

from federax.simulation import partitioners
from federax.simulation.dataset import Dataset

NUM_CLASSES = 10


def _data(n=2000, seed=0):
  labels = np.random.default_rng(seed).integers(0, NUM_CLASSES, n)
  return {'x': np.arange(n), 'label': labels}


def _clients(cd):
  return [cd.create_dataset(c).to_stacked() for c in cd.client_ids]


def _assert_exact_cover(cd, n):
  rows = np.concatenate([c['x'] for c in _clients(cd)])
  assert np.array_equal(np.sort(rows), np.arange(n))  # Every example once: no loss, no copies.


def _mean_label_entropy(cd):
  entropies = []
  for c in _clients(cd):
    p = np.bincount(c['label'], minlength=NUM_CLASSES) / len(c['label'])
    entropies.append(-(p[p > 0] * np.log(p[p > 0])).sum())
  return float(np.mean(entropies))


@pytest.mark.parametrize("partition", [
    lambda d: partitioners.iid(d, 7, seed=1),
    lambda d: partitioners.dirichlet(d, 7, alpha=0.3, seed=1),
    lambda d: partitioners.shards(d, 7, shards_per_client=3, seed=1),
    lambda d: partitioners.quantity_skew(d, 7, alpha=0.5, seed=1),
    lambda d: partitioners.quantity_skew(d, 7, sigma=1.0, seed=1),
    lambda d: partitioners.by_key(d, 'label'),
])
def test_every_example_exactly_once_and_deterministic(partition):
  data = _data()
  cd = partition(data)
  _assert_exact_cover(cd, 2000)
  again = partition(data)
  assert all(np.array_equal(a['x'], b['x']) for a, b in zip(_clients(cd), _clients(again)))


def test_iid_sizes_and_label_histograms_match_the_global_one():
  cd = partitioners.iid(_data(5000), 5, seed=0)
  global_p = np.bincount(_data(5000)['label'], minlength=NUM_CLASSES) / 5000
  for c in _clients(cd):
    assert len(c['x']) == 1000
    p = np.bincount(c['label'], minlength=NUM_CLASSES) / 1000
    assert np.abs(p - global_p).max() < 0.05  # ~5 sigma for p = 0.1, n = 1000.
  assert [len(c['x']) for c in _clients(partitioners.iid({'x': np.arange(10)}, 3, seed=0))] == [
      4, 3, 3]


def test_dirichlet_small_alpha_is_far_more_skewed_than_large_alpha():
  skewed = _mean_label_entropy(partitioners.dirichlet(_data(), 10, alpha=0.1, seed=0))
  near_iid = _mean_label_entropy(partitioners.dirichlet(_data(), 10, alpha=100.0, seed=0))
  assert near_iid > 0.95 * np.log(NUM_CLASSES) and skewed < 0.6 * near_iid
  cd = partitioners.dirichlet(_data(), 10, alpha=0.1, seed=0, min_examples_per_client=20)
  assert min(len(c['x']) for c in _clients(cd)) >= 20


def test_shards_give_each_client_at_most_shards_per_client_labels():
  data = {'x': np.arange(600), 'label': np.repeat(np.arange(NUM_CLASSES), 60)}
  cd = partitioners.shards(data, 30, shards_per_client=2, seed=0)
  labels_per_client = [len(np.unique(c['label'])) for c in _clients(cd)]
  assert max(labels_per_client) <= 2 and all(len(c['x']) == 20 for c in _clients(cd))


def test_quantity_skew_gives_unequal_sizes_with_the_requested_total():
  for kwargs in ({'alpha': 0.5}, {'sigma': 1.5}):
    cd = partitioners.quantity_skew(_data(), 20, seed=3, min_examples_per_client=5, **kwargs)
    sizes = np.array([len(c['x']) for c in _clients(cd)])
    assert sizes.sum() == 2000 and sizes.min() >= 5 and sizes.max() > 3 * np.median(sizes) / 2
    assert sizes.std() > 0.5 * sizes.mean()


def test_by_key_matches_a_groupby_and_accepts_datasets():
  data = {'user': np.array([3, 1, 3, 2, 1]), 'x': np.arange(5)}
  cd = partitioners.by_key(Dataset.from_tensor_slices(data), 'user')
  assert cd.client_ids == ['1', '2', '3']
  for c in cd.client_ids:
    assert cd.create_dataset(c).to_stacked()['x'].tolist() == np.flatnonzero(
        data['user'] == int(c)).tolist()


def test_tuple_data_with_a_positional_label():
  cd = partitioners.shards((np.arange(40), np.repeat(np.arange(4), 10)), 4, 1, label_key=1, seed=0)
  assert sorted(len(np.unique(cd.create_dataset(c).to_stacked()[1])) for c in cd.client_ids) == [
      1, 1, 1, 1]


def test_errors():
  with pytest.raises(ValueError, match=r"leading example axis; got leading lengths \[2, 3\]"):
    partitioners.iid({'a': np.zeros(2), 'b': np.zeros(3)}, 2)
  with pytest.raises(ValueError, match="num_clients >= 1, got 0"):
    partitioners.iid(_data(), 0)
  with pytest.raises(ValueError, match="alpha > 0, got 0"):
    partitioners.dirichlet(_data(), 3, alpha=0)
  with pytest.raises(KeyError, match=r"feature 'y', but the data has \['x', 'label'\]"):
    partitioners.dirichlet(_data(), 3, alpha=1.0, label_key='y')
  with pytest.raises(ValueError, match=r"no partition in 3 draws gave every client at least 500"):
    partitioners.dirichlet(_data(), 4, alpha=0.1, min_examples_per_client=500, max_retries=3)
  with pytest.raises(ValueError, match=r"5 x 2 = 10 shards.*got 8 examples"):
    partitioners.shards({'x': np.arange(8), 'label': np.zeros(8)}, 5)
  with pytest.raises(ValueError, match="exactly one of alpha .* got alpha=None, sigma=None"):
    partitioners.quantity_skew(_data(), 3)
  with pytest.raises(ValueError, match="10 examples cannot give 4 clients 3 each"):
    partitioners.quantity_skew({'x': np.arange(10)}, 4, alpha=1.0, min_examples_per_client=3)
