"""Cohorts of no clients, and of clients without data: every runtime gives NumPy's results (the
vectorized runtime's rolled loop once indexed an element of a length-0 sequence, `TypeError:
slice slice_sizes must be less than or equal to operand shape`; the sequential runtime's
`federated_mean` of no clients raised `reduce() of empty iterable`)."""

import collections

import numpy as np
import pytest

import federax as fx
from federax.data import Dataset

ELEMENT = fx.TensorType(np.float32, [2])
DATA = fx.FederatedType(fx.SequenceType(ELEMENT), fx.CLIENTS)
RUNTIMES = {
    "vectorized": fx.runtime.vectorized,
    "vectorized-scan": lambda: fx.runtime.vectorized(sequence_loop="scan"),
    "vectorized-chunked": lambda: fx.runtime.vectorized(chunk_size=1),
    "sequential": fx.runtime.sequential,
}


ACC = fx.to_type(collections.OrderedDict(count=np.int32, total=(np.float32, [2])))


@fx.computation
def start():
  return collections.OrderedDict(count=np.int32(0), total=np.zeros(2, np.float32))


@fx.computation(ACC, ELEMENT)
def add(acc, x):
  return collections.OrderedDict(count=acc["count"] + 1, total=acc["total"] + x)


@fx.federated_computation(fx.SequenceType(ELEMENT))
def count_and_sum(data):
  return fx.sequence_reduce(data, start(), add)


@fx.federated_computation(DATA)
def round_of(data):
  stats = fx.federated_map(count_and_sum, data)
  weight = fx.federated_map(fx.computation(np.int32)(lambda c: c.astype(np.float32)),
                            stats.count)
  return collections.OrderedDict(
      sum=fx.federated_sum(stats),
      weighted_mean=fx.federated_mean(stats.total, weight),
      unweighted_mean=fx.federated_mean(stats.total))


def empty_dataset():
  return Dataset.from_tensor_slices(np.zeros((0, 2), np.float32))


COHORTS = {
    "no clients": [],
    "empty lists": [[], [], []],
    "empty datasets": [empty_dataset(), empty_dataset()],
    "one of three with data": [[], [np.ones(2, np.float32), np.full(2, 2.0, np.float32)],
                               empty_dataset()],
}
NAN = np.full(2, np.nan, np.float32)
EXPECTED = {  # NumPy: sums of nothing are 0; a mean of no weight is 0 / 0.
    "no clients": (0, [0.0, 0.0], NAN, NAN),
    "empty lists": (0, [0.0, 0.0], NAN, [0.0, 0.0]),
    "empty datasets": (0, [0.0, 0.0], NAN, [0.0, 0.0]),
    "one of three with data": (2, [3.0, 3.0], [3.0, 3.0], [1.0, 1.0]),
}


@pytest.mark.parametrize("cohort", list(COHORTS))
def test_every_runtime_gives_numpys_results_for_empty_cohorts(cohort):
  count, total, weighted, unweighted = EXPECTED[cohort]
  for name, make in RUNTIMES.items():
    with make():
      out = round_of(COHORTS[cohort])
    assert int(out["sum"]["count"]) == count, name
    np.testing.assert_array_equal(out["sum"]["total"], total, err_msg=name)
    np.testing.assert_array_equal(out["weighted_mean"], weighted, err_msg=name)
    np.testing.assert_array_equal(out["unweighted_mean"], unweighted, err_msg=name)


def test_per_client_results_of_empty_clients_agree():
  per_client = fx.federated_computation(DATA)(lambda data: fx.federated_map(count_and_sum, data))
  for name, make in RUNTIMES.items():
    with make():
      assert per_client([]) == [], name
      out = per_client([[], empty_dataset()])
    assert [int(o["count"]) for o in out] == [0, 0], name
    assert all(np.array_equal(o["total"], [0.0, 0.0]) for o in out), name
