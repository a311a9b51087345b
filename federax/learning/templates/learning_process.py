"""`LearningProcess`: an iterative process that trains a model, with `LearningProcessOutput`."""

from __future__ import annotations

from typing import Any, NamedTuple

from federax.core import types as t
from federax.core.computations import Computation
from federax.core.errors import FederatedTypeError
from federax.core.placements import CLIENTS, SERVER
from federax.learning.templates._checks import parameters, placed_at
from federax.templates.iterative_process import IterativeProcess


class LearningProcessOutput(NamedTuple):
  """What `LearningProcess.next` returns: the next state and the round's metrics (at SERVER)."""

  state: Any
  metrics: Any


class LearningProcess(IterativeProcess):
  """Trains a model: `initialize`, `next(state, client_data)`, and access to the model weights.

  `initialize: ( -> S@SERVER)`; `next: (<state=S@SERVER, client_data={D}@CLIENTS> ->
  <state=S@SERVER, metrics=M@SERVER>)`; `get_model_weights: (S -> W)`;
  `set_model_weights: (<S, W> -> S)`, all as in TFF.

  Example:
    >>> from federax.simulation.baselines import synthetic
    >>> train, _ = fx.simulation.datasets.synthetic.load_data(1.0, 1.0, num_clients=3, seed=0)
    >>> client_datasets = [train.create_dataset(c).masked_batch(10) for c in train.client_ids]
    >>> process = fx.learning.algorithms.build_weighted_fed_avg(
    ...     synthetic.create_logistic_regression_model(), fx.learning.optimizers.build_sgdm(0.02))
    >>> state = process.initialize()
    >>> for _ in range(2):
    ...   state, metrics = process.next(state, client_datasets)
    >>> weights = process.get_model_weights(state)
    >>> [w.shape for w in weights.trainable]
    [(60, 10), (10,)]
  """

  def __init__(self, initialize_fn: Computation, next_fn: Computation,
               get_model_weights: Computation, set_model_weights: Computation):
    super().__init__(initialize_fn, next_fn)
    name = type(self).__name__
    parameter = parameters(name, next_fn, ("state", "client_data"))
    placed_at(name, "the state", self.state_type, SERVER)
    placed_at(name, "the client data", parameter[1], CLIENTS)
    result = next_fn.type_signature.result
    if not (isinstance(result, t.StructType) and result.names() == ("state", "metrics")):
      raise FederatedTypeError(name, "next_fn must return LearningProcessOutput(state, metrics).",
                               expected="<state=S@SERVER,metrics=M@SERVER>", actual=result)
    placed_at(name, "the metrics", result[1], SERVER)
    state_member = self.state_type.member
    get_type = get_model_weights.type_signature
    if get_type.parameter is None or not get_type.parameter.is_assignable_from(state_member):
      raise FederatedTypeError(name, "get_model_weights must take the (unplaced) state.",
                               expected=state_member,
                               actual="no parameter" if get_type.parameter is None
                               else get_type.parameter)
    self._get_model_weights = get_model_weights
    self._set_model_weights = set_model_weights
    self._client_data_type = parameter[1]

  @property
  def get_model_weights(self) -> Computation:
    """`(S -> W)`: the global model weights held in a state (unplaced)."""
    return self._get_model_weights

  @property
  def set_model_weights(self) -> Computation:
    """`(<S, W> -> S)`: a state with its global model weights replaced."""
    return self._set_model_weights

  @property
  def client_data_type(self) -> t.FederatedType:
    """`{D}@CLIENTS`: what `next` takes as client data."""
    return self._client_data_type
