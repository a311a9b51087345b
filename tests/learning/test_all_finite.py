"""`_local.all_finite`, TFF's client-drop and update-reject check, against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from federax.learning import _local
from federax.runtime import xla_options

DTYPES = [np.float16, jnp.bfloat16, np.float32, np.complex64]


def numpy_all_finite(tree) -> bool:
  return all(bool(np.isfinite(np.asarray(x, np.complex128 if np.iscomplexobj(x) else np.float64)
                              ).all())
             for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact))


def trees():
  rng = np.random.default_rng(0)
  for dtype in DTYPES:
    big = np.asarray(np.finfo(np.float16).max if dtype == np.float16 else 3e38, dtype)
    for bad in (None, np.inf, -np.inf, np.nan):
      values = rng.normal(size=(300, 70)).astype(dtype)
      values.flat[12345] = big  # Finite, at its type's edge: x * 0 must stay 0.
      if bad is not None:
        values.flat[20999] = bad
      yield {"w": values, "b": np.ones(3, np.float32), "steps": np.int32(7)}
  yield {"steps": np.int32(7)}  # No floating-point leaf.
  yield {"w": np.zeros((0, 4), np.float32)}  # Empty.


@pytest.mark.parametrize("tree", list(trees()), ids=lambda t: str(sorted(t)))
def test_all_finite_matches_numpy_eagerly_and_jitted(tree):
  expected = numpy_all_finite(tree)
  assert bool(_local.all_finite(tree)) is expected
  assert bool(jax.jit(_local.all_finite)(tree)) is expected
  assert bool(xla_options.jit(_local.all_finite)(tree)) is expected


@pytest.mark.parametrize("bad", [None, np.inf, -np.inf, np.nan])
def test_a_dense_layers_kernel_is_checked_in_the_runtimes_compile(bad):
  """W2's 9216x128 kernel: XLA:CPU hands its reduction to a library (YNNPACK) on CPU."""
  kernel = np.random.default_rng(1).normal(size=(9216, 128)).astype(np.float32)
  if bad is not None:
    kernel[9000, 100] = bad
  delta = lambda w, w0: _local.all_finite(w - w0)
  assert bool(xla_options.jit(delta)(kernel, np.zeros_like(kernel))) is (bad is None)


def test_a_float64_value_beyond_float32s_range_is_finite():
  with jax.enable_x64(True):
    assert bool(jax.jit(_local.all_finite)({"w": jnp.asarray([1e300, -1e300], jnp.float64)}))
    assert not bool(jax.jit(_local.all_finite)({"w": jnp.asarray([1e300, np.nan])}))
