"""The noising step of distributed DP: each client checks its integer record's norm bounds and
adds its share of discrete noise; the records are summed securely modulo `2**bits`."""

from __future__ import annotations

import collections
import math
from typing import Optional

import jax
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
from federax.aggregators import _discrete_gaussian, _skellam
from federax.aggregators.factory import AggregationProcess, UnweightedAggregationFactory
from federax.aggregators.modular_clipping import (ModularClippingSumFactory,
                                                  estimate_wrapped_gaussian_stddev)
from federax.aggregators.secure import SecureModularSumFactory

SAMPLERS = {"distributed_dgauss": _discrete_gaussian.sample,
            "distributed_skellam": _skellam.sample}


class DistributedNoiseSumFactory(UnweightedAggregationFactory):
  """tfp's `DistributedDiscreteGaussianSumQuery` / `DistributedSkellamSumQuery` in TFF's
  `DifferentiallyPrivateFactory`, over TFF's modular clipping and secure sum.

  Each client's int32 record (all its tensors as one vector) is checked against the query's
  L2 bound (and L1 bound for Skellam); a record over a bound is replaced by zeros, so one
  client never moves the sum by more than the bounds the privacy analysis assumes (tfp raises
  instead; a compiled program cannot, and distributed DP never produces one). Each client adds
  noise of `local_stddev` from its key (`fold_in(round_key, client)`, tensor `j` with
  `fold_in(client_key, j)`), wraps the result into `[-2**(bits-1), 2**(bits-1))`, and the
  records are summed with `fx.federated_secure_modular_sum` modulo `2**bits` (TFF's two nested
  `ModularClippingSumFactory`s with the inner one then a no-op, as TFF notes) and read back
  into that range.

  The server sees only the wrapped sum; a sum whose elements left the range wrapped silently.
  `estimated_modclip_prob` estimates how likely each element was to wrap: the wrapped sum's
  elements are taken as a wrapped normal sample (`estimate_wrapped_gaussian_stddev`, the
  spread the rotation makes them have), `s` its standard deviation, and the probability is
  `erfc(2**(bits-1) / (sqrt(2) s))`, comparable to the factory's `modclip_prob`.

  State: `<query_state=<[l1_norm_bound=int32,]l2_norm_bound=float32,local_stddev=float32,
  noise_key=uint32[2]>,agg_state=<>,is_init_state=bool>` (TFF's `DPAggregatorState` without
  `dp_event`; the bounds and the stddev are read from the state every round, so the outer
  factory may retune them). Measurements: `<dp_query_metrics=<>,dp=<modclip=<>>,
  estimated_modclip_prob=float32>`.
  """

  def __init__(self, mechanism: str, l1_norm_bound: int, l2_norm_bound: float,
               local_stddev: float, bits: int, seed: int):
    self._mechanism = mechanism
    self._l1_norm_bound = int(l1_norm_bound)
    self._l2_norm_bound = float(l2_norm_bound)
    self._local_stddev = float(local_stddev)
    self._bits = bits
    self._key = cu.initial_key(seed, type(self).__name__)

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    name = type(self).__name__
    cu.check_tensors(f"{name}.create", value_type, kinds="i", what="signed integers")
    skellam = self._mechanism == "distributed_skellam"
    sampler = SAMPLERS[self._mechanism]
    half_range = 2**(self._bits - 1)
    inner = ModularClippingSumFactory(-half_range, half_range,
                                      SecureModularSumFactory(2**self._bits)).create(value_type)
    query_state = collections.OrderedDict()
    if skellam:
      query_state["l1_norm_bound"] = np.int32(self._l1_norm_bound)
    query_state["l2_norm_bound"] = np.float32(self._l2_norm_bound)
    query_state["local_stddev"] = np.float32(self._local_stddev)
    query_state["noise_key"] = self._key

    @computation
    def initial_query_state():
      return query_state

    query_state_type = initial_query_state.type_signature.result

    @computation(query_state_type)
    def params_and_keys(state):
      next_key, round_key = jax.random.split(state["noise_key"])
      params = tuple(v for k, v in state.items() if k != "noise_key")
      return params, round_key, collections.OrderedDict(
          [(k, next_key if k == "noise_key" else v) for k, v in state.items()])

    @computation(value_type, params_and_keys.type_signature.result[0], KEY_TYPE)
    def noised_record(value, params, key):
      leaves = cu.flatten(value, value_type)
      floats = [jnp.reshape(x, [-1]).astype(jnp.float32) for x in leaves]
      l2 = jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in floats))
      within = l2 <= params[-2]
      if skellam:  # In float32, which cannot overflow (tfp's int32 sum can).
        l1 = sum(jnp.sum(jnp.abs(x)) for x in floats)
        within = within & (l1 <= params[0].astype(jnp.float32))
      stddev = params[-1]
      noised = [jnp.where(within, x, 0) + sampler(jax.random.fold_in(key, j), x.shape,
                                                  stddev).astype(x.dtype)
                for j, x in enumerate(leaves)]
      return cu.unflatten(noised, value_type)

    @computation(value_type)
    def modclip_prob(total):
      stddev = estimate_wrapped_gaussian_stddev(cu.flatten(total, value_type), -half_range,
                                                half_range)
      return jax.lax.erfc(jnp.float32(half_range / math.sqrt(2.0)) / stddev)

    @federated_computation
    @named(f"{name}.create(value_type).initialize")
    def initialize():
      return fi.federated_zip(collections.OrderedDict(
          query_state=fi.federated_eval(initial_query_state, SERVER),
          agg_state=inner.initialize(),
          is_init_state=fi.federated_value(np.bool_(True), SERVER)))

    @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS))
    @named(f"{name}.create(value_type).next")
    def next_fn(state, value):
      params, round_key, query_state = fi.federated_map(params_and_keys, state.query_state)
      noised = fi.federated_map(noised_record, (value, fi.federated_broadcast(params),
                                                fi.federated_client_keys(round_key)))
      inner_out = inner.next(state.agg_state, noised)
      return MeasuredProcessOutput(
          state=fi.federated_zip(collections.OrderedDict(
              query_state=query_state, agg_state=inner_out.state,
              is_init_state=fi.federated_value(np.bool_(False), SERVER))),
          result=inner_out.result,
          measurements=fi.federated_zip(collections.OrderedDict(
              dp_query_metrics=fi.federated_value((), SERVER), dp=inner_out.measurements,
              estimated_modclip_prob=fi.federated_map(modclip_prob, inner_out.result))))

    return AggregationProcess(initialize, next_fn)
