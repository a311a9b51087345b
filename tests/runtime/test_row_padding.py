"""Short batches in the vectorized runtime: padded for code that masks rows, else the fallback."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.data import Dataset

BATCH_TYPE = {'x': (np.float32, [None])}
CLIENT_DATA = fx.FederatedType(fx.SequenceType(BATCH_TYPE), fx.CLIENTS)


def datasets():
  return [Dataset.from_tensor_slices({'x': np.arange(n, dtype=np.float32)}).batch(4)
          for n in (10, 7, 4)]


def test_a_computation_that_reduces_over_a_batch_itself_falls_back_and_says_what_to_change():
  @fx.computation(np.float32, BATCH_TYPE)
  def add_batch_sum(total, batch):
    return total + jnp.sum(batch['x'])

  @fx.federated_computation(CLIENT_DATA)
  def client_totals(data):
    return fx.federated_sum(fx.sequence_reduce(data, np.float32(0.0), add_batch_sum))

  with fx.runtime.vectorized():
    with pytest.warns(fx.runtime.FallbackWarning) as caught:
      total = client_totals(datasets())
    assert total == sum(range(10)) + sum(range(7)) + sum(range(4))
    with warnings.catch_warnings():
      warnings.simplefilter("error")  # Once per cause.
      assert client_totals(datasets()) == total
  message = str(caught[0].message)
  assert (
      ".client_totals: running on the sequential runtime because add_batch_sum reduces over "
      "the rows of a batch and does not mask padded rows; the batches of argument differ in "
      "size (2, 3 and 4 rows), and the vectorized runtime pads short batches only for "
      "computations that mask them.\n") in message, message
  assert ("  hint: give every batch 4 rows: batch(4, drop_remainder=True) drops the short "
          "batches; masked_batch(4) pads them and adds a 'mask' feature for add_batch_sum to "
          "weight rows by; or declare @fx.computation(..., row_mask=fn) to receive padded "
          "batches with their row mask") in message


def test_a_computation_declaring_a_row_mask_receives_padded_batches_and_stays_compiled():
  def with_mask(batch, mask):
    return dict(batch, mask=mask)

  @fx.computation(np.float32, BATCH_TYPE, row_mask=with_mask)
  def add_batch_sum(total, batch):
    rows = batch.get('mask', jnp.ones_like(batch['x'], bool))  # The sequential runtime: none.
    return total + jnp.sum(jnp.where(rows, batch['x'] + 1.0, 0.0))  # A padded row would add 1.

  @fx.federated_computation(CLIENT_DATA)
  def client_totals(data):
    return fx.sequence_reduce(data, np.float32(0.0), add_batch_sum)

  want = [sum(range(10)) + 10, sum(range(7)) + 7, sum(range(4)) + 4]
  runtime = fx.runtime.vectorized()
  with runtime, warnings.catch_warnings():
    warnings.simplefilter("error")
    np.testing.assert_array_equal(client_totals(datasets()), want)
    assert "padded to 4 rows" in runtime.explain(client_totals, datasets())
  with fx.runtime.sequential():
    np.testing.assert_array_equal(client_totals(datasets()), want)


def test_batches_of_one_size_and_sequences_returned_whole_need_no_declaration():
  @fx.computation(np.float32, BATCH_TYPE)
  def add_batch_sum(total, batch):
    return total + jnp.sum(batch['x'])

  @fx.federated_computation(CLIENT_DATA)
  def client_totals(data):
    return fx.sequence_reduce(data, np.float32(0.0), add_batch_sum)

  @fx.federated_computation(fx.SequenceType(BATCH_TYPE))
  def same(data):
    return data

  full = [Dataset.from_tensor_slices({'x': np.arange(n, dtype=np.float32)}).batch(4)
          for n in (8, 4)]
  with fx.runtime.vectorized(), warnings.catch_warnings():
    warnings.simplefilter("error")
    np.testing.assert_array_equal(client_totals(full), [28.0, 6.0])
    returned = same(datasets()[0])
  assert [b['x'].tolist() for b in returned] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_local_computation_reducing_its_sequence_of_short_batches_falls_back():
  @fx.computation(fx.SequenceType(BATCH_TYPE))
  def total(data):  # tf.data's reduce, whose function sums each batch itself.
    return data.reduce(np.float32(0.0), lambda acc, batch: acc + jnp.sum(batch['x']))

  @fx.federated_computation(CLIENT_DATA)
  def client_totals(data):
    return fx.federated_map(total, data)

  with fx.runtime.vectorized():
    with pytest.warns(fx.runtime.FallbackWarning, match="(?s)because total reduces over the rows "
                      r"of a batch.*batch\(4, drop_remainder=True\)"):
      result = client_totals(datasets())
  np.testing.assert_array_equal(result, [sum(range(10)), sum(range(7)), sum(range(4))])
