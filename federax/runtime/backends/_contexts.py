"""The vectorized runtime that TFF's local execution contexts stand for."""

from __future__ import annotations

from federax.core import context
from federax.core.errors import error
from federax.runtime.vectorized import VectorizedRuntime


def local_runtime(operator: str, default_num_clients: int) -> VectorizedRuntime:
  """A vectorized runtime with `default_num_clients`, checked to be a count.

  Raises:
    TypeError: if `default_num_clients` is not an int.
    ValueError: if it is negative.
  """
  if isinstance(default_num_clients, bool) or not isinstance(default_num_clients, int):
    raise error(TypeError, operator, "default_num_clients must be an int >= 0.",
                expected="an int >= 0", actual=repr(default_num_clients))
  if default_num_clients < 0:
    raise error(ValueError, operator, "default_num_clients must be an int >= 0.",
                expected="an int >= 0", actual=repr(default_num_clients))
  return VectorizedRuntime(default_num_clients=default_num_clients)


def set_default(runtime: VectorizedRuntime) -> None:
  context.set_default_runtime(runtime)
