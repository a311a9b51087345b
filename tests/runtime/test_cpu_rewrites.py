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


def _draws(key):
  """Every kind of draw a model makes from a Threefry key, in shapes of several dimensions."""
  k = jax.random.split(key, 4)
  return {"bernoulli": jax.random.bernoulli(k[0], 0.7, (5, 3, 4, 2)),
          "uniform": jax.random.uniform(k[1], (3, 7)),
          "normal": jax.random.normal(k[2], (2, 3, 5), jnp.float16),
          "bits8": jax.random.bits(k[3], (4, 3), jnp.uint8),
          "bits16": jax.random.bits(k[3], (3, 1, 5), jnp.uint16),
          "flat": jax.random.uniform(k[1], (6,))}


@pytest.mark.parametrize("partitionable", [True, False])
@pytest.mark.parametrize("typed", [True, False])
def test_threefry_draws_of_several_dimensions_are_drawn_flat_with_the_same_bits(
    partitionable, typed):
  key = jax.random.key(7) if typed else jax.random.PRNGKey(7)
  with jax.threefry_partitionable(partitionable):
    assert needs_rewrite(jax.make_jaxpr(_draws)(key).jaxpr)
    expected = jax.jit(_draws)(key)
    actual = jax.jit(for_xla_cpu(_draws))(key)
    rewritten = jax.make_jaxpr(for_xla_cpu(_draws))(key).jaxpr
  for name in expected:
    np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    assert actual[name].dtype == expected[name].dtype and actual[name].shape == expected[name].shape
  assert not needs_rewrite(rewritten)


def test_flat_draws_under_vmap_keep_each_keys_bits():
  """Vmapped clients each draw from their own key (the runtime's vmapped client loop)."""
  keys = jax.random.split(jax.random.key(5), 3)
  draw = lambda key: jax.random.bernoulli(key, 0.5, (4, 3, 2))
  np.testing.assert_array_equal(jax.jit(jax.vmap(for_xla_cpu(draw)))(keys),
                                jax.jit(jax.vmap(draw))(keys))


def test_a_dropout_mask_in_a_rolled_loop_keeps_its_bits():
  def train(key, xs):
    def step(i, carry):
      key, total = carry
      key, sub = jax.random.split(key)
      keep = jax.random.bernoulli(sub, 0.75, xs.shape[1:])
      return key, total + jnp.sum(jnp.where(keep, xs[i] / 0.75, 0.0) ** 2)
    return step

  xs = jnp.asarray(RNG.standard_normal((3, 4, 6, 6, 8)), jnp.float32)
  run = lambda rewrite: (lambda key: lax.fori_loop(
      0, 3, (for_xla_cpu if rewrite else lambda f: f)(train(key, xs)), (key, jnp.float32(0))))
  key = jax.random.key(1)
  np.testing.assert_array_equal(jax.jit(run(True))(key)[1], jax.jit(run(False))(key)[1])
  assert _random_bits_shapes(jax.make_jaxpr(run(False))(key).jaxpr) == [(4, 6, 6, 8)]
  assert _random_bits_shapes(jax.make_jaxpr(run(True))(key).jaxpr) == [(1152,)]


def _random_bits_shapes(jaxpr) -> list:
  """The shapes of the `random_bits` draws in `jaxpr` and the jaxprs inside it."""
  shapes = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "random_bits":
      shapes.append(tuple(eqn.params["shape"]))
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else [value]:
        sub = getattr(sub, "jaxpr", sub)
        if hasattr(sub, "eqns"):
          shapes += _random_bits_shapes(sub)
  return shapes


def test_other_key_implementations_are_left_alone():
  key = jax.random.key(3, impl="rbg")
  draw = lambda key: jax.random.uniform(key, (4, 5))
  assert not needs_rewrite(jax.make_jaxpr(draw)(key).jaxpr)
