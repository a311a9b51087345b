"""Client values on the vectorized runtime: arrays with a client axis, or one shared member.

A `{T}@CLIENTS` payload has `T`'s structure; each leaf is either an array whose leading axis
is the client (`[n, ...]`) or a `Shared` leaf: a value every client holds the same, stored
once. A broadcast model is `Shared`, so a round never copies it once per client (a 4 MB model
at 1,000 clients would be 4 GB): `federated_map` passes it to each client as a constant, and
the aggregations see every client value through `stacked`, which broadcasts it only then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from federax.runtime.vectorized import streaming


class Shared:
  """A leaf of a client value that every client holds the same (stored once)."""

  __slots__ = ("value",)

  def __init__(self, value: Any):
    self.value = value

  def __repr__(self) -> str:
    return f"Shared({self.value!r})"


jax.tree_util.register_pytree_node(Shared, lambda s: ((s.value,), None),
                                   lambda _, children: Shared(children[0]))


def is_shared(x: Any) -> bool:
  return isinstance(x, Shared)


def _leaf(x: Any) -> bool:
  return is_shared(x) or streaming.is_streamed(x)


def shared(payload: Any) -> Any:
  """`payload` (one member) as the client value every client holds."""
  return jax.tree_util.tree_map(Shared, payload, is_leaf=_leaf)


def member(payload: Any) -> Any:
  """The one member of an all-shared client value."""
  return jax.tree_util.tree_map(lambda x: x.value if is_shared(x) else x, payload,
                                is_leaf=is_shared)


def all_shared(payload: Any) -> bool:
  """No leaf differs between clients (including a value without leaves)."""
  return all(map(is_shared, jax.tree_util.tree_leaves(payload, is_leaf=_leaf)))


def stacked(payload: Any, n: int) -> Any:
  """Every leaf with its client axis: `Shared` leaves broadcast to `[n, ...]`."""
  return jax.tree_util.tree_map(
      lambda x: jnp.broadcast_to(x.value, (n,) + jnp.shape(x.value)) if is_shared(x) else x,
      payload, is_leaf=is_shared)


def without_shared(fn: Callable, payload: Any) -> tuple[Callable, Any]:
  """`(fn', varying)`: the leaves that differ between clients, and `fn'` of one client's part
  of them that calls `fn` with the shared leaves put back as they are (constants to `vmap`)."""
  leaves, treedef = jax.tree_util.tree_flatten(payload, is_leaf=_leaf)
  if not any(map(is_shared, leaves)):
    return fn, payload

  def per_client(varying):
    rest = iter(varying)
    return fn(treedef.unflatten([x.value if is_shared(x) else next(rest) for x in leaves]))

  return per_client, [x for x in leaves if not is_shared(x)]
