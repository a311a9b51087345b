"""`AggregationProcess`: a `MeasuredProcess` reducing client values to a server value (TFF's)."""

from __future__ import annotations

from federax.core import types as t
from federax.core.computations import Computation
from federax.core.errors import FederatedTypeError
from federax.core.placements import CLIENTS, SERVER
from federax.templates._checks import placed_at
from federax.templates.measured_process import MeasuredProcess


class AggregationProcess(MeasuredProcess):
  """A `MeasuredProcess` that reduces client values to a server value.

  `initialize: ( -> S@SERVER)`; `next: (<S@SERVER, {V}@CLIENTS[, {W}@CLIENTS]> ->
  <state=S@SERVER, result=R@SERVER, measurements=M@SERVER>)`. With the third parameter the
  process is weighted (`is_weighted`).

  Raises:
    FederatedTypeError: if the state is not at SERVER, the value (and weight) not at CLIENTS,
      or the result or measurements not at SERVER.

  Example:
    >>> process = fx.aggregators.MeanFactory().create(fx.TensorType(np.float32),
    ...                                               fx.TensorType(np.float32))
    >>> process.is_weighted
    True
    >>> output = process.next(process.initialize(), [1.0, 2.0, 4.0], [1.0, 1.0, 2.0])
    >>> float(output.result)
    2.75
  """

  def __init__(self, initialize_fn: Computation, next_fn: Computation):
    super().__init__(initialize_fn, next_fn)
    name = type(self).__name__
    placed_at(name, "the state", self.state_type, SERVER)
    parameter = next_fn.type_signature.parameter
    if not isinstance(parameter, t.StructType) or len(parameter) not in (2, 3):
      raise FederatedTypeError(name, "next_fn must take (state, value) or (state, value, weight).",
                               actual=next_fn.type_signature)
    placed_at(name, "the value", parameter[1], CLIENTS)
    if len(parameter) == 3:
      placed_at(name, "the weight", parameter[2], CLIENTS)
    result = next_fn.type_signature.result
    placed_at(name, "the result", result[1], SERVER)
    placed_at(name, "the measurements", result[2], SERVER)
    self._value_type = parameter[1].member
    self._weight_type = parameter[2].member if len(parameter) == 3 else None

  @property
  def is_weighted(self) -> bool:
    """Whether `next` takes a per-client weight."""
    return self._weight_type is not None

  @property
  def value_type(self) -> t.Type:
    """The type `V` of one client's value."""
    return self._value_type
