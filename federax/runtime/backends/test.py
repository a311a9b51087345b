"""`fx.backends.test`: TFF's test execution context is the vectorized runtime here.

TFF's test context replaces the secure intrinsics by plain sums so they can run locally;
federax's runtimes always compute them so (the secure sums' semantics, without the protocol),
so the test context is the native one.
"""

from __future__ import annotations

from federax import runtime
from federax.runtime.backends._contexts import local_runtime
from federax.runtime.vectorized import VectorizedRuntime


def create_sync_test_cpp_execution_context(
    *, default_num_clients: int = 0, max_concurrent_computation_calls: int = -1,
    stream_structs: bool = False) -> VectorizedRuntime:
  """A vectorized runtime (TFF's `create_sync_test_cpp_execution_context`); see
  `fx.backends.native.create_sync_local_cpp_execution_context` for the arguments."""
  del max_concurrent_computation_calls, stream_structs
  return local_runtime("create_sync_test_cpp_execution_context", default_num_clients)


def set_sync_test_cpp_execution_context(
    *, default_num_clients: int = 0, max_concurrent_computation_calls: int = -1,
    stream_structs: bool = False) -> None:
  """Makes a vectorized runtime the default (TFF's `set_sync_test_cpp_execution_context`)."""
  del max_concurrent_computation_calls, stream_structs
  runtime.set_default(local_runtime("set_sync_test_cpp_execution_context", default_num_clients))


__all__ = ["create_sync_test_cpp_execution_context", "set_sync_test_cpp_execution_context"]
