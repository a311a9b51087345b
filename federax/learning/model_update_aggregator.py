"""The recommended model-update aggregators, with TFF's defaults: robust, compression, secure,
and differentially private (central, and distributed with secure aggregation).

Each is a mean wrapped, from the outside in, by adaptive zeroing (of corrupted updates), then
adaptive L2 clipping (of outliers), with compression or the secure sum innermost: zeroing acts
first at the clients, the inner sum last. The adaptive norms are quantile estimates
(`PrivateQuantileEstimationProcess.no_noise`, Andrew et al. 2021) with TFF's parameters, so a
TFF run and a federax run with the same defaults aggregate the same way.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from federax import aggregators
from federax.aggregators import AggregationFactory

DebugMeasurementsFn = Callable[[AggregationFactory], AggregationFactory]


def _default_zeroing(inner: AggregationFactory, secure_estimation: bool = False
                     ) -> AggregationFactory:
  """Adapts quickly to a norm somewhat above the largest seen: 2 * q_0.98 + 1, from 10."""
  norm = aggregators.PrivateQuantileEstimationProcess.no_noise(
      initial_estimate=10.0, target_quantile=0.98, learning_rate=math.log(10.0),
      multiplier=2.0, increment=1.0, secure_estimation=secure_estimation)
  count = _secure_count() if secure_estimation else None
  return aggregators.zeroing_factory(norm, inner, zeroed_count_sum_factory=count)


def _default_clipping(inner: AggregationFactory, secure_estimation: bool = False
                      ) -> AggregationFactory:
  """Adapts moderately quickly to a moderately high norm: q_0.8, from 1."""
  norm = aggregators.PrivateQuantileEstimationProcess.no_noise(
      initial_estimate=1.0, target_quantile=0.8, learning_rate=0.2,
      secure_estimation=secure_estimation)
  count = _secure_count() if secure_estimation else None
  return aggregators.clipping_factory(norm, inner, clipped_count_sum_factory=count)


def _secure_count() -> AggregationFactory:
  return aggregators.SecureSumFactory(upper_bound_threshold=1, lower_bound_threshold=0)


def _mean(weighted: bool, value_sum_factory: Optional[AggregationFactory] = None,
          debug_measurements_fn: Optional[DebugMeasurementsFn] = None,
          where: str = "") -> AggregationFactory:
  mean = (aggregators.MeanFactory(value_sum_factory) if weighted
          else aggregators.UnweightedMeanFactory(value_sum_factory))
  if debug_measurements_fn is None:
    return mean
  wrapped = debug_measurements_fn(mean)
  kind = aggregators.WeightedAggregationFactory if weighted else (
      aggregators.UnweightedAggregationFactory)
  if not isinstance(wrapped, kind):
    raise TypeError(f"{where}: debug_measurements_fn must return a "
                    f"{'weighted' if weighted else 'unweighted'} aggregation factory, as it was "
                    f"given (weighted={weighted}); got {wrapped!r}.")
  return wrapped


def _wrap(factory: AggregationFactory, zeroing: bool, clipping: bool,
          secure_estimation: bool = False) -> AggregationFactory:
  if clipping:
    factory = _default_clipping(factory, secure_estimation)
  if zeroing:
    factory = _default_zeroing(factory, secure_estimation)
  return factory


def robust_aggregator(*, zeroing: bool = True, clipping: bool = True, weighted: bool = True,
                      debug_measurements_fn: Optional[DebugMeasurementsFn] = None
                      ) -> AggregationFactory:
  """A mean with adaptive zeroing and adaptive L2 clipping (TFF's `robust_aggregator`).

  Zeroes updates whose L-inf norm exceeds `2 * q_0.98 + 1` (data corruption) and clips the rest
  to the L2 norm `q_0.8` (outliers), both quantiles estimated as training goes.

  Args:
    zeroing: adaptive zeroing, outermost.
    clipping: adaptive L2 clipping.
    weighted: a weighted mean (`MeanFactory`) or an unweighted one.
    debug_measurements_fn: wraps the mean to add measurements (must keep its weighting).

  Example:
    >>> agg = fx.learning.robust_aggregator()
    >>> process = agg.create(fx.TensorType(np.float32, [2]), fx.TensorType(np.float32))
    >>> out = process.next(process.initialize(), [[3.0, 4.0], [0.3, 0.4]], [1.0, 1.0])
    >>> [round(float(x), 2) for x in out.result]  # [3, 4] is clipped to norm 1 first
    [0.45, 0.6]
  """
  mean = _mean(weighted, None, debug_measurements_fn, "robust_aggregator")
  return _wrap(mean, zeroing, clipping)


def compression_aggregator(*, zeroing: bool = True, clipping: bool = True,
                           weighted: bool = True,
                           debug_measurements_fn: Optional[DebugMeasurementsFn] = None,
                           **kwargs) -> AggregationFactory:
  """`robust_aggregator` whose sum is uniformly quantized: 8 bits per coordinate of each tensor
  with more than 20000 elements (TFF's `compression_aggregator`; Suresh et al. 2017).

  Args:
    zeroing, clipping, weighted, debug_measurements_fn: as `robust_aggregator`.
    **kwargs: passed to `EncodedSumFactory.quantize_above_threshold` (`quantization_bits`,
      `threshold`), overriding TFF's 8 and 20000.
  """
  options = dict(quantization_bits=8, threshold=20000)
  options.update(kwargs)
  encoded = aggregators.EncodedSumFactory.quantize_above_threshold(**options)
  mean = _mean(weighted, encoded, debug_measurements_fn, "compression_aggregator")
  return _wrap(mean, zeroing, clipping)


def secure_aggregator(*, zeroing: bool = True, clipping: bool = True, weighted: bool = True
                      ) -> AggregationFactory:
  """`robust_aggregator` whose sums are secure (TFF's `secure_aggregator`; Bonawitz et al. 2017).

  The (weighted) values are clipped to an adaptive bound `2 * q_0.95` (from 50), quantized
  and summed with `federated_secure_sum_bitwidth`; weights are summed securely in [0, 2^20 - 1]
  (the client count in [0, 1] when unweighted); the zeroing and clipping norms are estimated
  with secure sums too, so the server sees no client's value.
  """
  bound = aggregators.PrivateQuantileEstimationProcess.no_noise(
      initial_estimate=50.0, target_quantile=0.95, learning_rate=1.0, multiplier=2.0,
      secure_estimation=True)
  value_sum = aggregators.SecureSumFactory(bound)
  if weighted:
    # 2^20 - 1: floats holding integers (example counts) up to about a million, exactly.
    mean = aggregators.MeanFactory(
        value_sum_factory=value_sum,
        weight_sum_factory=aggregators.SecureSumFactory(upper_bound_threshold=float(2**20 - 1),
                                                        lower_bound_threshold=0.0))
  else:
    mean = aggregators.UnweightedMeanFactory(value_sum_factory=value_sum,
                                             count_sum_factory=_secure_count())
  return _wrap(mean, zeroing, clipping, secure_estimation=True)


def dp_aggregator(noise_multiplier: float, clients_per_round: float, zeroing: bool = True, *,
                  seed: Optional[int] = None) -> AggregationFactory:
  """An unweighted mean with adaptive zeroing, adaptive clipping and Gaussian noise (TFF's
  `dp_aggregator`; McMahan et al. 2018, Andrew et al. 2021).

  `DifferentiallyPrivateFactory.gaussian_adaptive(noise_multiplier, clients_per_round)` (clip
  from 0.1 toward the median norm, the clipped count noised; `noise_multiplier` is the total),
  wrapped by the default adaptive zeroing (of updates whose L-inf norm exceeds
  `2 * q_0.98 + 1`, for data corruption) when `zeroing`. Unweighted only.

  Args:
    noise_multiplier: the total noise multiplier (>= 0); about 1 or more for meaningful privacy.
    clients_per_round: the expected number of clients per round (> 0).
    zeroing: adaptive zeroing, outermost.
    seed: the noise's seed (an int), or None (default) for a secret one from the OS.

  Example:
    >>> agg = fx.learning.dp_aggregator(noise_multiplier=0.0, clients_per_round=2)
    >>> process = agg.create(fx.TensorType(np.float32, [2]))
    >>> out = process.next(process.initialize(), [[3.0, 4.0], [0.03, 0.04]])
    >>> [round(float(x), 3) for x in out.result]  # [3, 4] clipped to 0.1, then / 2
    [0.045, 0.06]
  """
  factory = aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
      noise_multiplier, clients_per_round, seed=seed)
  return _default_zeroing(factory) if zeroing else factory


def ddp_secure_aggregator(noise_multiplier: float, expected_clients_per_round: int,
                          bits: int = 20, zeroing: bool = True, rotation_type: str = "hd", *,
                          l2_clip: float = 0.1, auto_l2_clip: bool = True,
                          mechanism: str = "distributed_skellam", seed: Optional[int] = None
                          ) -> AggregationFactory:
  """An unweighted mean with adaptive zeroing and distributed DP over secure aggregation (TFF's
  `ddp_secure_aggregator`; arXiv:2102.06387, arXiv:2110.04995, Andrew et al. 2021).

  `DistributedDpSumFactory(noise_multiplier, expected_clients_per_round, bits, l2_clip=0.1,
  mechanism='distributed_skellam', rotation_type, auto_l2_clip=True)`: clients clip (to a
  norm adapting to the median, from 0.1), rotate, round, add Skellam noise shares and sum
  modulo `2**bits` securely; divided by the client count, also summed securely. Wrapped by the
  default adaptive zeroing with secure estimation when `zeroing`. Unweighted only.

  Args:
    noise_multiplier: the noise multiplier (>= 0) with respect to the clip; about 1 or more for
      meaningful privacy.
    expected_clients_per_round: the expected number of clients per round (an int >= 1).
    bits: the secure sum's bit width, in [1, 22] (TFF: 12 suffice for about 100 clients, 16
      for about 1000).
    zeroing: adaptive zeroing, outermost.
    rotation_type: 'hd' (Hadamard, default) or 'dft'.
    l2_clip, auto_l2_clip, mechanism: the clip (initial, when adaptive), whether it adapts, and
      the noise (TFF fixes them to 0.1, True and 'distributed_skellam'; federax additions).
    seed: the seed of the rotation, rounding and noise (an int), or None (default) for a
      secret one from the operating system.

  Example:
    >>> agg = fx.learning.ddp_secure_aggregator(0.0, expected_clients_per_round=2, bits=16,
    ...                                         seed=0)
    >>> process = agg.create(fx.TensorType(np.float32, [2]))
    >>> out = process.next(process.initialize(), [[0.06, 0.08], [0.03, 0.04]])
    >>> [round(float(x), 3) for x in out.result]  # the mean: both are within the clip 0.1
    [0.045, 0.06]
  """
  factory = aggregators.DistributedDpSumFactory(
      noise_multiplier=noise_multiplier, expected_clients_per_round=expected_clients_per_round,
      bits=bits, l2_clip=l2_clip, mechanism=mechanism, rotation_type=rotation_type,
      auto_l2_clip=auto_l2_clip, seed=seed)
  mean = aggregators.UnweightedMeanFactory(value_sum_factory=factory,
                                           count_sum_factory=_secure_count())
  mean._no_weights_hint = factory._no_weights_hint  # Weights refused for DP's reason.
  return _default_zeroing(mean, secure_estimation=True) if zeroing else mean


def local_dp_aggregator(noise_multiplier: float, clip: float, *,
                        seed: Optional[int] = None) -> AggregationFactory:
  """An unweighted mean of values each client clipped and noised itself: local differential
  privacy, for comparison with `dp_aggregator` (a federax addition; TFF has none).

  `fx.aggregators.LocalDpFactory(noise_multiplier, clip)`: every client clips its update to
  the L2 norm `clip` and adds `N(0, (noise_multiplier * clip)^2 I)` before sending it. No
  zeroing or adaptive clip, unlike `dp_aggregator`: their norm estimates read the clients' raw
  updates, which local DP keeps from the server. Unweighted only.

  Args:
    noise_multiplier: the noise multiplier (>= 0) of each client's Gaussian noise.
    clip: the L2 norm bound (> 0) of one client's update.
    seed: the noise's seed (an int), or None (default) for a secret one from the OS.

  Example:
    >>> agg = fx.learning.local_dp_aggregator(noise_multiplier=0.0, clip=0.1)
    >>> process = agg.create(fx.TensorType(np.float32, [2]))
    >>> out = process.next(process.initialize(), [[3.0, 4.0], [0.03, 0.04]])
    >>> [round(float(x), 3) for x in out.result]  # ([0.06, 0.08] + [0.03, 0.04]) / 2
    [0.045, 0.06]
  """
  return aggregators.LocalDpFactory(noise_multiplier, clip, seed=seed)
