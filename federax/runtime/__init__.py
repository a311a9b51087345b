"""Runtimes: where federated computations run.

`vectorized` (the default) compiles a whole computation into one XLA program over a client
axis; `sequential` runs it client by client in Python, the reference and the debugger.
Select one for a block with `with fx.runtime.sequential(): ...`, or for the process with
`fx.runtime.set_default(fx.runtime.sequential())`.
"""

from federax.core import context as _context
from federax.runtime.padding import PaddedSequence as PaddedSequence
from federax.runtime.sequential import SequentialRuntime as SequentialRuntime
from federax.runtime.vectorized import FallbackWarning as FallbackWarning
from federax.runtime.vectorized import VectorizedRuntime as VectorizedRuntime


def vectorized(**options) -> VectorizedRuntime:
  """A vectorized runtime (see `VectorizedRuntime` for the options); also a context manager."""
  return VectorizedRuntime(**options)


def sequential(**options) -> SequentialRuntime:
  """A sequential runtime (see `SequentialRuntime` for the options); also a context manager."""
  return SequentialRuntime(**options)


def set_default(runtime) -> None:
  """Makes `runtime` the one that runs top-level calls outside any `with` block."""
  if not hasattr(runtime, "invoke"):
    raise TypeError(f"Expected a runtime (fx.runtime.vectorized() or sequential()), got {runtime!r}.")
  _context.set_default_runtime(runtime)


def get_default():
  """The runtime that runs top-level calls outside any `with` block."""
  return _context._default_runtime[0]


def current():
  """The runtime a top-level call would use here (the innermost `with`, else the default)."""
  return _context.current_runtime()


if not _context._default_runtime:
  _context.set_default_runtime(VectorizedRuntime())

__all__ = ["vectorized", "sequential", "set_default", "get_default", "current",
           "VectorizedRuntime", "SequentialRuntime", "PaddedSequence", "FallbackWarning"]
