"""Which runtime runs top-level calls, and which execution carries out intrinsics now.

Both live in context variables, so threads and asyncio tasks each see their own: nothing is
swapped into a module while a computation is traced.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Optional, Protocol


class Runtime(Protocol):
  """Runs a top-level call of a computation with Python arguments; see `federax.runtime`."""

  def invoke(self, computation: Any, args: tuple, kwargs: dict) -> Any:
    ...


_runtime: contextvars.ContextVar[Optional[Runtime]] = contextvars.ContextVar("federax_runtime",
                                                                            default=None)
# The execution carries out intrinsics during one trace or run of a body: each of its methods
# (federated_sum, map_clients, sequence_reduce, ...) takes payloads and checked types and
# returns the result's payload. See TypingExecution, VectorizedExecution, SequentialExecution.
_execution: contextvars.ContextVar[Optional[Any]] = contextvars.ContextVar("federax_execution",
                                                                          default=None)
_default_runtime: list[Runtime] = []


def set_default_runtime(runtime: Runtime) -> None:
  _default_runtime[:] = [runtime]


def current_runtime() -> Runtime:
  runtime = _runtime.get()
  if runtime is not None:
    return runtime
  if not _default_runtime:
    import federax.runtime  # noqa: F401  (registers the vectorized runtime as the default)
  return _default_runtime[0]


@contextlib.contextmanager
def use_runtime(runtime: Runtime):
  token = _runtime.set(runtime)
  try:
    yield runtime
  finally:
    _runtime.reset(token)


def current_execution() -> Optional[Any]:
  return _execution.get()


@contextlib.contextmanager
def use_execution(execution: Any):
  token = _execution.set(execution)
  try:
    yield execution
  finally:
    _execution.reset(token)
