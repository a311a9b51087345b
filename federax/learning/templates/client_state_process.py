"""`ClientStateLearningProcess`: a learning process whose clients keep a state across rounds."""

from __future__ import annotations

from typing import Any, NamedTuple

from federax.core import types as t
from federax.core.computations import Computation
from federax.core.errors import FederatedTypeError
from federax.core.placements import CLIENTS, SERVER
from federax.learning.templates._checks import parameters, placed_at
from federax.templates.iterative_process import IterativeProcess


class ClientStateLearningProcessOutput(NamedTuple):
  """What `ClientStateLearningProcess.next` returns: state, metrics and the clients' states."""

  state: Any
  metrics: Any
  client_states: Any


class ClientStateLearningProcess(IterativeProcess):
  """Trains a model whose clients each keep a state `C` from one round to their next.

  `initialize: ( -> S@SERVER)`; `next: (<state=S@SERVER, client_data={D}@CLIENTS,
  client_states={C}@CLIENTS> -> <state=S@SERVER, metrics=M@SERVER, client_states={C}@CLIENTS>)`;
  `initial_client_state: ( -> C)`, the state of a client before its first round;
  `get_model_weights: (S -> W)`; `set_model_weights: (<S, W> -> S)`.

  The process itself is pure: the states travel in and out of `next` like any other client
  value. A program keeps them between rounds in a `fx.program.ClientStateStore`, and
  `fx.program.ClientStateProcess(process, store)` runs `next` on a cohort of client ids,
  gathering and scattering their states (it is what `run_training_process` takes).
  TFF 0.87 has no such template; SCAFFOLD and Ditto (`fx.learning.algorithms.build_scaffold`,
  `build_ditto`) are built on it.
  """

  def __init__(self, initialize_fn: Computation, next_fn: Computation,
               initial_client_state: Computation, get_model_weights: Computation,
               set_model_weights: Computation):
    super().__init__(initialize_fn, next_fn)
    name = type(self).__name__
    parameter = parameters(name, next_fn, ("state", "client_data", "client_states"))
    placed_at(name, "the state", self.state_type, SERVER)
    placed_at(name, "the client data", parameter[1], CLIENTS)
    placed_at(name, "the client states", parameter[2], CLIENTS)
    result = next_fn.type_signature.result
    if not (isinstance(result, t.StructType)
            and result.names() == ("state", "metrics", "client_states")):
      raise FederatedTypeError(name, "next_fn must return ClientStateLearningProcessOutput("
                               "state, metrics, client_states).",
                               expected="<state=S@SERVER,metrics=M@SERVER,"
                               "client_states={C}@CLIENTS>", actual=result)
    placed_at(name, "the metrics", result[1], SERVER)
    client_state_type = parameter[2].member
    initial_type = initial_client_state.type_signature
    if initial_type.parameter is not None or not client_state_type.is_assignable_from(
        initial_type.result) or not client_state_type.is_assignable_from(result[2].member):
      raise FederatedTypeError(name, "initial_client_state and next_fn's returned client states "
                               "must have the type next_fn takes as client states.",
                               expected=f"( -> {client_state_type}) and {{{client_state_type}}}"
                               "@CLIENTS", actual=f"{initial_type} and {result[2]}")
    self._initial_client_state = initial_client_state
    self._get_model_weights = get_model_weights
    self._set_model_weights = set_model_weights
    self._client_data_type = parameter[1]
    self._client_state_type = client_state_type

  @property
  def initial_client_state(self) -> Computation:
    """`( -> C)`: a client's state before its first round."""
    return self._initial_client_state

  @property
  def get_model_weights(self) -> Computation:
    return self._get_model_weights

  @property
  def set_model_weights(self) -> Computation:
    return self._set_model_weights

  @property
  def client_data_type(self) -> t.FederatedType:
    return self._client_data_type

  @property
  def client_state_type(self) -> t.Type:
    """`C`: one client's state (unplaced)."""
    return self._client_state_type
