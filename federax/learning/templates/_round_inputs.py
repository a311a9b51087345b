"""The per-round inputs a client work keeps in its state: a round counter and a PRNG key."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np

from federax.core.computations import Computation, computation
from federax.core.type_conversions import type_of
from federax.learning._specs import KEY, abstract_value, uses_argument


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
    state["key"] = np.asarray(jax.random.PRNGKey(seed), np.uint32)
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
