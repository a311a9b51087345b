"""The process both discretization factories build: client values scaled by `1 / step_size`
and rounded to int32 levels, an inner aggregation of the levels, the total scaled back."""

from __future__ import annotations

import collections
from typing import Callable, Optional

import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.intrinsics import KEY_TYPE
from federax.core.placements import CLIENTS, SERVER
from federax.templates._naming import named
from federax.templates.measured_process import MeasuredProcessOutput
from federax.aggregators import _compression_utils as cu
from federax.aggregators.factory import AggregationFactory, AggregationProcess

FLOAT = t.TensorType(np.float32)

# `rounding(scaled tensors, step_size, prior_norm_bound, key) -> rounded float32 tensors`;
# the deterministic rounding reads only the first.
Rounding = Callable[[list, object, object, object], list]


def check_float_tensors(name: str, value_type: t.Type) -> list[t.TensorType]:
  return cu.check_tensors(f"{name}.create", value_type, kinds="f", what="floating point",
                          hint="discretization maps floats to integers; cast the values to "
                          "float32 first")


def reconstruct(levels, step_size, dtype):
  """The values int32 `levels` stand for: `float32(levels) * step_size` in `dtype`."""
  return (levels.astype(jnp.float32) * step_size).astype(dtype)


def discretization_process(name: str, measurement: str, inner_factory: AggregationFactory,
                           distortion_factory: Optional[AggregationFactory], value_type: t.Type,
                           step_size: float, rounding: Rounding, *,
                           stochastic: Optional[tuple[float, int]] = None) -> AggregationProcess:
  """The discretization process (see the factories' docstrings).

  State: `<step_size=float32,inner_agg_process=...>`; with `stochastic=(prior_norm_bound,
  seed)` also `prior_norm_bound=float32` (0: none) after `step_size` and `key=uint32[2]` last,
  each client rounding with its own key from the round's. Measurements:
  `<{measurement}=inner measurements[,distortion=...]>`.
  """
  leaf_types = check_float_tensors(name, value_type)

  def discretize_leaves(value, step_size, prior_norm_bound, key):
    leaves = cu.flatten(value, value_type)
    scaled = [x.astype(jnp.float32) / step_size for x in leaves]
    levels = [r.astype(jnp.int32) for r in rounding(scaled, step_size, prior_norm_bound, key)]
    # TFF's distortion: the mean squared error, over all elements, of the value the server
    # reconstructs from the levels against the input.
    errors = [jnp.reshape(reconstruct(q, step_size, x.dtype) - x, [-1]).astype(jnp.float32)
              for q, x in zip(levels, leaves)]
    return cu.unflatten(levels, value_type), jnp.mean(jnp.square(jnp.concatenate(errors)))

  if stochastic is None:
    @computation(value_type, FLOAT)
    def discretize(value, step_size):
      return discretize_leaves(value, step_size, None, None)
  else:
    @computation(value_type, FLOAT, FLOAT, KEY_TYPE)
    def discretize(value, step_size, prior_norm_bound, key):
      return discretize_leaves(value, step_size, prior_norm_bound, key)

  levels_type = discretize.type_signature.result[0]

  @computation(levels_type, FLOAT)
  def undiscretize(levels, step_size):
    return cu.unflatten([reconstruct(x, step_size, ts.dtype) for x, ts in
                         zip(cu.flatten(levels, levels_type), leaf_types)], value_type)

  inner = inner_factory.create(levels_type)
  first_key = None if stochastic is None else cu.initial_key(stochastic[1], name)
  distortion = None if distortion_factory is None else distortion_factory.create(FLOAT)

  @federated_computation
  @named(f"{name}.create(value_type).initialize")
  def initialize():
    state = collections.OrderedDict(step_size=fi.federated_value(np.float32(step_size), SERVER))
    if stochastic is not None:
      state["prior_norm_bound"] = fi.federated_value(np.float32(stochastic[0]), SERVER)
    state["inner_agg_process"] = inner.initialize()
    if stochastic is not None:
      state["key"] = fi.federated_value(first_key, SERVER)
    return fi.federated_zip(state)

  @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS))
  @named(f"{name}.create(value_type).next")
  def next_fn(state, value):
    step = state["step_size"]
    new_state = collections.OrderedDict(step_size=step)
    arguments = [value, fi.federated_broadcast(step)]
    if stochastic is not None:
      new_state["prior_norm_bound"] = state["prior_norm_bound"]
      next_key, round_key = fi.federated_map(cu.split_round_key, state["key"])
      arguments += [fi.federated_broadcast(state["prior_norm_bound"]),
                    fi.federated_client_keys(round_key)]
    levels, client_distortion = fi.federated_map(discretize, tuple(arguments))
    inner_out = inner.next(state["inner_agg_process"], levels)
    new_state["inner_agg_process"] = inner_out.state
    if stochastic is not None:
      new_state["key"] = next_key
    measurements = collections.OrderedDict([(measurement, inner_out.measurements)])
    if distortion is not None:
      measurements["distortion"] = distortion.next(distortion.initialize(),
                                                   client_distortion).result
    return MeasuredProcessOutput(
        state=fi.federated_zip(new_state),
        result=fi.federated_map(undiscretize, (inner_out.result, step)),
        measurements=fi.federated_zip(measurements))

  return AggregationProcess(initialize, next_fn)
