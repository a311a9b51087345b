"""`fx.backends.native`: TFF's local C++ execution context is the vectorized runtime here.

`max_concurrent_computation_calls` and `stream_structs` tune TFF's C++ executor; federax runs
each call as one compiled program, so they are accepted (TFF code runs unchanged) and have no
effect.
"""

from __future__ import annotations

from federax import runtime
from federax.runtime.backends._contexts import local_runtime
from federax.runtime.vectorized import VectorizedRuntime


def create_sync_local_cpp_execution_context(
    default_num_clients: int = 0, max_concurrent_computation_calls: int = -1,
    stream_structs: bool = False) -> VectorizedRuntime:
  """A vectorized runtime (TFF's `create_sync_local_cpp_execution_context`).

  Use it in a `with` block, or pass it to `fx.runtime.set_default`.

  Args:
    default_num_clients: the number of clients of a call with no argument placed at CLIENTS
      (`federated_eval(fn, CLIENTS)` or `federated_value(x, CLIENTS)` in a computation without
      arguments); a CLIENTS-placed argument decides the number otherwise.
    max_concurrent_computation_calls: accepted for TFF's signature; no effect.
    stream_structs: accepted for TFF's signature; no effect.

  Raises:
    TypeError, ValueError: if `default_num_clients` is not an int >= 0.

  Example:
    >>> @fx.federated_computation
    ... def count():
    ...   return fx.federated_sum(fx.federated_value(1, fx.CLIENTS))
    >>> with fx.backends.native.create_sync_local_cpp_execution_context(default_num_clients=3):
    ...   print(count())
    3
  """
  del max_concurrent_computation_calls, stream_structs
  return local_runtime("create_sync_local_cpp_execution_context", default_num_clients)


def set_sync_local_cpp_execution_context(
    default_num_clients: int = 0, max_concurrent_computation_calls: int = -1,
    stream_structs: bool = False) -> None:
  """Makes a vectorized runtime the default (TFF's `set_sync_local_cpp_execution_context`).

  The arguments are `create_sync_local_cpp_execution_context`'s.
  """
  del max_concurrent_computation_calls, stream_structs
  runtime.set_default(local_runtime("set_sync_local_cpp_execution_context", default_num_clients))


__all__ = ["create_sync_local_cpp_execution_context", "set_sync_local_cpp_execution_context"]
