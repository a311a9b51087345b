"""`DistributedDpSumFactory`: distributed differential privacy with secure aggregation (TFF's):
clients clip, rotate, scale, round and add their share of discrete noise; the server sees only
the modular sum."""

from __future__ import annotations

import collections
import math
import numbers
import statistics
import warnings
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error, user_stacklevel
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type
from federax.templates._naming import named
from federax.templates.measured_process import MeasuredProcessOutput
from federax.aggregators import _compression_utils as cu
from federax.aggregators import quantile_estimation as qe
from federax.aggregators.concat import concat_factory
from federax.aggregators.differential_privacy import (WEIGHTS_HINT, WEIGHTS_REFUSED,
                                                      adaptive_clip_noise_params)
from federax.aggregators.factory import AggregationProcess, UnweightedAggregationFactory
from federax.aggregators._distributed_noise import DistributedNoiseSumFactory
from federax.aggregators.robust import clipping_factory
from federax.aggregators.rotation import (DiscreteFourierTransformFactory,
                                          HadamardTransformFactory)
from federax.aggregators.secure import SecureSumFactory
from federax.aggregators.stochastic_discretization import (StochasticDiscretizationFactory,
                                                           inflated_l2_norm_bound)

_NAME = "DistributedDpSumFactory"
DP_MECHANISMS = ("distributed_dgauss", "distributed_skellam")
ROTATION_TYPES = ("hd", "dft")
# TFF's cap on the scale: larger ones overflow the scaled norm bounds in int32 and gain nothing.
MAX_SCALE_FACTOR = 1e6
# The norm bounds' leeway for float32 rounding in the clipping and rounding: TFF's 1e-5, times
# the clip when it exceeds 1 (float32's rounding grows with the norm; TFF's absolute leeway
# lets conditionally rounded values of norm ~100 fail its check).
_NORM_LEEWAY = 1e-5
_L1_CAP = 2**31 - 128  # The largest float32 below 2^31: the int32 L1 bound's cap.


class DistributedDpSumFactory(UnweightedAggregationFactory):
  """Distributed DP sum with secure aggregation (TFF's `DistributedDpSumFactory`).

  Clients add the noise, not the server: each client's value (all its tensors as one vector
  of `d` elements) is
    1. rotated (`rotation_type`: 'hd', randomized Hadamard, `d` padded to a power of two, or
       'dft', randomized Fourier, `d` padded to an even number), spreading it over all
       elements;
    2. clipped to the L2 norm `l2_clip` (adaptively with `auto_l2_clip`);
    3. scaled by `scale` and stochastically rounded to int32 (conditionally on the norm when
       `beta > 0`, arXiv:2102.06387 Sec. 4.1), which inflates the norm bound to
       `scaled_inflated_l2` (and an L1 bound `ceil(L2 * min(sqrt(d), L2))` for Skellam);
    4. noised by the client with its share: discrete Gaussian ('distributed_dgauss', Kairouz,
       Liu & Steinke 2021) or Skellam ('distributed_skellam', Agarwal, Kairouz & Liu 2021) of
       standard deviation `scale * sigma`, `sigma = noise_multiplier * l2_clip / sqrt(n)` for
       `n = expected_clients_per_round` (the `n` Skellam shares sum to a Skellam of the central
       variance; the discrete Gaussian shares to nearly a discrete Gaussian);
    5. wrapped into `[-2**(bits-1), 2**(bits-1))` and summed with
       `fx.federated_secure_modular_sum` modulo `2**bits`.
  The server divides the sum by `scale` and inverts the rotation. `scale` is TFF's heuristic,
  `sqrt(2**(2 bits) - n k^2) / (2k sqrt(l2_clip^2 n^2 / d + n sigma^2))` (at most 10^6): `k`
  standard deviations of the noised, rounded sum's elements fit the range, `k` the normal
  quantile of `modclip_prob` (arXiv:2102.06387 Sec. 4.2-4.4).

  Without noise the result is the sum of the clipped values up to the rounding: within
  `n sqrt(d_padded) / scale` in L2 norm for `n` clients (each element of a rounded value is
  off by less than one level). An element of the sum that leaves the range wraps: it happens
  with probability about `modclip_prob` when as many clients take part as expected, and is
  reported by the measurement `estimated_modclip_prob` (more clients than expected, or larger
  values than the clip allows, raise it).

  With `auto_l2_clip` the clip follows the `auto_l2_target_quantile` of the clients' norms
  (Andrew et al. 2021, geometric), estimated from a count with Gaussian noise of
  `auto_l2_clip_count_stddev` (default `0.05 * expected_clients_per_round`) summed securely;
  the values' noise multiplier is raised so that both releases together have
  `noise_multiplier` (TFF's `adaptive_clip_noise_params`), and after every round the scale,
  the bounds and the noise are recomputed for the new clip.

  Randomness: the rotation, the rounding and the noise each draw from their own key in the
  state, all from `seed`; each client draws its rounding and noise from
  `fold_in(round_key, client)`. The same seed gives bit-identical results on every runtime;
  the default `seed=None` draws a secret seed from the operating system.

  State (TFF's nesting, as far as JAX allows): `<<clipping_norm=..,inner_agg=<step_size,
  prior_norm_bound,inner_agg_process=<query_state=<[l1_norm_bound,]l2_norm_bound,local_stddev,
  noise_key>,agg_state=<>,is_init_state>,key>,clipped_count_agg=<>>,key>` (TFF's discretization
  keeps `scale_factor`, federax's `StochasticDiscretizationFactory` its inverse `step_size`;
  TFF's `dp_event` strings are not JAX values: `dp_event()` gives the event). Measurements,
  TFF's: `<l2_clip,scale_factor,scaled_inflated_l2,scaled_local_stddev,actual_num_clients,
  padded_dim,dp_query_metrics=<>>`, plus `estimated_modclip_prob` (how likely an element of
  the sum was to wrap, estimated from the wrapped sum's spread), all of the round just run.

  Args:
    noise_multiplier: the central noise's stddev over `l2_clip` (>= 0; 0 adds no noise).
    expected_clients_per_round: `n`, an int >= 1: each client adds `1/n` of the variance.
    bits: the modular sum's bit width, an int in [1, 22] (float32 holds the sums exactly).
    l2_clip: the clip (> 0); with `auto_l2_clip` its initial value (0.1 is reasonable).
    modclip_prob: the target probability, in (0, 1), that an element of the sum wraps.
    beta: the conditional rounding's bias, in [0, 1); 0 (TFF's default) rounds
      unconditionally; `exp(-0.5)` is the paper's choice.
    mechanism: 'distributed_skellam' (default) or 'distributed_dgauss'.
    rotation_type: 'dft' (default) or 'hd'.
    auto_l2_clip: adapt the clip every round (default False).
    auto_l2_target_quantile: the quantile in [0, 1] the clip adapts to.
    auto_l2_lr: the clip's learning rate (> 0).
    auto_l2_clip_count_stddev: the clipped count's noise (>= 0), or None for the default.
    seed: an int, or None (default) for a secret seed from the operating system (a federax
      addition: TFF seeds from the clock).

  Raises:
    TypeError: an argument of the wrong type. ValueError: one out of its range, or `bits` too
      few for `expected_clients_per_round` and `modclip_prob` (TFF's checks).

  Example:
    >>> factory = fx.aggregators.DistributedDpSumFactory(
    ...     noise_multiplier=0.0, expected_clients_per_round=2, bits=16, l2_clip=1.0, seed=0)
    >>> process = factory.create(fx.TensorType(np.float32, [4]))
    >>> output = process.next(process.initialize(), [[0.3, 0.0, 0.4, 0.0], [3.0, 0.0, 4.0, 0.0]])
    >>> [round(float(x), 3) + 0.0 for x in output.result]  # [.3, 0, .4, 0] + [.6, 0, .8, 0]
    [0.9, 0.0, 1.2, 0.0]
  """

  _no_weights_hint = f"{WEIGHTS_REFUSED}; {WEIGHTS_HINT}"

  def __init__(self, noise_multiplier: float, expected_clients_per_round: int, bits: int,
               l2_clip: float, modclip_prob: float = 1e-4, beta: float = 0.0,
               mechanism: str = "distributed_skellam", rotation_type: str = "dft",
               auto_l2_clip: bool = False, auto_l2_target_quantile: float = 0.5,
               auto_l2_lr: float = 0.2, auto_l2_clip_count_stddev: Optional[float] = None, *,
               seed: Optional[int] = None):
    z = _number("noise_multiplier", noise_multiplier, "nonnegative")
    n = cu.check_int(_NAME, "expected_clients_per_round", expected_clients_per_round, 1)
    # Larger widths are possible, but float32 holds integers exactly only up to 2**24 (TFF's).
    bits = cu.check_int(_NAME, "bits", bits, 1, 22)
    clip = _number("l2_clip", l2_clip, "positive")
    self._modclip_prob = _number("modclip_prob", modclip_prob, "open unit")
    self._beta = _number("beta", beta, "unit")
    self._mechanism = _choice("mechanism", mechanism, DP_MECHANISMS)
    self._rotation_type = _choice("rotation_type", rotation_type, ROTATION_TYPES)
    if not isinstance(auto_l2_clip, bool):
      raise error(TypeError, _NAME, "auto_l2_clip must be a bool.", actual=repr(auto_l2_clip))
    self._k_stddevs = clip_prob_to_num_stddevs(self._modclip_prob)
    if bits < math.log2(n):
      raise error(ValueError, _NAME, "bits must be at least log2(expected_clients_per_round): "
                  "the sum of n clients needs that many bits.",
                  expected=f"bits >= {math.ceil(math.log2(n))}",
                  actual=f"bits={bits}, expected_clients_per_round={n}",
                  hint="increase bits or decrease expected_clients_per_round")
    if 2**(2 * bits) < n * self._k_stddevs**2:
      raise error(ValueError, _NAME, f"bits={bits} is too small for "
                  f"expected_clients_per_round={n} and modclip_prob={self._modclip_prob}: the "
                  "noised sum would wrap around more often than modclip_prob.",
                  expected="2**(2 * bits) >= n * k**2, k = sqrt(2) erfcinv(modclip_prob) = "
                  f"{self._k_stddevs:.3f}", actual=f"2**{2 * bits} < {n * self._k_stddevs**2:.0f}",
                  hint="increase bits or modclip_prob, or decrease expected_clients_per_round")
    self._noise_multiplier, self._num_clients, self._bits = z, n, bits
    self._initial_l2_clip = clip
    self._seed = qe.noise_seed(_NAME, seed)
    self._auto_l2_clip = auto_l2_clip
    self._padded_dim: Optional[int] = None  # Of the last create's value type.
    self._count_stddev = None
    self._l2_clip: Any = clip
    self._value_noise_mult = z
    if auto_l2_clip:
      quantile = _number("auto_l2_target_quantile", auto_l2_target_quantile, "probability")
      rate = _number("auto_l2_lr", auto_l2_lr, "positive")
      if auto_l2_clip_count_stddev is not None:
        auto_l2_clip_count_stddev = _number("auto_l2_clip_count_stddev",
                                            auto_l2_clip_count_stddev, "nonnegative")
      self._value_noise_mult, self._count_stddev = adaptive_clip_noise_params(
          z, n, auto_l2_clip_count_stddev)
      # The count of clients below the clip is summed securely, like the values: the flags
      # shifted to [-0.5, 0.5] (Andrew et al.), so the bounds are +-0.5 (TFF's).
      self._l2_clip = qe.PrivateQuantileEstimationProcess(
          qe.QuantileEstimatorQuery(clip, quantile, rate, self._count_stddev, n,
                                    geometric_update=True, seed=self._seed),
          record_aggregation_factory=SecureSumFactory(0.5, -0.5))

  def __repr__(self) -> str:
    return (f"<{_NAME}({self._mechanism}, noise_multiplier={self._noise_multiplier}, "
            f"bits={self._bits})>")

  def create(self, value_type: Any, weight_type: Any = None) -> AggregationProcess:
    if weight_type is not None:
      raise error(TypeError, f"{_NAME}.create", f"a weighted process cannot be made: "
                  f"{WEIGHTS_REFUSED}.", actual=f"weight_type {weight_type}", hint=WEIGHTS_HINT)
    return super().create(value_type)

  def _check_value_type(self, value_type: t.Type) -> list[t.TensorType]:
    where = f"{_NAME}.create"
    leaf_types = cu.check_tensors(where, value_type, kinds="iuf", what="integers or floats")
    if not (t.has_dtype_kind(value_type, "f") or t.has_dtype_kind(value_type, "iu")):
      raise error(TypeError, where, "the tensors must be all integers or all floats.",
                  actual=f"value_type {value_type}", hint="cast them to one kind first")
    return leaf_types

  def _padded_dim_of(self, leaf_types: list[t.TensorType]) -> int:
    """The rotated vector's length: the next power of two ('hd') or even number ('dft')."""
    dim = max(1, sum(cu.num_elements(ts) for ts in leaf_types))
    return 1 << (dim - 1).bit_length() if self._rotation_type == "hd" else dim + dim % 2

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    where = f"{_NAME}.create"
    padded_dim = self._padded_dim_of(self._check_value_type(value_type))
    self._padded_dim = padded_dim  # For dp_event(), as TFF keeps it.
    params = self._params(self._initial_l2_clip, padded_dim)
    if params["scale"] <= 1:
      warnings.warn(f"{_NAME}: the scale {params['scale']:.3g} <= 1 may make large rounding "
                    f"errors; increase bits (now {self._bits}) or decrease "
                    f"expected_clients_per_round (now {self._num_clients}).",
                    stacklevel=user_stacklevel())
    process = self._factory(params).create(value_type)
    rotation = self._rotation_type
    retune = self._retune_fn(process.initialize.type_signature.result.member, padded_dim)

    @computation(process.initialize.type_signature.result.member)
    def tuned(state):
      _, discretization, noise = _unpack(state)
      query = noise["query_state"]
      return (jnp.float32(1.0) / discretization["step_size"], query["l2_norm_bound"],
              query["local_stddev"])

    @federated_computation(process.initialize.type_signature.result,
                           t.FederatedType(value_type, CLIENTS))
    @named(f"{where}(value_type).next")
    def next_fn(state, value):
      out = process.next(state, value)
      clip_measurements = out.measurements[rotation]
      noise_measurements = clip_measurements["clipping"]["stochastic_discretization"]
      # The scale, bound and noise of the round just run (retuning comes after).
      scale, l2_bound, stddev = fi.federated_map(tuned, out.state)
      measurements = collections.OrderedDict(
          l2_clip=clip_measurements["clipping_norm"], scale_factor=scale,
          scaled_inflated_l2=l2_bound, scaled_local_stddev=stddev,
          actual_num_clients=fi.federated_secure_sum_bitwidth(
              fi.federated_value(np.int32(1), CLIENTS), 1),
          padded_dim=fi.federated_value(np.int32(padded_dim), SERVER),
          dp_query_metrics=noise_measurements["dp_query_metrics"],
          estimated_modclip_prob=noise_measurements["estimated_modclip_prob"])
      new_state = out.state
      if retune is not None:
        new_clip = self._l2_clip.report(new_state[0]["clipping_norm"])
        new_state = fi.federated_map(retune, (new_state, new_clip))
      return MeasuredProcessOutput(state=new_state, result=out.result,
                                   measurements=fi.federated_zip(measurements))

    return AggregationProcess(process.initialize, next_fn)

  def dp_event(self, value_type: Any = None, *, approximate: bool = True) -> Any:
    """What one round releases, for a privacy accountant: a `dp_accounting.DpEvent`.

    TFF's factory reports `UnsupportedDpEvent` (its TODO: "exact privacy accounting for
    DDP"). Here, for `expected_clients_per_round` clients each adding its share, at the
    initial clip, for values of `value_type` (default: the type of the last `create`; the
    rounding's inflation of the norm bound depends on the dimension), in the scaled domain
    (`Delta2 = scaled_inflated_l2`, `Delta1` the L1 bound, `mu = n * scaled_local_stddev^2`
    the central variance):

    - `approximate=True` (default): `GaussianDpEvent(sqrt(mu) / Delta2)`, the Gaussian
      mechanism with the same central noise and the inflated sensitivity. Both mechanisms
      approach it as the noise grows (the papers' RDP bounds exceed it by `O(1/mu)` and
      `exp(-2 pi^2 sigma^2)` terms), and it composes with sampling in every dp_accounting
      accountant (RDP and PLD).
    - `approximate=False`: a rigorous `ZCDpEvent` (RDP accountants only, no sampling):
      discrete Gaussian, Kairouz et al. 2021 Prop. 14: `rho = Delta2^2 / (2 mu)`,
      `xi = tau d`, `tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k+1))`; Skellam,
      Agarwal et al. 2021 Thm. 3.5 (integer orders `a`: `a Delta2^2 / (2 mu) + ((2a - 1)
      Delta2^2 + 6 Delta1) / (4 mu^2)`): `rho = Delta2^2 (1 + 1/mu) / (2 mu)`,
      `xi = max(0, (6 Delta1 - Delta2^2) / (4 mu^2)) + rho` (the last `rho` covers the
      orders between integers, as RDP grows with the order).

    With `auto_l2_clip` the event is composed with `GaussianDpEvent(2 *
    auto_l2_clip_count_stddev)`, the noised count (its sensitivity is 0.5). The ratio of the
    noise to the inflated bound does not depend on the clip (the scale follows it), so the
    event holds every round unless the scale reaches its cap of 10^6. Without noise:
    `GaussianDpEvent(0)` (approximate) or `NonPrivateDpEvent` (exact).

    Raises:
      ImportError: `dp_accounting` is not installed (`pip install 'federax[privacy]'`).
      ValueError: no `value_type`, and `create` was never called.
    """
    if value_type is not None:
      padded_dim = self._padded_dim_of(self._check_value_type(to_type(value_type)))
    elif self._padded_dim is not None:
      padded_dim = self._padded_dim
    else:
      raise error(ValueError, f"{_NAME}.dp_event", "the event depends on the values' "
                  "dimension: give value_type, or call create(value_type) first.",
                  hint="dp_event(fx.TensorType(np.float32, [d]))")
    try:
      import dp_accounting  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(f"{_NAME}.dp_event needs the dp-accounting package, an optional "
                        "dependency of federax: pip install 'federax[privacy]'") from e
    p = self._params(self._initial_l2_clip, padded_dim)
    n, mu = self._num_clients, self._num_clients * p["local_stddev"]**2
    if mu == 0:
      event = (dp_accounting.GaussianDpEvent(0.0) if approximate
               else dp_accounting.NonPrivateDpEvent())
    elif approximate:
      event = dp_accounting.GaussianDpEvent(math.sqrt(mu) / p["scaled_l2"])
    elif self._mechanism == "distributed_dgauss":
      sigma2 = p["local_stddev"]**2
      tau = 10 * sum(math.exp(-2 * math.pi**2 * sigma2 * k / (k + 1)) for k in range(1, n))
      event = dp_accounting.ZCDpEvent(rho=p["scaled_l2"]**2 / (2 * mu),
                                      xi=tau * padded_dim)
    else:
      l2, l1 = p["scaled_l2"], p["scaled_l1"]
      rho = l2**2 * (1 + 1 / mu) / (2 * mu)
      event = dp_accounting.ZCDpEvent(rho=rho,
                                      xi=max(0.0, (6 * l1 - l2**2) / (4 * mu**2)) + rho)
    if self._auto_l2_clip:
      event = dp_accounting.ComposedDpEvent(
          [event, dp_accounting.GaussianDpEvent(2 * self._count_stddev)])
    return event

  # --- Parameters --------------------------------------------------------------------------------

  def _params(self, l2_clip: Any, padded_dim: int) -> dict:
    """TFF's parameters for a clip (a float on the host, float64; or a float32 array when
    retuning in a round): `scale`, `scaled_l2` (the inflated L2 bound, scaled), `scaled_l1`
    and the clients' `local_stddev` (scaled)."""
    host = isinstance(l2_clip, float)
    local_stddev = l2_clip * self._value_noise_mult / math.sqrt(self._num_clients)
    scale = heuristic_scale_factor(local_stddev, l2_clip, self._bits, self._num_clients,
                                   padded_dim, self._k_stddevs)
    scale = min(scale, MAX_SCALE_FACTOR) if host else jnp.minimum(scale, MAX_SCALE_FACTOR)
    inflated = (_host_inflated_l2_norm_bound if host else inflated_l2_norm_bound)(
        l2_clip, 1.0 / scale, self._beta, padded_dim)
    leeway = _NORM_LEEWAY * (max(1.0, l2_clip) if host else jnp.maximum(1.0, l2_clip))
    scaled_l2 = (inflated + leeway) * scale
    # Integers: L1 <= L2^2, besides L1 <= sqrt(d) L2. The bound is int32 (TFF's), so it is
    # capped below 2^31 (reached only without noise, by huge values of one client).
    if host:
      scaled_l1 = min(math.ceil(scaled_l2 * min(math.sqrt(padded_dim), scaled_l2)), _L1_CAP)
    else:
      scaled_l1 = jnp.ceil(jnp.minimum(
          scaled_l2 * jnp.minimum(math.sqrt(padded_dim), scaled_l2), _L1_CAP)).astype(jnp.int32)
    return dict(scale=scale, scaled_l2=scaled_l2, scaled_l1=scaled_l1,
                local_stddev=local_stddev * scale)

  def _factory(self, params: dict):
    """TFF's nesting: concat, rotation, clipping, discretization, noise, modular sum."""
    factory = DistributedNoiseSumFactory(self._mechanism, params["scaled_l1"],
                                         params["scaled_l2"], params["local_stddev"],
                                         self._bits, self._seed)
    factory = StochasticDiscretizationFactory(
        factory, step_size=1.0 / params["scale"], beta=self._beta,
        prior_norm_bound=self._initial_l2_clip, seed=self._seed)
    factory = clipping_factory(self._l2_clip, factory, clipped_count_sum_factory=SecureSumFactory(
        upper_bound_threshold=1, lower_bound_threshold=0))
    rotation = (HadamardTransformFactory if self._rotation_type == "hd"
                else DiscreteFourierTransformFactory)
    return concat_factory(rotation(factory, seed=self._seed))

  def _retune_fn(self, state_type: t.Type, padded_dim: int):
    """With `auto_l2_clip`: `(state, new clip) -> state` with the discretization's step size and
    prior bound and the noise's bounds and stddev recomputed for the new clip (TFF's
    `_autotune_component_states`); None without."""
    if not self._auto_l2_clip:
      return None
    skellam = self._mechanism == "distributed_skellam"

    @computation(state_type, np.float32)
    @named(f"{_NAME}.create(value_type).retune")
    def retune(state, l2_clip):
      p = self._params(l2_clip, padded_dim)
      rotation, discretization, noise = _unpack(state)
      query = collections.OrderedDict(noise["query_state"])
      if skellam:
        query["l1_norm_bound"] = p["scaled_l1"]
      query["l2_norm_bound"] = p["scaled_l2"].astype(jnp.float32)
      query["local_stddev"] = p["local_stddev"].astype(jnp.float32)
      noise = _replace(noise, query_state=query)
      discretization = _replace(discretization,
                                step_size=(1.0 / p["scale"]).astype(jnp.float32),
                                prior_norm_bound=l2_clip, inner_agg_process=noise)
      clip_state = _replace(rotation[0], inner_agg=discretization)
      return (clip_state,) + tuple(rotation[1:])

    return retune


def _unpack(state: Any) -> tuple:
  """The rotation's, discretization's and noise's states in the nested state (concat has
  none of its own): `state = <clipping=<clipping_norm, inner_agg=discretization, ..>, key>`."""
  discretization = state[0]["inner_agg"]
  return state, discretization, discretization["inner_agg_process"]


def _replace(mapping: Any, **updates: Any) -> collections.OrderedDict:
  new = collections.OrderedDict(mapping)
  new.update(updates)
  return new


def clip_prob_to_num_stddevs(clip_prob: float) -> float:
  """`k` with `P(|N(0, 1)| > k) = clip_prob`: `sqrt(2) erfcinv(clip_prob)` (TFF's)."""
  return -statistics.NormalDist().inv_cdf(clip_prob / 2)


def heuristic_scale_factor(local_stddev: Any, l2_clip: Any, bits: int, num_clients: int,
                           dim: int, k_stddevs: float, rho: float = 1.0) -> Any:
  """TFF's scale: `1/gamma` with `2**b = 2k sqrt(rho/d (c n)^2 + (gamma^2/4 + sigma^2) n)/gamma`
  solved for gamma (arXiv:2102.06387 Sec. 4.2; the sum taken as subgaussian). Floats or
  arrays."""
  numer = (2.0**(2 * bits) - num_clients * k_stddevs**2)**0.5
  denom = 2.0 * k_stddevs * (rho / dim * l2_clip**2 * num_clients**2
                             + num_clients * local_stddev**2)**0.5
  return numer / denom


def _host_inflated_l2_norm_bound(l2_clip: float, gamma: float, beta: float, dim: int) -> float:
  """`inflated_l2_norm_bound` in float64 on the host (TFF computes it in TF eagerly)."""
  bound_1 = l2_clip + gamma * math.sqrt(dim)
  if beta == 0:
    return bound_1
  squared_2 = (l2_clip**2 + gamma**2 * dim / 4 + math.sqrt(2 * math.log(1 / beta)) * gamma
               * (l2_clip + gamma * math.sqrt(dim) / 2))
  return min(bound_1, math.sqrt(squared_2))


def _number(name: str, value: Any, check: str) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise error(TypeError, _NAME, f"{name} must be a number.", actual=repr(value))
  value = float(value)
  valid, expected = {"positive": (value > 0, "a finite float > 0"),
                     "nonnegative": (value >= 0, "a finite float >= 0"),
                     "probability": (0 <= value <= 1, "a float in [0, 1]"),
                     "unit": (0 <= value < 1, "a float in [0, 1)"),
                     "open unit": (0 < value < 1, "a float in (0, 1)")}[check]
  if not (valid and math.isfinite(value)):
    raise error(ValueError, _NAME, f"{name} must be {expected}.", expected=expected,
                actual=repr(value))
  return value


def _choice(name: str, value: Any, options: tuple) -> str:
  if not isinstance(value, str):
    raise error(TypeError, _NAME, f"{name} must be a string.", expected=" or ".join(options),
                actual=repr(value))
  if value not in options:
    raise error(ValueError, _NAME, f"unknown {name}.", expected=" or ".join(map(repr, options)),
                actual=repr(value))
  return value
