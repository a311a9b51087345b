"""`LocalDpFactory`: local differential privacy, each client clipping its value and adding its
own Gaussian noise before the value leaves it; the server aggregates the noised values."""

from __future__ import annotations

import collections
from typing import Any, Optional

import jax
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.intrinsics import KEY_TYPE
from federax.core.placements import CLIENTS, SERVER
from federax.templates._naming import named
from federax.templates.measured_process import MeasuredProcessOutput
from federax.aggregators import _compression_utils as cu
from federax.aggregators import _gaussian
from federax.aggregators import quantile_estimation as qe
from federax.aggregators.differential_privacy import _check
from federax.aggregators.factory import (AggregationFactory, AggregationProcess,
                                         UnweightedAggregationFactory, check_float_value)
from federax.aggregators.mean import UnweightedMeanFactory

_NAME = "LocalDpFactory"
FLOAT = t.TensorType(np.float32)
_WEIGHTS_REFUSED = ("a client's weight (e.g. its example count) would reach the server "
                    "unnoised, and local DP protects only the noised value")


class LocalDpFactory(UnweightedAggregationFactory):
  """Local differential privacy: every client clips its value to the L2 norm `clip` (all its
  tensors as one vector) and adds Gaussian noise `N(0, (noise_multiplier * clip)^2 I)` itself;
  the inner factory (default `UnweightedMeanFactory()`) aggregates the noised values.

  For comparison with central DP (`DifferentiallyPrivateFactory.gaussian_fixed`, one noise
  draw at the server): the server, even an adversarial one, sees only noised values, but the
  mean of `n` clients carries noise of standard deviation `noise_multiplier * clip /
  sqrt(n)`, where central DP's is `noise_multiplier * clip / n`. TFF has no local DP factory.

  Client `i` draws from `fold_in(round_key, i)` (`fx.federated_client_keys`), tensor `j` of its
  value from `fold_in(client_key, j)` (float32, cast to the tensor's dtype), the round key split
  from the state's each round: a seed replays a run bit for bit on every runtime. Nothing else
  computed from a client's raw value leaves the client (no clipped count: it would be an
  unnoised release).

  State `<l2_norm_clip=float32,stddev=float32,noise_key=uint32[2],inner_agg_process=..>`;
  measurements `<local_dp=the inner process's>`. Unweighted only: a weight would reach the
  server unnoised.

  Args:
    noise_multiplier: `z` (>= 0), the noise's standard deviation relative to the clip.
    clip: `C` (> 0), the L2 norm bound of one client's value.
    inner_agg_factory: an unweighted factory aggregating the noised values (default the mean).
    seed: the noise's seed (an int), or None (default) for a secret one from the OS.

  Raises:
    TypeError: an argument of the wrong type. ValueError: one out of its range.

  Example:
    >>> factory = fx.aggregators.LocalDpFactory(noise_multiplier=0.0, clip=1.0)
    >>> process = factory.create(fx.TensorType(np.float32, [2]))
    >>> output = process.next(process.initialize(), [[3.0, 4.0], [0.3, 0.4]])
    >>> [round(float(x), 6) for x in output.result]  # ([0.6, 0.8] + [0.3, 0.4]) / 2
    [0.45, 0.6]
  """

  _no_weights_hint = (f"{_WEIGHTS_REFUSED}; aggregate unweighted: create(value_type), in "
                      "training an unweighted algorithm")

  def __init__(self, noise_multiplier: float, clip: float,
               inner_agg_factory: Optional[AggregationFactory] = None, *,
               seed: Optional[int] = None):
    self._noise_multiplier = _check(_NAME, "noise_multiplier", noise_multiplier, "nonnegative")
    self._clip = _check(_NAME, "clip", clip, "positive")
    if inner_agg_factory is None:
      inner_agg_factory = UnweightedMeanFactory()
    self._inner = cu.check_unweighted_inner(_NAME, "inner_agg_factory", inner_agg_factory)
    self._key = qe.seeded_key(qe.noise_seed(_NAME, seed), _NAME)

  def __repr__(self) -> str:
    return f"<{_NAME}(noise_multiplier={self._noise_multiplier}, clip={self._clip})>"

  def dp_event(self) -> Any:
    """One round's release by one client, for a privacy accountant:
    `dp_accounting.GaussianDpEvent(noise_multiplier / 2)`.

    Local DP compares any two values of a client, which differ by up to `2 * clip` (the
    diameter of the clip ball), so the Gaussian's noise multiplier relative to that
    sensitivity is `noise_multiplier / 2`. No amplification: the server sees every client's
    noised value (not only their sum) and knows whom it sampled, so do not wrap the event in a
    sampling event; compose it over the rounds a client takes part in.

    Raises:
      ImportError: `dp_accounting` is not installed (`pip install 'federax[privacy]'`).
    """
    try:
      import dp_accounting  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(f"{_NAME}.dp_event needs the dp-accounting package, an optional "
                        "dependency of federax: pip install 'federax[privacy]'") from e
    return dp_accounting.GaussianDpEvent(self._noise_multiplier / 2)

  def create(self, value_type: Any, weight_type: Any = None) -> AggregationProcess:
    if weight_type is not None:
      raise error(TypeError, f"{_NAME}.create", f"a weighted process cannot be made: "
                  f"{_WEIGHTS_REFUSED}.", actual=f"weight_type {weight_type}",
                  hint="aggregate unweighted: create(value_type)")
    return super().create(value_type)

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    check_float_value(_NAME, value_type, hint="cast the values to float32 first (clipping and "
                      "noise are real-valued)")
    where = f"{_NAME}.create(value_type)"
    inner = self._inner.create(value_type)
    clip, stddev = np.float32(self._clip), np.float32(self._noise_multiplier * self._clip)
    key = self._key

    @computation(FLOAT, FLOAT, value_type, KEY_TYPE)
    def perturb(clip, stddev, value, key):
      clipped, _ = _gaussian.clip(value, clip)
      leaves = cu.flatten(clipped, value_type)
      noised = [x + _gaussian.normal(jax.random.fold_in(key, j), x.shape, stddev, x.dtype)
                for j, x in enumerate(leaves)]
      return cu.unflatten(noised, value_type)

    @federated_computation
    @named(f"{where}.initialize")
    def initialize():
      return fi.federated_zip(collections.OrderedDict(
          l2_norm_clip=fi.federated_value(clip, SERVER),
          stddev=fi.federated_value(stddev, SERVER),
          noise_key=fi.federated_value(key, SERVER), inner_agg_process=inner.initialize()))

    @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS))
    @named(f"{where}.next")
    def next_fn(state, value):
      next_key, round_key = fi.federated_map(cu.split_round_key, state["noise_key"])
      noised = fi.federated_map(perturb, (fi.federated_broadcast(state["l2_norm_clip"]),
                                          fi.federated_broadcast(state["stddev"]), value,
                                          fi.federated_client_keys(round_key)))
      inner_out = inner.next(state["inner_agg_process"], noised)
      return MeasuredProcessOutput(
          state=fi.federated_zip(collections.OrderedDict(
              l2_norm_clip=state["l2_norm_clip"], stddev=state["stddev"], noise_key=next_key,
              inner_agg_process=inner_out.state)),
          result=inner_out.result,
          measurements=fi.federated_zip(collections.OrderedDict(
              local_dp=inner_out.measurements)))

    return AggregationProcess(initialize, next_fn)
