"""`MeasuredProcess`: an iterative process whose `next` also reports measurements."""

from __future__ import annotations

from typing import Any, NamedTuple

from federax.core import types as t
from federax.core.computations import Computation
from federax.core.errors import FederatedTypeError
from federax.templates.iterative_process import IterativeProcess


class MeasuredProcessOutput(NamedTuple):
  """What a measured process's `next` returns.

  Attributes:
    state: the next state (typically at SERVER).
    result: the round's result (e.g. an aggregate, typically at SERVER).
    measurements: metrics about the round, for the caller (at SERVER).
  """

  state: Any
  result: Any
  measurements: Any


class MeasuredProcess(IterativeProcess):
  """An `IterativeProcess` whose `next` returns `MeasuredProcessOutput(state, result,
  measurements)`; TFF's template for aggregators, client work and finalizers.

  Raises:
    FederatedTypeError: if `next_fn` does not return a three-element struct
      `<state=S,result=R,measurements=M>` with `S` the state's type.

  Example:
    >>> initialize = fx.federated_computation(lambda: fx.federated_value((), fx.SERVER))
    >>> @fx.federated_computation(initialize.type_signature.result,
    ...                           fx.FederatedType(np.float32, fx.CLIENTS))
    ... def next_fn(state, values):
    ...   return fx.templates.MeasuredProcessOutput(
    ...       state, fx.federated_sum(values), fx.federated_value((), fx.SERVER))
    >>> process = fx.templates.MeasuredProcess(initialize, next_fn)
    >>> output = process.next(process.initialize(), [1.0, 2.0, 4.0])
    >>> output.state, float(output.result), output.measurements
    ((), 7.0, ())
  """

  def __init__(self, initialize_fn: Computation, next_fn: Computation):
    result = next_fn.type_signature.result
    names = ("state", "result", "measurements")
    if not (isinstance(result, t.StructType) and len(result) == 3
            and all(n in (None, expected) for n, expected in zip(result.names(), names))):
      raise FederatedTypeError(
          "MeasuredProcess", "next_fn must return MeasuredProcessOutput(state, result, "
          "measurements).", actual=result,
          hint="return fx.templates.MeasuredProcessOutput(state=..., result=..., measurements=...)")
    super().__init__(initialize_fn, next_fn)
