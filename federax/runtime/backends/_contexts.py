"""The vectorized runtime that TFF's local execution contexts stand for."""

from __future__ import annotations

from federax.runtime._base import check_client_count
from federax.runtime.vectorized import VectorizedRuntime


def local_runtime(operator: str, default_num_clients: int) -> VectorizedRuntime:
  """A vectorized runtime with `default_num_clients`; a bad count's error names `operator`.

  Raises:
    TypeError: if `default_num_clients` is not an int.
    ValueError: if it is negative.
  """
  check_client_count(operator, default_num_clients)
  return VectorizedRuntime(default_num_clients=default_num_clients)
