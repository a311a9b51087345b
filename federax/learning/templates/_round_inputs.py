"""The per-round inputs a client work keeps in its state (a round counter, a PRNG key), and the
federated plumbing that hands them to the clients."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import Computation, computation, federated_computation
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import type_of
from federax.learning._specs import KEY, abstract_value, initial_key, uses_argument
from federax.learning.templates.client_works import ClientWorkProcess
from federax.templates.measured_process import MeasuredProcessOutput


def model_uses_key(model, batch_type) -> bool:
  """Whether the model's training pass reads its key (dropout): only then does state carry one."""
  return uses_argument(
      lambda key, batch: model.forward_pass(model.initial_weights, batch, True, key),
      KEY, abstract_value(batch_type))


def initial_round_state(with_round_num: bool, with_key: bool, seed: int = 0):
  """`OrderedDict(round_num=int32, key=uint32[2])`, each only when asked for (TFF prints `<>`)."""
  state = collections.OrderedDict()
  if with_round_num:
    state["round_num"] = np.int32(0)
  if with_key:
    state["key"] = initial_key(seed)
  return state


def advance_computation(state) -> Computation:
  """`(S -> <S, round_num, key>)`: the next state, this round's number and this round's key."""

  @computation(type_of(state))
  def advance(state):
    new_state = collections.OrderedDict(state)
    round_num = state.get("round_num", np.int32(0))
    key = state.get("key", jnp.zeros(2, jnp.uint32))
    if "key" in state:
      new_state["key"], key = jax.random.split(key)
    if "round_num" in state:
      new_state["round_num"] = round_num + 1
    return new_state, round_num, key

  return advance


def build_client_work(round_state, weights_type: t.Type, batch_type: t.Type,
                      client_update: Computation,
                      aggregate_metrics: Computation) -> ClientWorkProcess:
  """The plumbing every model-training client work shares, as a `ClientWorkProcess`.

  Each round advances `round_state`, gives every client its own key, runs
  `client_update(weights, data, round_num, key) -> (ClientResult, unfinalized metrics)` on
  every client, and reports `<train=aggregate_metrics(metrics)>`.
  """
  advance = advance_computation(round_state)

  @federated_computation
  def initialize():
    return fi.federated_value(round_state, SERVER)

  @federated_computation(initialize.type_signature.result, t.FederatedType(weights_type, CLIENTS),
                         t.FederatedType(t.SequenceType(batch_type), CLIENTS))
  def next_fn(state, weights, client_data):
    new_state, round_num, key = fi.federated_map(advance, state)
    results, metrics = fi.federated_map(
        client_update, (weights, client_data, fi.federated_broadcast(round_num),
                        fi.federated_client_keys(key)))
    measurements = fi.federated_zip(collections.OrderedDict(train=aggregate_metrics(metrics)))
    return MeasuredProcessOutput(state=new_state, result=results, measurements=measurements)

  return ClientWorkProcess(initialize, next_fn)
