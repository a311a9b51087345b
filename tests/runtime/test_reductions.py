"""Client-axis reductions (federax.runtime.vectorized.reductions) against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.runtime.vectorized import reductions


@pytest.mark.parametrize("looped", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float16])
def test_sum_min_max_match_numpy(looped, dtype):
  rng = np.random.default_rng(0)
  x = (rng.normal(size=(7, 3, 2000)) * 10).astype(dtype)  # Rows of 6000: wide enough to loop.
  wide = x.astype(np.float64)
  tol = dict(rtol=2e-3, atol=0.5) if dtype == np.float16 else dict(rtol=1e-5, atol=1e-3)
  got = reductions.client_sum(jnp.asarray(x), looped)
  assert got.dtype == dtype and got.shape == (3, 2000)
  np.testing.assert_allclose(np.asarray(got, np.float64), wide.sum(0), **tol)
  np.testing.assert_array_equal(reductions.client_min(jnp.asarray(x), looped), x.min(0))
  np.testing.assert_array_equal(reductions.client_max(jnp.asarray(x), looped), x.max(0))


def test_float16_rows_are_added_in_float32():
  # 4096 clients of 1.0 + one of 2048: float16 accumulation would stall at 2048 (spacing 2).
  x = jnp.ones((4097, 4096), jnp.float16)
  total = reductions.client_sum(x, looped=True)
  assert float(total[0]) == 4096.0  # float32 4097 rounded to float16's nearest, 4096.


def test_narrow_rows_and_single_clients_reduce_in_one_op():
  assert reductions.client_sum(jnp.ones((3, 10)), True).tolist() == [3.0] * 10
  assert reductions.client_sum(jnp.ones((1, 5000)), True).shape == (5000,)
  assert reductions.client_sum(jnp.ones((0, 5000)), True).tolist() == [0.0] * 5000


def test_federated_sum_of_wide_rows_loops_over_the_clients_on_one_cpu_device():
  value = fx.FederatedType(fx.TensorType(np.float32, [5000]), fx.CLIENTS)
  total = fx.federated_computation(lambda v: fx.federated_sum(v), value)
  data = [np.full(5000, i, np.float32) for i in range(6)]
  with fx.runtime.vectorized(shard=False) as runtime:
    np.testing.assert_array_equal(total(data), np.full(5000, 15.0, np.float32))
    text = jax.make_jaxpr(lambda d: total(list(d)))(jnp.asarray(data)).pretty_print()
  assert ("while" in text or "scan" in text) and "reduce_sum" not in text


@pytest.mark.parametrize("looped", [True, False])
def test_sum_and_extremes_in_one_pass(looped):
  x = np.random.default_rng(1).integers(-50, 50, size=(5, 6000)).astype(np.int32)
  total, smallest, largest = reductions.client_sum_and_extremes(jnp.asarray(x), looped)
  np.testing.assert_array_equal(total, x.sum(0))
  assert int(smallest) == x.min() and int(largest) == x.max()


def test_secure_sum_of_wide_rows_still_refuses_values_out_of_range():
  value = fx.FederatedType(fx.TensorType(np.int32, [5000]), fx.CLIENTS)
  total = fx.federated_computation(lambda v: fx.federated_secure_sum_bitwidth(v, 8), value)
  good = [np.full(5000, 255, np.int32), np.zeros(5000, np.int32)]
  with fx.runtime.vectorized(shard=False):
    np.testing.assert_array_equal(total(good), np.full(5000, 255))
    bad = [np.zeros(5000, np.int32), np.zeros(5000, np.int32)]
    bad[1][4321] = 256
    with pytest.raises(Exception, match=r"client values \[256\] lie outside \[0, 255\]"):
      total(bad)


@pytest.mark.parametrize("looped", [True, False])
@pytest.mark.parametrize("dtype", [np.int32, np.uint32])
def test_sum_and_range_in_one_pass(looped, dtype):
  x = np.random.default_rng(2).integers(0, 256, size=(5, 6000)).astype(dtype)
  total, low, high = reductions.client_sum_and_range(jnp.asarray(x), looped)
  np.testing.assert_array_equal(total, x.sum(0, dtype=dtype))
  assert int(low) >= 0 and int(high) <= 255  # In [0, 2**8 - 1]...
  x[3, 17] = 256
  _, low, high = reductions.client_sum_and_range(jnp.asarray(x), looped)
  assert int(low) >= 0 and int(high) > 255  # ...not in [0, 2**8 - 1]...
  assert int(low) >= 0 and int(high) <= 511  # ...but in [0, 2**9 - 1].
  if dtype == np.int32:
    x[3, 17], x[1, 17] = -4, 300
    _, low, high = reductions.client_sum_and_range(jnp.asarray(x), looped)
    assert int(low) < 0


@pytest.mark.parametrize("width", [5000, 10])  # Looped over the clients, and in one op.
def test_secure_sum_refuses_negative_values_with_the_extremes(width):
  value = fx.FederatedType(fx.TensorType(np.int32, [width]), fx.CLIENTS)
  total = fx.federated_computation(lambda v: fx.federated_secure_sum_bitwidth(v, 4), value)
  bad = [np.full(width, 15, np.int32), np.zeros(width, np.int32)]
  bad[1][width - 1] = -3
  with fx.runtime.vectorized(shard=False):
    with pytest.raises(Exception, match=r"client values \[-3\] lie outside \[0, 15\]"):
      total(bad)
    bad[1][width - 1] = 16
    with pytest.raises(Exception, match=r"client values \[16\] lie outside \[0, 15\]"):
      total(bad)
