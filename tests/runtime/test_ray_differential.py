"""Every intrinsic's differential test (test_differential.py) on the Ray runtime with 1, 2 and 3
workers: the Ray results must equal the vectorized runtime's and the NumPy re-computations.

The cases are test_differential's own, run with its `run_everywhere` swapped for one that runs
the vectorized and the Ray runtime: integer results must match bit for bit, float ones to the
reordered-sum tolerance (`RTOL`), and each case's own NumPy expectations must hold.
"""

import inspect

import jax
import numpy as np
import pytest

import federax as fx
import test_differential as diff

RTOL = 1e-5  # A float sum split over workers adds its partial sums in another order.

CASES = [name for name, fn in vars(diff).items()
         if name.startswith("test_") and "run_everywhere(" in inspect.getsource(fn)]


def _assert_same(ray_result, vectorized):
  def same(r, v):
    r, v = np.asarray(r), np.asarray(v)
    assert r.dtype == v.dtype and r.shape == v.shape
    if r.dtype.kind in "biu":
      np.testing.assert_array_equal(r, v)
    else:
      np.testing.assert_allclose(r, v, rtol=RTOL, atol=RTOL)
  jax.tree_util.tree_map(same, ray_result, vectorized)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("case", CASES)
def test_intrinsic_on_ray_equals_vectorized(case, workers, ray_runtimes, monkeypatch):
  def run_everywhere(comp, *args):
    with fx.runtime.vectorized():
      vectorized = comp(*args)
    with ray_runtimes[workers]:
      on_ray = comp(*args)
    _assert_same(on_ray, vectorized)
    return vectorized, on_ray

  monkeypatch.setattr(diff, "run_everywhere", run_everywhere)
  test = getattr(diff, case)
  if "n" in inspect.signature(test).parameters:
    # 7 clients in blocks of 7, 4+3 and 3+2+2; 1 client on 3 workers leaves two idle.
    for n in ((1, 7) if workers == 3 else (7,)):
      test(n)
  else:
    test()


def test_the_cases_cover_every_intrinsic():
  sources = "".join(inspect.getsource(getattr(diff, case)) for case in CASES)
  for intrinsic in ("federated_sum", "federated_min", "federated_max", "federated_mean",
                    "federated_aggregate", "federated_secure_sum_bitwidth",
                    "federated_secure_modular_sum", "federated_select", "sequence_map",
                    "sequence_reduce", "sequence_sum", "federated_broadcast", "federated_map",
                    "federated_zip", "federated_value", "federated_eval",
                    "federated_client_keys"):
    assert intrinsic in sources, intrinsic


@pytest.mark.parametrize("workers", [1, 3])
def test_stack_and_clients_result_keep_client_order(workers, ray_runtimes):
  x = [np.float32(i) for i in range(7)]

  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
  def stack(x):
    return fx.federated_stack(x), fx.federated_map(lambda v: v * 2.0, x)

  with ray_runtimes[workers]:
    stacked, doubled = stack(x)
  np.testing.assert_array_equal(stacked, np.arange(7, dtype=np.float32))
  np.testing.assert_array_equal(doubled, 2.0 * np.arange(7, dtype=np.float32))


@pytest.mark.parametrize("workers", [2, 3])
def test_secure_sum_rejects_out_of_range_values_on_any_worker(workers, ray_runtimes):
  @fx.federated_computation(fx.FederatedType(np.int32, fx.CLIENTS))
  def secure(a):
    return fx.federated_secure_sum_bitwidth(a, 4)

  with ray_runtimes[workers], pytest.raises(ValueError, match=r"\[16\] lie outside \[0, 15\]"):
    secure([3, 1, 2, 16])


def test_default_num_clients(ray_cluster):
  @fx.federated_computation
  def count():
    return fx.federated_sum(fx.federated_value(np.int32(1), fx.CLIENTS))

  with fx.runtime.ray(num_workers=2, default_num_clients=5):
    assert count() == 5
  with fx.runtime.ray(num_workers=2):
    assert count() == 0


def test_a_python_loop_over_a_sequence_compiles_on_the_workers(ray_runtimes):
  @fx.computation(fx.SequenceType(np.float32))
  def squares(ds):
    total = np.float32(0.0)
    for x in ds:  # Compiled as a reduce (federax.core.loops), on each worker.
      total = total + x * x
    return total

  @fx.federated_computation(fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS))
  def sum_of_squares(data):
    return fx.federated_sum(fx.federated_map(squares, data))

  data = [np.asarray(d, np.float32) for d in ([1, 2], [3], [], [4, 5, 6])]
  with ray_runtimes[2]:
    assert float(sum_of_squares(data)) == 91.0  # 1 + 4 + 9 + 16 + 25 + 36.
