"""Pieces shared by the algorithms whose clients keep a state (SCAFFOLD, Ditto)."""

from __future__ import annotations

import collections

from federax.core import types as t
from federax.core.computations import Computation, computation


def model_weights_accessors(state_type: t.StructType) -> tuple[Computation, Computation]:
  """`get_model_weights: (S -> W)` and `set_model_weights: (<S, W> -> S)` for a state whose
  `global_model_weights` field holds the model weights."""
  weights_type = state_type["global_model_weights"]

  @computation(state_type)
  def get_model_weights(state):
    return state["global_model_weights"]

  @computation(state_type, weights_type)
  def set_model_weights(state, model_weights):
    new = collections.OrderedDict(state)
    new["global_model_weights"] = model_weights
    return new

  return get_model_weights, set_model_weights
