"""The sequential runtime: eager Python, one call per client; the reference and the debugger.

Client values are Python lists, sequences are lists of elements, nothing is padded. With
`jit=False`, local computations run op by op, so `print` and `breakpoint()` inside them see
concrete arrays; a local computation that takes a sequence always does (its `reduce` is a
Python loop over the real elements, and iterating it is exact).
"""

from __future__ import annotations

import functools
import weakref
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import context
from federax.core import types as t
from federax.core.execution import Execution
from federax.core.placements import SERVER
from federax.core.values import Value, constant_payload
from federax.runtime import _convert, _invoke, host, xla_options
from federax.runtime._base import (NO_CLIENTS_TO_STACK, EvalKeys, RuntimeBase, RuntimeOptions,
                                   client_key, require_clients)
from federax.runtime.padding import zeros_like_type


def _tree_add(a, b):
  return jax.tree_util.tree_map(jnp.add, a, b)


class _Lists:
  """Sequential representation: clients and sequences are Python lists."""

  def whole_clients(self, values: list, member_type: t.Type, where: str, op: str) -> None:
    return None

  def clients(self, members: list, member_type: t.Type, where: str, values: list) -> list:
    return members

  def sequence(self, elements: Any, seq_type: t.SequenceType, where: str) -> list:
    if isinstance(elements, list):
      return elements
    return [_convert.local(e, seq_type.element, f"{where}[element {i}]", "dataset")
            for i, e in enumerate(elements)]

  def client_list(self, payload: Any, member_type: t.Type, n: int) -> list:
    return list(payload)

  def sequence_list(self, payload: Any, seq_type: t.SequenceType) -> list:
    return list(payload)


class SequentialRuntime(RuntimeBase):
  """Runs federated computations client by client in Python.

  Args:
    jit: jit each local computation (one compiled call per client); False runs them
      eagerly for debugging.
    seed: the seed of `federated_eval`'s PRNG keys.
    default_num_clients: the number of clients when no argument is placed at CLIENTS.

  Example:
    >>> @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
    ... def total(values):
    ...   return fx.federated_sum(values)
    >>> with fx.runtime.sequential(jit=False):  # `print` and `breakpoint()` work in the body.
    ...   print(total([1.0, 2.0, 3.5]))
    6.5
  """

  name = "sequential"

  def __init__(self, *, jit: bool = True, seed: int = 0, default_num_clients: Optional[int] = None):
    super().__init__(RuntimeOptions(seed=seed, default_num_clients=default_num_clients))
    self.jit = jit
    self._jitted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

  def __repr__(self) -> str:
    return f"fx.runtime.sequential(jit={self.jit}, {self.options})"

  def _local_function(self, concrete, payload):
    if not self.jit or concrete.takes_sequences:
      # A Python loop over a list of elements, jitted, would unroll over every element (and
      # compile once per length): it runs eagerly, so iterating its sequences stays exact.
      return concrete
    nested = _convert.is_traced(payload)  # Under the user's JAX transformation.
    programs = self._jitted.setdefault(concrete, {})
    if nested not in programs:
      programs[nested] = xla_options.jit(concrete, nested=nested)
    return programs[nested]

  def invoke(self, comp, args: tuple, kwargs: dict) -> Any:
    signature, python_arg, concrete = _invoke.bind(comp, args, kwargs)
    rep = _Lists()
    payload, n = _invoke.convert_argument(comp, signature, python_arg, rep)
    if concrete is not None:
      out = (host.call(concrete, payload, rep) if concrete.on_host else
             self._local_function(concrete, payload)(payload))
      return _convert.to_python(out, signature.result, rep, 0)
    n = self.options.num_clients(n)
    execution = SequentialExecution(self, n)
    with context.use_execution(execution):
      arg = None if signature.parameter is None else Value(signature.parameter, payload)
      result = comp.run_body(arg)
    return _convert.to_python(result.payload, signature.result, rep, n)


class SequentialExecution(Execution):
  """Carries out intrinsics on Python lists, one client at a time.

  A client value is a list of `n` members; an all-equal one (`T@CLIENTS`) is its one member.
  Host computations (on strings) run in Python; the others are jitted, one call per client.
  """

  _rep: _convert.Representation = _Lists()  # The form of a host computation's result.

  def __init__(self, runtime: SequentialRuntime, n: int):
    self.runtime = runtime
    self.n = n
    self._eval_keys = EvalKeys(runtime.options.seed)

  def constant(self, obj: Any, value_type: t.Type) -> Any:
    return constant_payload(obj, value_type)

  def project(self, payload, ts: t.FederatedType, index: int):
    if ts.placement is SERVER or ts.all_equal:
      return payload[index]
    return [p[index] for p in payload]

  def call_local(self, concrete, payload):
    if concrete.on_host:
      return host.call(concrete, payload, self._rep)
    return self.runtime._local_function(concrete, payload)(payload)

  def call_federated(self, comp, arg):
    return comp.run_body(arg)

  def broadcast(self, payload):
    return payload

  def federated_eval(self, member_fn, placement, takes_key: bool):
    base = self._eval_keys.next()
    if placement is SERVER:
      return member_fn(base if takes_key else None)
    if takes_key:
      return [member_fn(client_key(base, i)) for i in range(self.n)]
    return [member_fn(None) for _ in range(self.n)]

  def client_keys(self, key):
    return [client_key(key, i) for i in range(self.n)]

  def map_clients(self, member_fn, payload, all_equal: bool):
    if all_equal:
      return [member_fn(payload) for _ in range(self.n)]
    return [member_fn(p) for p in payload]

  def zip_clients(self, payloads, all_equal_flags):
    return [tuple(p if eq else p[i] for p, eq in zip(payloads, all_equal_flags))
            for i in range(self.n)]

  def _members(self, payload, ts: t.FederatedType) -> list:
    return [payload] * self.n if ts.all_equal else list(payload)

  def federated_sum(self, payload, ts):
    return functools.reduce(_tree_add, self._members(payload, ts), zeros_like_type(ts.member))

  def federated_mean(self, payload, ts, weight, weight_type):
    members = self._members(payload, ts)
    weights = ([1.0] * self.n if weight is None else
               [weight] * self.n if weight_type.all_equal else list(weight))
    # From zeros, as the vectorized runtime's sums: no clients give 0 / 0 (NaN), not a crash.
    total = functools.reduce(jnp.add, [jnp.asarray(w, jnp.float32) for w in weights],
                             jnp.float32(0.0))
    weighted = [jax.tree_util.tree_map(lambda x, w=w: x * jnp.asarray(w, x.dtype), m)
                for m, w in zip(members, weights)]
    summed = functools.reduce(_tree_add, weighted, zeros_like_type(ts.member))
    return jax.tree_util.tree_map(lambda s: (s / total.astype(s.dtype)).astype(s.dtype), summed)

  def federated_min(self, payload, ts):
    require_clients("federated_min", self.n)
    return functools.reduce(lambda a, b: jax.tree_util.tree_map(jnp.minimum, a, b),
                            self._members(payload, ts))

  def federated_max(self, payload, ts):
    require_clients("federated_max", self.n)
    return functools.reduce(lambda a, b: jax.tree_util.tree_map(jnp.maximum, a, b),
                            self._members(payload, ts))

  def federated_stack(self, payload, ts):
    require_clients("federated_stack", self.n, NO_CLIENTS_TO_STACK)
    return jax.tree_util.tree_map(lambda *members: jnp.stack(members),
                                  *self._members(payload, ts))

  def federated_aggregate(self, payload, ts, zero, accumulate, merge, report):
    acc = zero
    for member in self._members(payload, ts):
      acc = accumulate((acc, member))
    return report(acc)

  def federated_secure_sum_bitwidth(self, payload, ts, bits):
    members = self._members(payload, ts)
    for i, member in enumerate(members):
      jax.tree_util.tree_map(
          lambda x, b, i=i: _check_range(np.asarray(x), 0, 2**b - 1, f"client {i}",
                                         "federated_secure_sum_bitwidth"),
          member, _broadcast_static(bits, member))
    sums = functools.reduce(
        lambda a, b: jax.tree_util.tree_map(lambda x, y: x + y, a, b),
        [jax.tree_util.tree_map(lambda x: np.asarray(x, np.int64), m) for m in members])
    return jax.tree_util.tree_map(lambda s, z: _fits(s, z.dtype), sums, zeros_like_type(ts.member))

  def federated_secure_modular_sum(self, payload, ts, modulus):
    members = self._members(payload, ts)
    total = zeros_like_type(ts.member)
    total = jax.tree_util.tree_map(lambda z: np.asarray(z, np.int64), total)
    mods = _broadcast_static(modulus, total)
    for member in members:
      total = jax.tree_util.tree_map(lambda a, x, m: (a + np.mod(np.asarray(x, np.int64), m)) % m,
                                     total, member, mods)
    return jax.tree_util.tree_map(lambda s, z: jnp.asarray(s, z.dtype), total, zeros_like_type(ts.member))

  def federated_select(self, keys, max_key, server_val, select_fn):
    out = []
    for i, client_keys in enumerate(keys):
      client_keys = np.asarray(client_keys)
      _check_range(client_keys, 0, int(max_key) - 1, f"client {i}", "federated_select")
      out.append([select_fn((server_val, np.int32(k))) for k in client_keys])
    return out

  def sequence_map(self, fn, seq):
    return [fn(e) for e in seq]

  def sequence_reduce(self, seq, zero, step):
    acc = zero
    for element in seq:
      acc = step((acc, element))
    return acc

  def sequence_sum(self, seq, element_type):
    return functools.reduce(_tree_add, seq, zeros_like_type(element_type))


def _broadcast_static(static, like):
  """A static int (or a structure of them) laid out like the payload `like`."""
  if isinstance(static, int):
    return jax.tree_util.tree_map(lambda _: static, like)
  return static


def _check_range(x: np.ndarray, low: int, high: int, who: str, op: str) -> None:
  if x.size and (x.min() < low or x.max() > high):
    bad = x[(x < low) | (x > high)].ravel()[:5]
    raise ValueError(f"{op}: {who} holds values {bad.tolist()} outside [{low}, {high}].")


def _fits(total: np.ndarray, dtype: np.dtype):
  info = np.iinfo(dtype)
  if total.min(initial=0) < info.min or total.max(initial=0) > info.max:
    raise OverflowError(f"federated_secure_sum_bitwidth: the sum {total} overflows {dtype}; use "
                        "a wider integer type (enable jax_enable_x64 for int64) or fewer bits.")
  return jnp.asarray(total, dtype)
