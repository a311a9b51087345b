"""Threefry's straight-line lowering for the vectorized runtime's programs on XLA:CPU.

Every `jax.random` draw, split and fold-in hashes with Threefry-2x32. On CPU, JAX lowers the
hash as a rolled 5-trip `while` loop (straight-line code on the other backends). XLA:CPU
compiles each fusion of a loop body into a kernel of its own, LLVM module by LLVM module, so
each hash costs about ten small kernels, and a dropout mask's hash compiles slowly as a loop
(measured on W2's round program, TFF's EMNIST CNN: 6 such loops, 56 of its 185 kernels, 1.4 s
of its 4.3 s of LLVM compilation). Straight-line, the hash fuses into the kernels around it.

It is the same integer function either way, so the bits drawn are the same.
`straight_line(program)` runs a program's calls (and so its tracing and lowering) with the
straight-line rule; outside those calls JAX's own CPU rule applies, as before.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Callable

import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry2x32_p
from jax.interpreters import mlir

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)
_ACTIVE = contextvars.ContextVar("federax_threefry_straight_line", default=False)


def _rotate_left(x, d: int):
  return jnp.left_shift(x, np.uint32(d)) | jnp.right_shift(x, np.uint32(32 - d))


def hash_2x32(key1, key2, x1, x2) -> list:
  """Threefry-2x32, 20 rounds, of the counts `(x1, x2)` under the key `(key1, key2)`: uint32
  arrays (broadcast together); the pair of hashed words. JAX's `threefry2x32_p`, unrolled.

  >>> [int(w) for w in hash_2x32(np.uint32(0), np.uint32(0), np.uint32(0), np.uint32(0))]
  [1797259609, 2579123966]
  """
  ks = (key1, key2, key1 ^ key2 ^ _PARITY)
  x = [x1 + ks[0], x2 + ks[1]]
  for i in range(5):
    for r in _ROTATIONS[i % 2]:
      x[0] = x[0] + x[1]
      x[1] = x[0] ^ _rotate_left(x[1], r)
    x[0] = x[0] + ks[(i + 1) % 3]
    x[1] = x[1] + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x


def _original_cpu_rule():
  """JAX's CPU lowering entry of `threefry2x32_p` (private: None if JAX no longer has it)."""
  try:
    from jax._src.interpreters import mlir as internal  # pylint: disable=g-import-not-at-top
    return internal._platform_specific_lowerings["cpu"][threefry2x32_p]  # pylint: disable=protected-access
  except (ImportError, AttributeError, KeyError):
    return None


def _install() -> bool:
  """Registers a CPU rule that is the straight-line one inside `straight_line` calls and JAX's
  own elsewhere; False (nothing registered) where JAX's rule cannot be found."""
  original = _original_cpu_rule()
  if original is None or not original.inline:
    return False
  straight = mlir.lower_fun(lambda k1, k2, x1, x2: hash_2x32(k1, k2, x1, x2),
                            multiple_results=True)

  def rule(ctx, *args, **params):
    return (straight if _ACTIVE.get() else original.rule)(ctx, *args, **params)

  mlir.register_lowering(threefry2x32_p, rule, platform="cpu")
  return True


INSTALLED = _install()


def straight_line(program: Callable) -> Callable:
  """`program` (a jitted function) whose calls lower Threefry straight-line on CPU."""

  @functools.wraps(program)
  def call(*args, **kwargs):
    token = _ACTIVE.set(True)
    try:
      return program(*args, **kwargs)
    finally:
      _ACTIVE.reset(token)

  return call
