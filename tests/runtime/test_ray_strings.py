"""Federated computations holding strings on the Ray runtime, with 1, 2 and 3 workers: the body
runs on the driver as host orchestration (the vectorized runtime's `host_execution`), each
string-free part a call of the Ray runtime on the workers; results equal the vectorized
runtime's (integers exactly, floats to the reordered-sum tolerance)."""

import inspect
import warnings

import jax
import numpy as np
import pytest

import federax as fx
from federax.runtime.distributed import execution as ex, runtime as ray_runtime
from tests.analytics.iblt_reference import zipf_clients
from tests.core import test_strings as strings
from tests.simulation.test_iterative_process_compositions import client_data, fed_avg

RTOL = 1e-5  # A float sum split over workers adds its partial sums in another order.


length, sum_of_squares = strings.length, strings.sum_of_squares


@fx.computation(np.int32)
def stars(count):
  return "*" * int(count)


@fx.federated_computation(fx.FederatedType(np.str_, fx.CLIENTS))
def lengths_and_sum_of_squares(words):
  lengths = fx.federated_map(length, words)  # On the driver: JAX cannot hold strings.
  return lengths, sum_of_squares(lengths)  # String-free: a call on the workers.


@fx.federated_computation(fx.FederatedType(np.int32, fx.CLIENTS))
def total_and_star_lengths(values):  # No string in its type: met while the body runs.
  total = fx.federated_sum(values)  # Runs on the workers before the string is met.
  return total, fx.federated_sum(fx.federated_map(length, fx.federated_map(stars, values)))


def _ray_calls(monkeypatch) -> list:
  """The names of the computations called on the Ray workers from now on."""
  calls = []
  real = ray_runtime.RayRuntime._call
  monkeypatch.setattr(ray_runtime.RayRuntime, "_call", lambda self, comp, *a, **k: (
      calls.append(comp.name), real(self, comp, *a, **k))[1])
  return calls


def _on_both(ray, fn):
  """`fn()` on the vectorized runtime and on `ray`, a fallback to the sequential runtime an
  error."""
  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    with fx.runtime.vectorized():
      expected = fn()
    with ray:
      return expected, fn()


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_client_strings_mapped_on_the_driver_then_a_jax_part_summed_on_the_workers(
    workers, ray_runtimes, monkeypatch):
  words = ["a", "bb", "ccc", "dddd", "eeeee"]
  calls = _ray_calls(monkeypatch)
  (lengths, total), (ray_lengths, ray_total) = _on_both(
      ray_runtimes[workers], lambda: lengths_and_sum_of_squares(words))
  assert total == ray_total == 55 and type(ray_total) is type(total)
  assert [int(x) for x in ray_lengths] == [int(x) for x in lengths] == [1, 2, 3, 4, 5]
  assert calls == ["sum_of_squares"]  # The body on the driver, its compiled part on the workers.
  assert ray_runtimes[workers].last_call["clients"] == 5


@pytest.mark.parametrize("workers", [1, 3])
def test_strings_met_while_running_abort_the_call_and_its_worker_values_are_dropped(
    workers, ray_runtimes, monkeypatch):
  runtime = ray_runtimes[workers]
  executions = []
  begin = ex.RayExecution._begin
  monkeypatch.setattr(ex.RayExecution, "_begin", lambda self: (executions.append(self),
                                                               begin(self))[1])
  calls = _ray_calls(monkeypatch)
  expected, got = _on_both(runtime, lambda: total_and_star_lengths([1, 2, 3, 4]))
  assert tuple(got) == tuple(expected) == (10, 10)
  assert total_and_star_lengths in runtime.host_bodies
  # The aborted call had stored the clients' values on its workers: they were dropped.
  aborted = executions[0]
  assert calls[0] == "total_and_star_lengths" and aborted.log[0]
  assert runtime._get([w.end.remote(call) for w, call in aborted.started]) == [0] * len(
      aborted.started)
  calls.clear()
  with runtime:  # Remembered: the next call goes straight to the host, parts on the workers.
    assert tuple(total_and_star_lengths([5, 6])) == (11, 11)
  assert len(calls) == 2  # The two sums (one-intrinsic computations), nothing else.


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_iblt_heavy_hitters_equal_the_vectorized_runtimes(workers, ray_runtimes, monkeypatch):
  computation = fx.analytics.heavy_hitters.iblt.build_iblt_computation(
      capacity=100, string_max_bytes=8, seed=5)
  clients = zipf_clients(0, 12, 100)
  calls = _ray_calls(monkeypatch)
  expected, got = _on_both(ray_runtimes[workers], lambda: computation(clients))
  assert len(calls) == 1  # The clients' sketches, summed on the workers.
  assert got.clients == expected.clients == 12 and got.num_not_decoded == 0
  assert len(got.heavy_hitters) > 20
  for field in ("heavy_hitters", "heavy_hitters_unique_counts", "heavy_hitters_counts"):
    np.testing.assert_array_equal(getattr(got, field), getattr(expected, field))


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_fed_avg_on_client_ids_builds_datasets_on_the_driver_and_trains_on_the_workers(
    workers, ray_runtimes, monkeypatch):
  # `{str}@CLIENTS` ids -> datasets (a host computation) -> the compiled FedAvg round.
  cd, process = client_data(), fed_avg()
  composed = fx.simulation.compose_dataset_computation_with_learning_process(
      cd.dataset_computation, process)

  def two_rounds():
    state = process.initialize()
    for _ in range(2):
      state, metrics = composed.next(state, cd.client_ids)
    return metrics, composed.get_model_weights(state).trainable

  calls = _ray_calls(monkeypatch)
  (metrics, weights), (ray_metrics, ray_weights) = _on_both(ray_runtimes[workers], two_rounds)
  # The datasets built on the driver; each round's training one call on the workers.
  assert calls == [process.initialize.name] + [process.next.name] * 2
  assert ray_metrics["client_work"]["train"]["num_examples"] == 22
  for got, want in zip(jax.tree_util.tree_leaves(ray_metrics) + list(ray_weights),
                       jax.tree_util.tree_leaves(metrics) + list(weights)):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL)


@fx.federated_computation(fx.FederatedType(np.str_, fx.CLIENTS))
def squared_lengths(words):
  return fx.federated_map(strings.square, fx.federated_map(length, words))  # On the workers.


def test_clients_dropped_from_a_part_holding_client_values_are_refused(ray_runtimes, monkeypatch):
  runtime = fx.runtime.ray(num_workers=2, max_retries=0, min_clients_per_round=0)
  result = ex.RayExecution._result

  def block_1_dies(self, k, ref, since):  # Block 1's worker "dies" (no process is killed).
    if k == 1:
      raise ex.WorkerDied("fx.runtime.ray: a Ray worker died (in this test).")
    return result(self, k, ref, since)

  monkeypatch.setattr(ex.RayExecution, "_result", block_1_dies)
  monkeypatch.setattr(runtime._pool, "replace", lambda dead: None)  # The pool left as it is.
  with runtime:
    assert lengths_and_sum_of_squares(["a", "bb", "ccc"])[1] == 1 + 4  # Block 1: "ccc".
    assert runtime.last_call["clients_dropped"] == 1
    with pytest.raises(RuntimeError, match=r"(?s)federated_map\(square\): 1 clients of a dead "
                       r"worker were dropped.*raise max_retries"):
      squared_lengths(["a", "bb", "ccc"])


# test_strings' scenarios that take a runtime (the federated_select tutorial serving strings,
# host computations in maps, strings through broadcasts and zips, a dataset iterated in Python
# inside a host body, ...): their own checks hold on Ray (2 workers).
SCENARIOS = [name for name, fn in vars(strings).items()
             if name.startswith("test_") and "runtime" in inspect.signature(fn).parameters]


@pytest.mark.parametrize("name", SCENARIOS)
def test_strings_scenario_on_ray(name, ray_runtimes):
  with ray_runtimes[2]:
    getattr(strings, name)(runtime=ray_runtimes[2])


def test_a_part_whose_batches_differ_in_size_runs_client_by_client_on_the_driver(ray_runtimes):
  labelled, data = strings.labelled_ragged_sum()
  with ray_runtimes[2], pytest.warns(fx.runtime.FallbackWarning, match=strings.RAGGED_FALLBACK):
    assert tuple(labelled("sum", data)) == (b"sum", 6.0)
