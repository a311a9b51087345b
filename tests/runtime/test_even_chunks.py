"""Vmapped and streamed clients run in chunks of one size: the clients' work is traced (and
compiled) once per program, not a second time for a shorter remainder chunk."""

import numpy as np
import pytest

import federax as fx
from federax.runtime.vectorized import streaming

from test_streaming import VECTORIZED, W, client_datasets, fedavg_round, numpy_round


@pytest.mark.parametrize("n, most, expected", [
    (10, 3, (4, 3)), (9, 3, (3, 3)), (129, 128, (2, 65)), (1000, 128, (8, 125)), (1, 4, (1, 1)),
    (7, 7, (1, 7))])
def test_even_chunks_cover_the_clients_in_as_few_steps_padding_fewer_than_steps(n, most,
                                                                                expected):
  steps, size = streaming.even_chunks(n, most)
  assert (steps, size) == expected
  assert size <= most and 0 <= steps * size - n < steps and steps == -(-n // most)


def traced_body():
  """A client computation that counts how often its Python body is traced."""
  traces = []

  @fx.computation(np.float32, np.float32)
  def affine(x, b):
    traces.append(1)
    return 3.0 * x * x + b

  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS),
                            fx.FederatedType(np.float32, fx.SERVER))
  def mapped(xs, b):
    ys = fx.federated_map(affine, (xs, fx.federated_broadcast(b)))
    return ys, fx.federated_sum(ys)

  return mapped, traces


@pytest.mark.parametrize("n", [5, 6])
def test_vmapped_chunks_trace_the_client_once_and_match_the_sequential_runtime(n):
  xs = [np.float32(1.5 * i - 2.0) for i in range(n)]
  mapped, traces = traced_body()
  del traces[:]  # Traced when the federated computation was defined (its result type).
  with fx.runtime.vectorized(chunk_size=2, client_loop="vmap", shard=False):
    ys, total = mapped(xs, 0.25)
  assert len(traces) == 1  # 5 clients: 3 chunks of 2 (one a repeated client), not 2 + a rest of 1.
  with fx.runtime.sequential():
    expected_ys, expected_total = mapped(xs, 0.25)
  np.testing.assert_array_equal(np.asarray(ys), np.asarray(expected_ys))
  assert len(ys) == n
  np.testing.assert_allclose(total, expected_total, rtol=1e-6)
  np.testing.assert_allclose(total, sum(3.0 * x * x + 0.25 for x in xs), rtol=1e-6)


def test_streamed_reads_of_one_size_trace_the_client_once(monkeypatch):
  monkeypatch.setattr(VECTORIZED, "STREAM_BYTES", 0)  # A few kB: streamed all the same.
  traces = []
  step = streaming.map_chunks

  def counting(chunk_fn, payload, n):
    return step(lambda part: traces.append(1) or chunk_fn(part), payload, n)

  monkeypatch.setattr(streaming, "map_chunks", counting)
  sizes = [5, 0, 9, 1, 13, 4, 7, 2, 11, 6]  # 10 clients: reads of 3, the last 1 + 2 empty.
  datasets = client_datasets(sizes)
  with fx.runtime.vectorized(chunk_size=4, shard=False, client_loop="vmap"):
    mean, total = fedavg_round(W, datasets)
  assert len(traces) == 1
  expected_mean, expected_total = numpy_round(W, datasets)
  np.testing.assert_allclose(mean, expected_mean, rtol=1e-5, atol=1e-6)
  assert total == expected_total
