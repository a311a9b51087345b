"""The vectorized runtime reads a loop's next cohort of datasets while the program runs."""

import threading

import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.data import Dataset

BATCH_TYPE = {'x': (np.float32, [None, 2])}
CLIENT_DATA = fx.FederatedType(fx.SequenceType(BATCH_TYPE), fx.CLIENTS)
SIZES = (11, 7, 4)
BATCHES = sum(-(-n // 3) for n in SIZES)  # batch(3): 4 + 3 + 2 batches a read of the cohort.


def _with_mask(batch, mask):
  return dict(batch, mask=mask)


@fx.computation(np.float32, BATCH_TYPE, row_mask=_with_mask)
def _add_weighted(total, batch):
  rows = batch.get('mask', jnp.ones(batch['x'].shape[:1], bool))
  return total + jnp.sum(jnp.where(rows[:, None], batch['x'] * jnp.array([1.0, -3.0]), 0.0))


@fx.federated_computation(CLIENT_DATA)
def _client_totals(data):
  return fx.sequence_reduce(data, np.float32(0.0), _add_weighted)


def _datasets(calls: list, fail: dict = None):
  def fmt(e):  # TFF's `batch_format_fn`, recording the thread it runs on.
    calls.append(threading.current_thread().name)
    if fail and fail.get('now'):
      raise ValueError("the map function failed")
    return {'x': e['v'].reshape(-1, 2)}

  rng = np.random.default_rng(3)
  datasets = [Dataset.from_tensor_slices({'v': rng.random([n, 2]).astype(np.float32)})
              .shuffle(5, seed=i).batch(3).map(fmt) for i, n in enumerate(SIZES)]
  before = len(calls)
  for ds in datasets:
    ds.element_spec  # pylint: disable=pointless-statement
  del calls[before:]  # `map` infers its spec from calls on a first element: not counted.
  return datasets


def _reference(datasets) -> np.ndarray:
  """NumPy: each client's sum of x @ [1, -3] over its real rows."""
  return np.array([sum((b['x'] @ np.array([1.0, -3.0], np.float32)).sum() for b in ds)
                   for ds in datasets], np.float32)


def test_a_loop_over_the_same_datasets_reads_the_next_round_during_this_one():
  calls, unread = [], []
  datasets = _datasets(calls)
  want = _reference(_datasets(unread))
  runtime = fx.runtime.vectorized(read_ahead=True)
  with runtime:
    rounds = []
    for _ in range(4):
      calls.clear()
      rounds.append(_client_totals(datasets))
      rounds[-1] = (rounds[-1], list(calls))
  for totals, _ in rounds:
    np.testing.assert_allclose(totals, want, rtol=1e-6)
  np.testing.assert_array_equal(rounds[0][0], rounds[3][0])  # The same values, read ahead.
  threads = [names for _, names in rounds]
  # Round 1 reads its own datasets; round 2, the second call with them, also reads them for
  # round 3 while its program runs; rounds 3 and 4 take theirs and read the next.
  assert threads[0] == ['MainThread'] * BATCHES
  assert sorted(set(threads[1])) == ['MainThread', 'federax-read-ahead_0']
  assert len(threads[1]) == 2 * BATCHES
  assert threads[2] == threads[3] == ['federax-read-ahead_0'] * BATCHES
  assert 'read_ahead=True' in repr(runtime)


def test_read_ahead_off_by_default_reads_every_call_itself_with_the_same_values():
  calls = []
  datasets = _datasets(calls)
  with fx.runtime.vectorized(read_ahead=True):
    on = [_client_totals(datasets) for _ in range(3)]
  calls.clear()
  runtime = fx.runtime.vectorized()
  with runtime:
    off = [_client_totals(datasets) for _ in range(3)]
  assert calls == ['MainThread'] * 3 * BATCHES and 'read_ahead=False' in repr(runtime)
  for a, b in zip(on, off):
    np.testing.assert_array_equal(a, b)


def test_new_datasets_each_round_and_cached_datasets_are_not_read_ahead():
  calls = []
  with fx.runtime.vectorized(read_ahead=True):
    for _ in range(3):  # Sampled clients: new dataset objects every round.
      _client_totals(_datasets(calls))
    assert calls == ['MainThread'] * 3 * BATCHES
    calls.clear()
    cached = [d.cache() for d in _datasets(calls)]
    for _ in range(3):
      _client_totals(cached)
    assert calls == ['MainThread'] * BATCHES  # Cached: read once, kept on the device.


def test_a_failed_read_ahead_fails_in_the_call_that_needs_it():
  calls, fail = [], {}
  datasets = _datasets(calls, fail)
  with fx.runtime.vectorized(read_ahead=True):
    _client_totals(datasets)
    _client_totals(datasets)  # Reads round 3's cohort ahead.
    fail['now'] = True
    _client_totals(datasets)  # Takes it; reading round 4's fails, on the background thread.
    with pytest.raises(ValueError, match="the map function failed"):
      _client_totals(datasets)  # Reads its own, and raises here.
