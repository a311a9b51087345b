"""`IterativeProcess`: a pair of computations, `initialize` and `next`, threading a state."""

from __future__ import annotations

from federax.core import types as t
from federax.core.computations import Computation
from federax.core.errors import FederatedTypeError


class IterativeProcess:
  """A process that repeatedly applies `next` to a state made by `initialize`.

  Args:
    initialize_fn: a computation with no parameters returning the initial state.
    next_fn: a computation whose first parameter is the state and whose result is the next
      state, or a struct whose first element is the next state.

  Raises:
    FederatedTypeError: if the two computations disagree on the state's type.

  Example:
    >>> initialize = fx.federated_computation(lambda: fx.federated_value(np.int32(0), fx.SERVER))
    >>> increment = fx.computation(np.int32)(lambda count: count + 1)
    >>> @fx.federated_computation(fx.FederatedType(np.int32, fx.SERVER))
    ... def next_round(count):
    ...   return fx.federated_map(increment, count)
    >>> process = fx.templates.IterativeProcess(initialize, next_round)
    >>> state = process.initialize()
    >>> for _ in range(3):
    ...   state = process.next(state)
    >>> int(state)
    3
  """

  def __init__(self, initialize_fn: Computation, next_fn: Computation):
    name = type(self).__name__
    for label, fn in (("initialize_fn", initialize_fn), ("next_fn", next_fn)):
      if not isinstance(fn, Computation):
        raise TypeError(f"{name}: {label} must be an fx computation, got {fn!r}.")
    init_type = initialize_fn.type_signature
    if init_type.parameter is not None:
      raise FederatedTypeError(name, "initialize_fn must take no parameters.",
                               actual=init_type)
    next_type = next_fn.type_signature
    state_type = init_type.result
    parameter = next_type.parameter
    first = parameter[0] if (isinstance(parameter, t.StructType) and len(parameter)
                             and len(next_fn._signature.names) > 1) else parameter
    if first is None or not first.is_assignable_from(state_type):
      raise FederatedTypeError(
          name, "next_fn's first parameter must accept the state initialize_fn returns.",
          expected=state_type, actual="no parameter" if first is None else first)
    result = next_type.result
    next_state = result
    if not first.is_assignable_from(result) and isinstance(result, t.StructType) and len(result):
      next_state = result[0]
    if not first.is_assignable_from(next_state):
      raise FederatedTypeError(
          name, "next_fn must return the state (or a struct whose first element is the state).",
          expected=first, actual=next_state)
    self._initialize = initialize_fn
    self._next = next_fn
    self._state_type = state_type

  @property
  def initialize(self) -> Computation:
    """The computation that makes the initial state: `( -> S)`."""
    return self._initialize

  @property
  def next(self) -> Computation:
    """The computation that advances the state: `(<S, ...> -> S | <S, ...>)`."""
    return self._next

  @property
  def state_type(self) -> t.Type:
    return self._state_type

  def __repr__(self) -> str:
    return (f"{type(self).__name__}(initialize: {self._initialize.type_signature}, "
            f"next: {self._next.type_signature})")
