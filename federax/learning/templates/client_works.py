"""`ClientWorkProcess` and `ClientResult`: what the clients compute from the model and their data."""

from __future__ import annotations

from typing import Any, NamedTuple

from federax.core import types as t
from federax.core.computations import Computation
from federax.core.errors import FederatedTypeError
from federax.core.placements import CLIENTS, SERVER
from federax.learning.templates._checks import parameters, placed_at
from federax.templates.measured_process import MeasuredProcess


class ClientResult(NamedTuple):
  """One client's output: the model update and its weight in the aggregate.

  Attributes:
    update: the model update (for FedAvg, initial minus trained trainable weights).
    update_weight: a float32 scalar, e.g. the number of examples (0 drops the client).
  """

  update: Any
  update_weight: Any


class ClientWorkProcess(MeasuredProcess):
  """A `MeasuredProcess` for the clients' local work.

  `next: (<S@SERVER, {W}@CLIENTS, {D}@CLIENTS> -> <state=S@SERVER,
  result={<update=U,update_weight=float32>}@CLIENTS, measurements=M@SERVER>)`, with `W` the
  model weights and `D` the client data (usually a sequence of batches).
  """

  def __init__(self, initialize_fn: Computation, next_fn: Computation):
    super().__init__(initialize_fn, next_fn)
    name = type(self).__name__
    parameter = parameters(name, next_fn, ("state", "weights", "client_data"))
    placed_at(name, "the state", self.state_type, SERVER)
    placed_at(name, "the weights", parameter[1], CLIENTS)
    placed_at(name, "the client data", parameter[2], CLIENTS)
    result = next_fn.type_signature.result
    placed_at(name, "the result", result[1], CLIENTS)
    placed_at(name, "the measurements", result[2], SERVER)
    member = result[1].member
    if not (isinstance(member, t.StructType) and member.names() == ("update", "update_weight")):
      raise FederatedTypeError(name, "the result must be a ClientResult(update, update_weight).",
                               expected="{<update=U,update_weight=float32>}@CLIENTS",
                               actual=result[1])
    self._weights_type = parameter[1].member
    self._data_type = parameter[2].member

  @property
  def weights_type(self) -> t.Type:
    return self._weights_type

  @property
  def data_type(self) -> t.Type:
    return self._data_type
