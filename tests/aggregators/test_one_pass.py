"""`_one_pass`: several reductions of a tensor from one read, against NumPy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from federax.aggregators import _one_pass
from federax.aggregators.robust import _global_norm, _global_norms

# Sizes: a prime above the row length (rows of 1 element), a product of rows, a short one.
SHAPES = [(7919,), (3, 784, 10), (1024, 300), (5,), (0,), (2, 0)]


def wide_reductions(fn, *args) -> list:
  """The reductions in `fn`'s jaxpr that read an argument-sized operand (>= 4096 elements)."""
  eqns = jax.make_jaxpr(fn)(*args).jaxpr.eqns
  return [e for e in eqns if e.primitive.name.startswith(("reduce", "argm"))
          and max(v.aval.size for v in e.invars) >= 4096]


@pytest.mark.parametrize("shape", SHAPES)
def test_norms_match_numpy(shape):
  rng = np.random.default_rng(0)
  x = (rng.normal(size=shape) * 3).astype(np.float32)
  y = rng.normal(size=(17,)).astype(np.float32)
  value = {"x": x, "y": y}
  flat = np.concatenate([x.ravel(), y.ravel()]).astype(np.float64)
  l1, l2, linf = _global_norms(value, (1.0, 2.0, math.inf))
  np.testing.assert_allclose(l1, np.sum(np.abs(flat)), rtol=2e-6)
  np.testing.assert_allclose(l2, np.sqrt(np.sum(flat**2)), rtol=2e-6)
  assert float(linf) == np.max(np.abs(flat))  # A max is exact.
  np.testing.assert_allclose(_global_norm(value, 2.0), l2, rtol=1e-6)  # Alone: as accurate.


def test_a_million_squares_sum_as_accurately_as_a_pairwise_sum():
  # One running sum over 2**20 values loses about 1e-5 relative; rows of 2048 keep ~1e-7.
  x = np.random.default_rng(1).normal(size=2**20).astype(np.float32)
  exact = np.sqrt(np.sum(x.astype(np.float64)**2))
  assert abs(float(_global_norm(x, 2.0)) / exact - 1) < 1e-6


@pytest.mark.parametrize("size", [1_000_003, 2 * 524_309])  # A prime; twice a prime.
def test_sizes_without_a_divisor_near_the_row_length_sum_as_accurately(size):
  # Rows of 1 or 2 elements: the second reduction, over the rows, takes almost every element.
  x = np.random.default_rng(6).normal(size=size).astype(np.float32)
  exact = np.sqrt(np.sum(x.astype(np.float64)**2))
  assert abs(float(_global_norm(x, 2.0)) / exact - 1) < 1e-6
  low, high = _one_pass.extremes(jnp.asarray(x))
  assert (low, high) == (x.min(), x.max())


def test_a_nan_or_inf_entry_reaches_every_norm():
  x = np.ones(10000, np.float32)
  x[4321] = np.nan
  assert all(np.isnan(n) for n in _global_norms({"a": x, "b": np.ones(3, np.float32)},
                                                (1.0, 2.0, math.inf)))
  x[4321] = -np.inf
  assert all(np.isinf(n) for n in _global_norms(x, (1.0, 2.0, math.inf)))


def test_two_norms_read_each_tensor_with_one_reduction():
  value = {"a": jnp.ones((80, 100)), "b": jnp.ones((5000,))}
  both = wide_reductions(lambda v: _global_norms(v, (math.inf, 2.0)), value)
  assert len(both) == 2, both  # One per tensor, not one per norm and tensor.


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint8])
@pytest.mark.parametrize("shape", SHAPES)
def test_extremes_match_numpy(shape, dtype):
  rng = np.random.default_rng(2)
  x = (rng.normal(size=shape) * 50).astype(dtype)
  low, high = _one_pass.extremes(jnp.asarray(x))
  assert low.dtype == x.dtype and high.dtype == x.dtype
  if x.size:
    assert (low, high) == (x.min(), x.max())
  elif dtype == np.float32:
    assert (float(low), float(high)) == (np.inf, -np.inf)
  else:
    assert (low, high) == (np.iinfo(dtype).max, np.iinfo(dtype).min)


def test_extremes_of_a_nan_are_nan_and_one_reduction():
  x = np.linspace(-1, 1, 6000).astype(np.float32)
  x[5000] = np.nan
  assert all(np.isnan(v) for v in _one_pass.extremes(jnp.asarray(x)))
  assert len(wide_reductions(_one_pass.extremes, jnp.asarray(x))) == 1


def test_reduce_with_a_sum_and_a_product_matches_numpy():
  x = np.random.default_rng(3).uniform(0.999, 1.001, size=(64, 130)).astype(np.float32)
  total, product = _one_pass.reduce([jnp.asarray(x)] * 2, [0.0, 1.0], [jnp.add, jnp.multiply])
  np.testing.assert_allclose(total, x.astype(np.float64).sum(), rtol=1e-6)
  np.testing.assert_allclose(product, x.astype(np.float64).prod(), rtol=1e-5)
