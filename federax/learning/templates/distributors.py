"""`DistributionProcess`: how the server's model reaches the clients; `build_broadcast_process`."""

from __future__ import annotations

from typing import Any

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import Computation, federated_computation
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type
from federax.learning.templates._checks import parameters, placed_at
from federax.templates.measured_process import MeasuredProcess, MeasuredProcessOutput


class DistributionProcess(MeasuredProcess):
  """A `MeasuredProcess` that sends a server value to the clients.

  `next: (<S@SERVER, V@SERVER> -> <state=S@SERVER, result={V}@CLIENTS, measurements=M@SERVER>)`.
  """

  def __init__(self, initialize_fn: Computation, next_fn: Computation):
    super().__init__(initialize_fn, next_fn)
    name = type(self).__name__
    parameter = parameters(name, next_fn, ("state", "value"))
    placed_at(name, "the state", self.state_type, SERVER)
    placed_at(name, "the value", parameter[1], SERVER)
    result = next_fn.type_signature.result
    placed_at(name, "the result", result[1], CLIENTS)
    placed_at(name, "the measurements", result[2], SERVER)


def build_broadcast_process(value_type: Any) -> DistributionProcess:
  """A stateless `DistributionProcess` that broadcasts `value_type@SERVER` to every client.

  Args:
    value_type: the unplaced type of the value (e.g. the model weights' type).

  Returns:
    A process with state `<>@SERVER` and measurements `<>@SERVER`.

  Example:
    >>> weights = fx.learning.models.ModelWeights([np.zeros((3, 2), np.float32)], [])
    >>> distributor = fx.learning.templates.build_broadcast_process(fx.type_of(weights))
  """
  value_type = to_type(value_type)
  if isinstance(value_type, t.FederatedType):
    raise TypeError(f"build_broadcast_process takes the unplaced value type; got {value_type}. "
                    f"Pass {value_type.member}.")

  @federated_computation
  def initialize():
    return fi.federated_value((), SERVER)

  @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, SERVER))
  def next_fn(state, value):
    return MeasuredProcessOutput(state=state, result=fi.federated_broadcast(value),
                                 measurements=fi.federated_value((), SERVER))

  return DistributionProcess(initialize, next_fn)
