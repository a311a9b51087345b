"""build_client_selection_fn: cohorts and shuffles as functions of (seed, round)."""

import numpy as np
import pytest

from federax.simulation import ClientData, build_client_selection_fn


def client_data():
  return ClientData.from_dict({f"c{i}": {"x": np.arange(10 * i, 10 * i + 10)}
                               for i in range(8)})


def shuffled(dataset, seed=None):
  return dataset.shuffle(10, seed=seed)


def contents(datasets):
  return [[int(e["x"]) for e in d] for d in datasets]


def test_same_round_same_data_other_round_other_data():
  select = build_client_selection_fn(client_data(), 3, shuffled, seed=5)
  assert contents(select(4)) == contents(select(4))
  assert contents(select(4)) != contents(select(5))
  again = build_client_selection_fn(client_data(), 3, shuffled, seed=5)
  assert contents(again(4)) == contents(select(4))
  other_seed = build_client_selection_fn(client_data(), 3, shuffled, seed=6)
  assert contents(other_seed(4)) != contents(select(4))


def test_cohort_is_the_uniform_samplers_and_each_client_keeps_its_examples():
  from federax.simulation import UniformSampler
  data = client_data()
  select = build_client_selection_fn(data, 3, shuffled, seed=1)
  cohort = UniformSampler(data.client_ids, 3, seed=1).sample(2)
  for client_id, examples in zip(cohort, contents(select(2))):
    i = int(client_id[1:])
    assert sorted(examples) == list(range(10 * i, 10 * i + 10))


def test_none_selects_everyone_in_order_and_one_argument_preprocess_is_called_plainly():
  calls = []

  def take_two(dataset):
    calls.append(1)
    return dataset.take(2)

  select = build_client_selection_fn(client_data(), None, take_two)
  assert contents(select(3)) == [[10 * i, 10 * i + 1] for i in range(8)]
  assert len(calls) == 8


def test_errors():
  with pytest.raises(TypeError, match="expects a ClientData, got dict"):
    build_client_selection_fn({"a": 1}, 2)
  with pytest.raises(ValueError, match="clients_per_round"):
    build_client_selection_fn(client_data(), 9)
