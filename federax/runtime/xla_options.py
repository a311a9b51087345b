"""The XLA options federax's runtimes compile their programs with.

On CPU, jaxlib 0.10 hands convolutions to YNNPACK by default (its "individual convolution"
library fusion, beside individual dots and reductions). On the convolutions of a training step
YNNPACK is the slower choice: for the EMNIST CNN's second convolution (a batch of 20, 26x26x32
through 3x3x64) the forward pass took 3.86 ms against 1.74 ms with XLA's own kernel, its kernel
gradient 16.4 against 4.6 ms, its input gradient 6.4 against 4.2 ms, and W2's FedAvg round
program 1.36 against 0.64 s (`python -m benchmarks.xla_options`, docs/performance.md). So
federax's programs keep YNNPACK for dots and reductions and leave convolutions to XLA.

The options go to each program's compile (`jax.jit(..., compiler_options=...)`), not to the
process: the user's own `jax.jit` programs keep JAX's defaults. A user who sets
`--xla_cpu_experimental_ynn_fusion_type` in `XLA_FLAGS` keeps that choice for federax's programs
too. They apply only to the jaxlib versions they were measured on (0.10), where the option's
values are known.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Optional

import jax

YNN_FUSIONS = "xla_cpu_experimental_ynn_fusion_type"
YNN_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"
# jaxlib 0.10's default YNNPACK fusions are these and YNN_CONVOLUTIONS.
WITHOUT_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
_MEASURED_JAXLIB = (0, 10)


@functools.cache
def _jaxlib_minor() -> tuple[int, int]:
  import jaxlib  # pylint: disable=g-import-not-at-top

  major, minor = jaxlib.__version__.split(".")[:2]
  return int(major), int(minor)


def compiler_options(backend: Optional[str] = None, nested: bool = False
                     ) -> Optional[dict[str, str]]:
  """The XLA compile options of federax's programs on `backend` (default: JAX's); None: none.
  A program `nested` in a trace of the user's takes none: it is compiled with its caller's.

  >>> compiler_options("gpu") is None
  True
  """
  backend = backend or jax.default_backend()
  if nested or backend != "cpu" or _jaxlib_minor() != _MEASURED_JAXLIB:
    return None
  if YNN_FUSIONS in os.environ.get("XLA_FLAGS", ""):
    return None  # The user's choice.
  return {YNN_FUSIONS: WITHOUT_CONVOLUTIONS}


def jit(fn: Callable, *, backend: Optional[str] = None, nested: bool = False) -> Callable:
  """`jax.jit(fn)` compiled with `compiler_options(backend, nested)`.

  >>> import jax.numpy as jnp
  >>> float(jit(lambda x: x + 1)(jnp.float32(1)))
  2.0
  """
  return jax.jit(fn, compiler_options=compiler_options(backend, nested))
