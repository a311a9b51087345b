"""What every runtime shares: options, entering it as the current runtime, PRNG keys."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Optional

import jax

from federax.core import context, errors


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
  """Seed of runtime-drawn PRNG keys, and the client count when no argument is at CLIENTS.

  As in TFF, a computation with no argument placed at CLIENTS runs with
  `default_num_clients` clients (0 unless set).
  """

  seed: int = 0
  default_num_clients: Optional[int] = None

  def __post_init__(self):
    if self.default_num_clients is not None:
      check_client_count("fx.runtime", self.default_num_clients)

  def num_clients(self, n: Optional[int]) -> int:
    if n is not None:
      return n
    return self.default_num_clients or 0

  def __str__(self) -> str:
    return f"seed={self.seed}, default_num_clients={self.default_num_clients}"


def check_client_count(operator: str, default_num_clients: object) -> None:
  """Refuses a `default_num_clients` that is not a count.

  Raises:
    TypeError: if it is not an int.
    ValueError: if it is negative.
  """
  if isinstance(default_num_clients, bool) or not isinstance(default_num_clients, int):
    raise errors.error(TypeError, operator, "default_num_clients must be an int >= 0.",
                       expected="an int >= 0", actual=repr(default_num_clients))
  if default_num_clients < 0:
    raise errors.error(ValueError, operator, "default_num_clients must be an int >= 0.",
                       expected="an int >= 0", actual=repr(default_num_clients))


class RuntimeBase:
  """A runtime's `with` block: entered through the context API, nestable and re-entrant."""

  name: str

  def __init__(self, options: RuntimeOptions):
    self.options = options
    self._entered: list[contextlib.AbstractContextManager] = []

  def __enter__(self):
    entered = context.use_runtime(self)
    entered.__enter__()
    self._entered.append(entered)
    return self

  def __exit__(self, *exc) -> None:
    self._entered.pop().__exit__(*exc)


def eval_key(seed: int, call_index: int) -> jax.Array:
  """The base key of a body's `call_index`-th `federated_eval`."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), call_index)


def client_key(key: jax.Array, client: int | jax.Array) -> jax.Array:
  """Client `client`'s key from a server key: the same on every runtime."""
  return jax.random.fold_in(key, client)


class EvalKeys:
  """Counts a body's `federated_eval`s, giving each its base key."""

  def __init__(self, seed: int):
    self.seed = seed
    self.calls = 0

  def next(self) -> jax.Array:
    key = eval_key(self.seed, self.calls)
    self.calls += 1
    return key


NO_CLIENTS_TO_STACK = "to stack (the server would see an empty client axis)"


def require_clients(op: str, n: int,
                    why: str = "to reduce over (a minimum or maximum of nothing is undefined)"
                    ) -> None:
  """Refuses a minimum, maximum or stack over no clients, saying where the client count comes
  from."""
  if n == 0:
    raise errors.error(
        ValueError, op, f"there are no clients {why}.",
        hint="a computation with no argument placed at CLIENTS runs with `default_num_clients`"
        " clients, 0 unless set: fx.runtime.set_default("
        "fx.runtime.vectorized(default_num_clients=N)), or TFF's "
        "fx.backends.native.set_sync_local_cpp_execution_context(default_num_clients=N)")
