"""How one call runs on the vectorized runtime: decided in one place, frozen, printable.

Every choice that shapes the compiled program is made here from the runtime's options, the
backend and the call: how a sequence reduction loops, how `federated_map` runs the clients,
how sequences are bucketed, whether large cohorts stream, whether the client axis is sharded,
and whether XLA:CPU rewrites apply. A call under a JAX transformation (`jax.jit`, `grad`,
`vmap` of a user's function) gets a *differentiable* plan: masked `scan`s, no host reads, no
rewrites, so reverse-mode differentiation sees only differentiable loops.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, NamedTuple, Optional

import jax
import numpy as np
from jax.extend import core as jex
from jax.extend.core import jaxprs_in_params
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from federax.core import types as t
from federax.core.placements import SERVER
from federax.runtime.vectorized.reductions import LOOP_MIN_ROW

SEQUENCE_LOOPS = ("auto", "while", "scan", "unroll")
CLIENT_LOOPS = ("auto", "vmap", "map")
MAP_FLOPS = 2**18
"""Per-step floating-point operations from which, on CPU, clients run one after another."""


@dataclasses.dataclass(frozen=True)
class Plan:
  """The decisions for one call; also the key of its compiled program.

  Attributes:
    backend: the JAX backend ("cpu", "gpu", "tpu").
    clients: the number of clients of the call (None: a local computation).
    sequence_loop: "while" (a rolled loop over the real elements), "scan" (a masked scan over
      the padded elements) or "unroll" (that scan unrolled).
    client_loop: "vmap", "map" (one client after another), or "auto": per `federated_map`,
      "map" on CPU when a client's step convolves or does at least `map_flops`.
    map_flops: the per-step flops from which "auto" runs clients one after another.
    chunk_size: vmapped clients per chunk, and streamed clients per read (None: unchunked).
    per_doubling: padded sequence lengths per doubling (`padding.bucket`); 1 (powers of two)
      where padding costs memory only (a loop over the real elements), else 8.
    grow_only: sequences are padded to at least the longest length this runtime has padded
      that type to, so a run compiles a bounded number of programs (padding costs memory only).
    stream: large cohorts of client datasets are read by the program a chunk at a time.
    shard: the number of devices the client axis is sharded over (1: none).
    cpu_rewrites: rolled loops get convolutions in the layout XLA:CPU runs fast in loops.
    differentiable: called under a JAX transformation (see the module's docstring).
    client_mask: the client axis is padded to `clients` (`cohort_padding`): the program takes
      a bool client mask `[clients]` beside its argument.
  """

  backend: str
  clients: Optional[int]
  sequence_loop: str
  client_loop: str
  map_flops: float
  chunk_size: Optional[int]
  per_doubling: int
  grow_only: bool
  stream: bool
  shard: int
  cpu_rewrites: bool
  differentiable: bool
  client_mask: bool = False

  def client_loop_for(self, cost: Cost, reductions: Optional[Reductions] = None
                      ) -> tuple[str, str]:
    """("vmap" or "map", why) for a `federated_map` whose client step costs `cost` and makes
    the `reductions`."""
    if self.client_loop != "auto":
      return self.client_loop, "client_loop option"
    if self.backend != "cpu":
      return "vmap", f"{self.backend} backend"
    if cost.convolves:
      return "map", "convolves on CPU (vmap makes a grouped convolution)"
    if cost.flops >= self.map_flops:
      return "map", f"{cost.flops:.3g} flops per step >= {self.map_flops:.3g} on CPU"
    if reductions is not None and reductions.rereads >= 2 and reductions.result < LOOP_MIN_ROW:
      # Vmapped, each reduction is its own pass over every client's values (XLA:CPU fuses no
      # sibling reductions); one client after another, its values are read by all of them
      # while they are in cache: the L2 and L-inf norms of 100 clients' 800K-element rows take
      # 34 ms instead of 67 on 2 cores (each row reduced as the sequential runtime reduces it).
      return "map", (f"{reductions.rereads} reductions of >= {LOOP_MIN_ROW} elements read one "
                     f"argument, to results of {reductions.result} elements, on CPU")
    return "vmap", f"{cost.flops:.3g} flops per step < {self.map_flops:.3g}"

  def __str__(self) -> str:
    lines = [f"{f.name}: {getattr(self, f.name)}" for f in dataclasses.fields(self)]
    return "Plan(\n  " + "\n  ".join(lines) + "\n)"


def decide(options, *, clients: Optional[int], streams_possible: bool,
           differentiable: bool) -> Plan:
  """The plan for a call on a runtime with `options` (a `VectorizedRuntime`'s settings).

  `streams_possible`: the call's result holds no client sequences (streamed clients are read
  by the program and cannot be returned).
  """
  backend = jax.default_backend()
  devices = len(jax.devices())
  shard = devices if (options.shard and devices > 1 and clients and not clients % devices
                      and not differentiable) else 1
  if differentiable:
    sequence_loop = "scan"  # A while loop with a traced trip count has no reverse derivative.
  elif options.sequence_loop == "auto":
    sequence_loop = "while" if backend == "cpu" else "scan"
  else:
    sequence_loop = options.sequence_loop
  client_loop = options.client_loop
  if client_loop == "auto" and backend != "cpu":
    client_loop = "vmap"
  return Plan(
      backend=backend, clients=clients, sequence_loop=sequence_loop, client_loop=client_loop,
      map_flops=MAP_FLOPS, chunk_size=options.chunk_size,
      per_doubling=1 if sequence_loop == "while" else 8,
      grow_only=sequence_loop == "while",
      # Every device would read its own clients: streaming is for one device.
      stream=(options.chunk_size is not None and streams_possible and not differentiable
              and not (options.shard and devices > 1)),
      shard=shard,
      cpu_rewrites=backend == "cpu" and not differentiable,
      differentiable=differentiable)


def place(payload: Any, ts: Optional[t.Type], plan: Plan) -> Any:
  """`payload` (of type `ts`) with its client-axis leaves sharded over the plan's first
  `plan.shard` devices and its other leaves replicated on them; unchanged when `plan.shard < 2`.
  """
  if plan.shard < 2 or ts is None:
    return payload
  mesh = Mesh(np.array(jax.devices()[:plan.shard]), ("clients",))
  by_client = NamedSharding(mesh, PartitionSpec("clients"))
  replicated = NamedSharding(mesh, PartitionSpec())

  def put(p, pt):
    if isinstance(pt, t.FederatedType):
      sharding = replicated if pt.all_equal or pt.placement is SERVER else by_client
      return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), p)
    if isinstance(pt, t.StructType) and isinstance(p, tuple):
      return tuple(put(e, et) for e, et in zip(p, pt))
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, replicated), p)

  return put(payload, ts)


class Cost(NamedTuple):
  flops: float
  convolves: bool


_REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "reduce_prod",
                         "reduce_and", "reduce_or", "argmax", "argmin"})


class Reductions(NamedTuple):
  """What a client's step reduces: `rereads`, the most wide reductions (of at least
  `LOOP_MIN_ROW` elements, the width from which client-axis reductions loop) that read values
  computed elementwise from one same argument; `result`, the most elements of any one of the
  step's results."""

  rereads: int
  result: int


def step_reductions(jaxpr, result_shapes) -> Reductions:
  """The `Reductions` of a client step's `jaxpr` with results of `result_shapes` (a pytree of
  shaped values). Reductions inside a called jaxpr (`pjit`) count; inside a loop or a
  conditional they do not."""
  reads: collections.Counter = collections.Counter()

  def visit(jaxpr, sources: dict) -> None:
    for eqn in jaxpr.eqns:
      inputs = [sources.get(v, frozenset()) for v in eqn.invars if isinstance(v, jex.Var)]
      if (eqn.primitive.name in _REDUCTIONS and isinstance(eqn.invars[0], jex.Var)
          and np.prod(eqn.invars[0].aval.shape) >= LOOP_MIN_ROW):
        reads.update(sources.get(eqn.invars[0], ()))
      for sub in jaxprs_in_params(eqn.params):
        if len(sub.invars) == len(eqn.invars):  # A call (pjit): its arguments are the eqn's.
          visit(sub, {sv: sources.get(v, frozenset()) for sv, v in zip(sub.invars, eqn.invars)
                      if isinstance(v, jex.Var)})
      union = frozenset().union(*inputs)
      for v in eqn.outvars:
        sources[v] = union

  visit(jaxpr, {v: frozenset([i]) for i, v in enumerate(jaxpr.invars)})
  sizes = [int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(result_shapes)]
  return Reductions(max(reads.values(), default=0), max(sizes, default=0))


def step_cost(jaxpr) -> Cost:
  """Matmul and convolution flops of `jaxpr`, each loop body counted once (one step)."""
  flops, convolves = 0.0, False
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      flops += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[d] for d in contract])
    elif name == "conv_general_dilated":
      convolves = True
      rhs = eqn.invars[1].aval.shape
      out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
      flops += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod(rhs) / out_features
    for sub in jaxprs_in_params(eqn.params):
      inner = step_cost(sub)
      flops, convolves = flops + inner.flops, convolves or inner.convolves
  return Cost(flops, convolves)
