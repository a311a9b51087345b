"""Which runtime runs top-level calls, and which execution carries out intrinsics now.

Both live in context variables, so threads and asyncio tasks each see their own: nothing is
swapped into a module while a computation is traced. Runtimes are entered with `use_runtime`
(a runtime's `with` block) and executions with `use_execution` (one trace or run of a body);
`federax/__init__` sets the default runtime. While a local computation's function runs
(`use_local_body`), no execution is current: its values are JAX arrays, so computations it
calls are inlined into it, and its sequences hold the execution that carries out their loops.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Optional

from federax.core.execution import Execution, Runtime

_runtime: contextvars.ContextVar[Optional[Runtime]] = contextvars.ContextVar("federax_runtime",
                                                                            default=None)
_execution: contextvars.ContextVar[Optional[Execution]] = contextvars.ContextVar(
    "federax_execution", default=None)
_local_body: contextvars.ContextVar[Optional[tuple[Optional[Execution]]]] = contextvars.ContextVar(
    "federax_local_body", default=None)
_default_runtime: list[Runtime] = []


def set_default_runtime(runtime: Runtime) -> None:
  """Makes `runtime` the one that runs top-level calls outside any `with` block."""
  _default_runtime[:] = [runtime]


def default_runtime() -> Runtime:
  if not _default_runtime:
    raise RuntimeError("No default runtime is set: import federax (which sets the vectorized "
                       "runtime), or call fx.runtime.set_default(...).")
  return _default_runtime[0]


def current_runtime() -> Runtime:
  """The innermost runtime entered with `use_runtime`, else the default."""
  runtime = _runtime.get()
  return runtime if runtime is not None else default_runtime()


@contextlib.contextmanager
def use_runtime(runtime: Runtime):
  token = _runtime.set(runtime)
  try:
    yield runtime
  finally:
    _runtime.reset(token)


def current_execution() -> Optional[Execution]:
  return _execution.get()


@contextlib.contextmanager
def use_execution(execution: Execution):
  token = _execution.set(execution)
  try:
    yield execution
  finally:
    _execution.reset(token)


def in_local_body() -> bool:
  """Whether a local computation's function is running (its values are JAX arrays)."""
  return _local_body.get() is not None


def local_body_execution() -> Optional[Execution]:
  """The execution that called the running local computation (None at the top level)."""
  body = _local_body.get()
  return None if body is None else body[0]


@contextlib.contextmanager
def use_local_body(execution: Optional[Execution]):
  """Runs a local computation's function: no current execution; `execution` (its caller's)
  carries out the loops of the sequences it receives."""
  body_token = _local_body.set((execution,))
  execution_token = _execution.set(None)
  try:
    yield
  finally:
    _execution.reset(execution_token)
    _local_body.reset(body_token)
