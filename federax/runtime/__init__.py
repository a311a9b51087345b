"""Runtimes: where federated computations run.

`vectorized` (the default) compiles a whole computation into one XLA program over a client
axis; `sequential` runs it client by client in Python, the reference and the debugger.
Select one for a block with `with fx.runtime.sequential(): ...`, or for the process with
`fx.runtime.set_default(fx.runtime.sequential())`. `ray` runs the same computations with the
clients sharded over Ray worker processes on one machine or many (`federax[ray]`).
`fx.runtime.explain(comp, *args)` shows how the vectorized runtime would run a call.
"""

from federax.core import context as _context
from federax.core.execution import Execution as Execution
from federax.core.execution import Runtime as Runtime
from federax.runtime.distributed.data import ClientIds as ClientIds
from federax.runtime.padding import PaddedSequence as PaddedSequence
from federax.runtime.sequential import SequentialRuntime as SequentialRuntime
from federax.runtime.vectorized import FallbackWarning as FallbackWarning
from federax.runtime.vectorized import Plan as Plan
from federax.runtime.vectorized import VectorizedRuntime as VectorizedRuntime


def vectorized(**options) -> VectorizedRuntime:
  """A vectorized runtime (see `VectorizedRuntime` for the options); also a context manager."""
  return VectorizedRuntime(**options)


def sequential(**options) -> SequentialRuntime:
  """A sequential runtime (see `SequentialRuntime` for the options); also a context manager."""
  return SequentialRuntime(**options)


def ray(address=None, **options):
  """A Ray runtime (see `federax.runtime.distributed.RayRuntime` for the options); also a
  context manager. Needs Ray: `pip install 'federax[ray]'`."""
  from federax.runtime.distributed import RayRuntime

  return RayRuntime(address, **options)


def set_default(runtime: Runtime) -> None:
  """Makes `runtime` the one that runs top-level calls outside any `with` block."""
  if not isinstance(runtime, Runtime):
    raise TypeError("fx.runtime.set_default: expected a runtime (fx.runtime.vectorized() or "
                    f"fx.runtime.sequential() or fx.runtime.ray()), got {runtime!r}.")
  _context.set_default_runtime(runtime)


def get_default() -> Runtime:
  """The runtime that runs top-level calls outside any `with` block."""
  return _context.default_runtime()


def current() -> Runtime:
  """The runtime a top-level call would use here (the innermost `with`, else the default)."""
  return _context.current_runtime()


def explain(comp, *args, **kwargs) -> str:
  """How the current runtime would run `comp(*args, **kwargs)`, as text; nothing is run.

  On the vectorized runtime: the call's `Plan` (loops, chunks, streaming, sharding, CPU
  rewrites, differentiable or not), the padded sequence lengths, and how each
  `federated_map` runs its clients, and why.

  Example:
    >>> @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
    ... def average(values):
    ...   return fx.federated_mean(values)
    >>> print(fx.runtime.explain(average, [1.0, 2.0]).splitlines()[0])
    average: one XLA program (({float32}@CLIENTS -> float32@SERVER))
  """
  runtime = current()
  if not hasattr(runtime, "explain"):
    return f"{comp.name}: runs on {runtime!r}, one Python call at a time."
  return runtime.explain(comp, *args, **kwargs)


__all__ = ["ClientIds", "vectorized", "sequential", "ray", "set_default", "get_default", "current",
           "explain", "Execution", "Runtime", "Plan", "VectorizedRuntime", "SequentialRuntime",
           "PaddedSequence", "FallbackWarning"]
