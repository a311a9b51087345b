"""Convolutions rewritten to XLA:CPU's canonical layout compute the same values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from federax.runtime.vectorized._cpu_rewrites import for_xla_cpu, needs_rewrite

RNG = np.random.default_rng(0)
IMAGES = RNG.standard_normal((4, 9, 10, 6)).astype(np.float32)     # NHWC
KERNEL = RNG.standard_normal((3, 2, 6, 8)).astype(np.float32)      # HWIO


def convolution(layout: str, strides=(1, 1), rhs_dilation=(1, 1), groups=1):
  """A loss of one convolution in `layout` ('NHWC' or 'NCHW'), its inputs, and the grads."""
  x, k = IMAGES, KERNEL[:, :, :6 // groups]
  numbers = ("NHWC", "HWIO", "NHWC")
  if layout == "NCHW":
    x, k, numbers = x.transpose(0, 3, 1, 2), k.transpose(3, 2, 0, 1), ("NCHW", "OIHW", "NCHW")

  def loss(x, k):
    y = lax.conv_general_dilated(x, k, strides, "SAME", rhs_dilation=rhs_dilation,
                                 dimension_numbers=numbers, feature_group_count=groups)
    return jnp.sum(jnp.sin(y))

  return jax.grad(loss, (0, 1)), (x, k)


@pytest.mark.parametrize("layout,strides,dilation,groups", [
    ("NHWC", (1, 1), (1, 1), 1), ("NCHW", (2, 1), (1, 2), 1), ("NHWC", (1, 2), (2, 1), 2)])
def test_gradients_equal_the_stock_convolutions(layout, strides, dilation, groups):
  grads, args = convolution(layout, strides, dilation, groups)
  assert needs_rewrite(jax.make_jaxpr(grads)(*args).jaxpr)  # The kernel gradient is 'f01b'.
  expected = jax.jit(grads)(*args)
  actual = jax.jit(for_xla_cpu(grads))(*args)
  for e, a in zip(expected, actual):
    np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)
  rewritten = jax.make_jaxpr(for_xla_cpu(grads))(*args).jaxpr
  assert not needs_rewrite(rewritten)


def test_a_forward_nhwc_convolution_is_left_alone():
  forward = lambda x, k: lax.conv_general_dilated(x, k, (1, 1), "VALID",
                                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
  assert not needs_rewrite(jax.make_jaxpr(forward)(IMAGES, KERNEL).jaxpr)


def test_inside_a_loop_under_jit_closing_over_traced_values_and_nested_jit():
  nested = jax.jit(lambda x, k: lax.conv_general_dilated(
      x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")))

  def run(rewrite):
    @jax.jit
    def train(scale, images):
      def step(i, k):
        grad = jax.grad(lambda k: jnp.sum(nested(images[i], k * scale) ** 2))
        return k - 1e-4 * (for_xla_cpu(grad) if rewrite else grad)(k)
      return lax.fori_loop(0, images.shape[0], step, KERNEL)
    return train(jnp.float32(0.5), jnp.stack([IMAGES, IMAGES[::-1]]))

  np.testing.assert_allclose(run(True), run(False), rtol=1e-5, atol=1e-6)


def test_pytrees_in_and_out_keep_their_structure():
  grads, (x, k) = convolution("NHWC")
  fn = lambda inputs: {"dx": grads(inputs["x"], inputs["k"])[0], "n": 3}
  out = for_xla_cpu(fn)({"x": x, "k": k})
  assert set(out) == {"dx", "n"} and out["dx"].shape == x.shape


@pytest.mark.parametrize("shape,window", [((3, 6, 8, 5), (1, 2, 2, 1)), ((4, 9, 2), (1, 3, 2)),
                                          ((2, 6, 6, 3), (1, 3, 3, 1))])
def test_tiled_max_pool_gradient_equals_select_and_scatter_ties_included(shape, window):
  x = np.round(RNG.standard_normal(shape), 1).astype(np.float32)  # Many ties.
  x[0] = 0.0  # Whole windows tied, as after a ReLU.
  pool = lambda x: lax.reduce_window(x, -jnp.inf, lax.max, window, window, "VALID")
  grad = jax.grad(lambda x: jnp.sum(jnp.cos(pool(x)) * jnp.arange(pool(x).size).reshape(
      pool(x).shape)))
  assert needs_rewrite(jax.make_jaxpr(grad)(x).jaxpr)
  expected = jax.jit(grad)(x)
  actual = jax.jit(for_xla_cpu(grad))(x)
  np.testing.assert_array_equal(actual, expected)
  assert not needs_rewrite(jax.make_jaxpr(for_xla_cpu(grad))(x).jaxpr)


def test_overlapping_or_padded_pools_are_left_to_xla():
  x = RNG.standard_normal((2, 7, 7, 3)).astype(np.float32)
  for window, strides, padding in [((1, 3, 3, 1), (1, 2, 2, 1), "VALID"),
                                   ((1, 2, 2, 1), (1, 2, 2, 1), "SAME")]:
    grad = jax.grad(lambda x: jnp.sum(lax.reduce_window(x, -jnp.inf, lax.max, window, strides,
                                                        padding)))
    assert not needs_rewrite(jax.make_jaxpr(grad)(x).jaxpr)
