"""The XLA options the runtimes compile with: convolutions by XLA's kernels, not YNNPACK's."""

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import pytest

import federax as fx
from benchmarks.xla_options import library_convolutions
from federax.runtime import xla_options
from federax.runtime.vectorized import runtime as vectorized_runtime

MEASURED = tuple(int(p) for p in jaxlib.__version__.split(".")[:2]) == (0, 10)
needs_measured_jaxlib = pytest.mark.skipif(
    not MEASURED or jax.default_backend() != "cpu",
    reason=f"the options are set for jaxlib 0.10 on CPU (here {jaxlib.__version__}, "
    f"{jax.default_backend()})")
# YNNPACK takes convolutions of 32 output features and more (jaxlib 0.10.2).
KERNEL = np.random.default_rng(0).normal(size=(3, 3, 1, 32)).astype(np.float32)


def conv(x):
  return jax.lax.conv_general_dilated(x, KERNEL, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@needs_measured_jaxlib
def test_stock_jit_hands_convolutions_to_a_library_and_federax_jit_does_not():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 8, 8, 1)), jnp.float32)
  stock = jax.jit(conv).lower(x).compile().as_text()
  ours = xla_options.jit(conv).lower(x).compile().as_text()
  assert library_convolutions(stock) == 1, "jaxlib 0.10's default changed: re-measure"
  assert library_convolutions(ours) == 0 and " convolution(" in ours
  np.testing.assert_allclose(xla_options.jit(conv)(x), jax.jit(conv)(x), rtol=1e-5)


@needs_measured_jaxlib
def test_the_vectorized_runtimes_round_program_compiles_with_them(monkeypatch):
  programs = []
  original = vectorized_runtime.VectorizedRuntime._program

  def recorded(self, comp, plan, traced=False):
    jitted = original(self, comp, plan, traced)
    return lambda payload: programs.append((jitted, payload)) or jitted(payload)

  monkeypatch.setattr(vectorized_runtime.VectorizedRuntime, "_program", recorded)
  image = fx.TensorType(np.float32, [8, 8, 1])

  @fx.computation(fx.SequenceType(image))
  def activation(images):
    return images.reduce(jnp.float32(0), lambda s, x: s + conv(x[None]).sum())

  @fx.federated_computation(fx.FederatedType(fx.SequenceType(image), fx.CLIENTS))
  def total(data):
    return fx.federated_sum(fx.federated_map(activation, data))

  data = [np.ones((n, 8, 8, 1), np.float32) for n in (2, 3)]
  with fx.runtime.vectorized():
    out = total(data)
    assert "compiled with XLA options: xla_cpu_experimental_ynn_fusion_type=" in (
        fx.runtime.explain(total, data))
  np.testing.assert_allclose(out, 5 * float(conv(np.ones((1, 8, 8, 1), np.float32)).sum()),
                             rtol=1e-5)
  jitted, payload = programs[0]
  hlo = jitted.lower(payload).compile().as_text()
  assert " convolution(" in hlo and library_convolutions(hlo) == 0


def test_the_users_xla_flags_choice_is_kept(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=+individual_dot")
  assert xla_options.compiler_options("cpu") is None
  assert xla_options.compiler_options("gpu") is None


def test_a_round_under_the_users_jit_compiles_with_the_callers_options():
  @fx.computation(np.float32)
  def double(x):
    return 2 * x

  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
  def doubled_sum(x):
    return fx.federated_sum(fx.federated_map(double, x))

  for runtime in (fx.runtime.vectorized(), fx.runtime.sequential()):
    with runtime:
      assert float(jax.jit(lambda v: doubled_sum(list(v)))(jnp.arange(3.0))) == 6.0
      assert float(jax.jit(double)(jnp.float32(2))) == 4.0
      assert float(doubled_sum([0.0, 1.0, 2.0])) == 6.0
