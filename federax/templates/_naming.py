"""`named`: the name a process's inner computation shows in errors and reprs."""

from __future__ import annotations

from typing import Callable


def named(name: str) -> Callable[[Callable], Callable]:
  """Names a builder's inner function as its user sees it (`SumFactory.create(value_type).next`).

  Errors about a computation name its function; without this they would show
  `_unweighted_mean.<locals>.next_fn`, which the user never wrote. Apply it under the
  computation decorator:

      @federated_computation(state_type, value_type)
      @named("SumFactory.create(value_type).next")
      def next_fn(state, value):
        ...
  """

  def rename(fn: Callable) -> Callable:
    fn.__qualname__ = name
    return fn

  return rename
