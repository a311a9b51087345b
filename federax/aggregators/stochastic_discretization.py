"""`StochasticDiscretizationFactory`: float values stochastically rounded to a grid of int32
levels for an inner aggregation (unbiased, or norm-bounded with `beta`), scaled back at the
server; with `stochastic_round` and `inflated_l2_norm_bound`, the rounding and its norm bound."""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import jax
import jax.numpy as jnp

from federax.core import types as t
from federax.core.errors import error
from federax.aggregators import _compression_utils as cu
from federax.aggregators._discretization import discretization_process
from federax.aggregators.factory import (AggregationFactory, AggregationProcess,
                                         UnweightedAggregationFactory)

# Conditional rounding (beta > 0) redraws at most this often (TFF's `max_tries`).
MAX_TRIES = 1000


class StochasticDiscretizationFactory(UnweightedAggregationFactory):
  """Rounds each client value stochastically to the levels `k * step_size` for the inner
  factory.

  TFF's factory, with the conditional rounding of TFF's `DiscretizationFactory` (which
  distributed DP uses). Each float tensor, scaled to `s = float32(x) / step_size`, becomes
  the int32 levels `floor(s) + 1` with probability `s - floor(s)`, else `floor(s)`: unbiased,
  `E[level * step_size] = x`. The inner factory aggregates the levels (in the value's
  structure); the server returns `float32(total) * step_size` in each tensor's dtype.

  With `beta > 0` the rounding of each tensor is redrawn (at most 1000 times) until the
  levels' L2 norm is at most `inflated_l2_norm_bound(bound, step_size, beta, size) /
  step_size`, `bound` being `prior_norm_bound` or, without one, the tensor's own norm: this
  bounds the norm after rounding at a small bias (arXiv:2102.06387, Sec. 4.1). Should every
  draw fail, the tensor is rounded toward zero, which keeps the bound (TFF raises there; a
  compiled program cannot).

  Randomness comes from the key in the state: each round splits it and every client rounds
  with `fold_in(round_key, client_index)` (`fx.federated_client_keys`), tensor `j` with
  `fold_in(client_key, j)`: a run replays from `seed` on every runtime.

  State: `<step_size=float32,prior_norm_bound=float32,inner_agg_process=...,key=uint32[2]>`
  (`prior_norm_bound` 0 when none, as in TFF's `DiscretizationFactory`; step size and bound are
  read from the state every round, so an outer aggregator may change them; TFF's factory has
  neither the bound nor a key in its state). Measurements
  `<stochastic_discretization=inner measurements[,distortion=...]>`, as TFF's.

  Args:
    inner_agg_factory: an unweighted factory aggregating the int32 levels.
    step_size: the distance between neighbouring levels (a positive number).
    distortion_aggregation_factory: if given, an unweighted factory aggregating each client's
      mean squared rounding error (over all its elements) into the `distortion` measurement.
    beta: in [0, 1): 0 rounds unconditionally (unbiased); larger trades bias for a smaller norm.
    prior_norm_bound: a known bound on the L2 norm of a client's value (e.g. its clipping norm),
      which loosens the conditional rounding's threshold; only for a single tensor value.
    seed: the seed of the state's first key (a federax addition).

  Example:
    >>> factory = fx.aggregators.StochasticDiscretizationFactory(
    ...     fx.aggregators.SumFactory(), step_size=0.5)
    >>> process = factory.create(fx.TensorType(np.float32, [2]))
    >>> process.next(process.initialize(), [[0.5, 1.0], [1.5, -2.0]]).result  # on the grid
    array([ 2., -1.], dtype=float32)
  """

  def __init__(self, inner_agg_factory: AggregationFactory, step_size: float,
               distortion_aggregation_factory: Optional[AggregationFactory] = None, *,
               beta: float = 0.0, prior_norm_bound: Optional[float] = None, seed: int = 0):
    name = type(self).__name__
    self._inner = cu.check_unweighted_inner(name, "inner_agg_factory", inner_agg_factory)
    self._step_size = cu.check_positive_number(name, "step_size", step_size)
    self._distortion = (None if distortion_aggregation_factory is None else
                        cu.check_unweighted_inner(name, "distortion_aggregation_factory",
                                                  distortion_aggregation_factory))
    if (isinstance(beta, bool) or not isinstance(beta, numbers.Real)
        or not 0 <= float(beta) < 1):
      raise error(ValueError, name, "beta must be a number in [0, 1).", actual=repr(beta))
    self._beta = float(beta)
    self._prior_norm_bound = (0.0 if prior_norm_bound is None else
                              cu.check_positive_number(name, "prior_norm_bound",
                                                       prior_norm_bound))
    self._seed = cu.check_seed(name, seed)

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    name = type(self).__name__
    if self._prior_norm_bound and not isinstance(value_type, t.TensorType):
      raise error(TypeError, f"{name}.create", "with prior_norm_bound the value must be a "
                  "single tensor (the bound is on the whole value's norm).",
                  expected="a TensorType", actual=f"value_type {value_type}",
                  hint="wrap the factory in fx.aggregators.concat_factory(...)")
    beta = self._beta

    def rounding(scaled: list, step_size: Any, prior_norm_bound: Any, key: jax.Array) -> list:
      return [stochastic_round(s, jax.random.fold_in(key, j), beta, prior_norm_bound, step_size)
              for j, s in enumerate(scaled)]

    return discretization_process(name, "stochastic_discretization", self._inner,
                                  self._distortion, value_type, self._step_size, rounding,
                                  stochastic=(self._prior_norm_bound, self._seed))


def stochastic_round(x: jax.Array, key: jax.Array, beta: float = 0.0,
                     l2_norm_bound: Any = None, step_size: Any = 1.0) -> jax.Array:
  """`x` stochastically rounded to integers (as floats), conditionally on its norm if beta > 0.

  Each element becomes `floor(x) + 1` with probability `x - floor(x)`, else `floor(x)`. With
  `beta > 0` the draw is repeated (keys `fold_in(key, try)`) until the result's L2 norm is at
  most `inflated_l2_norm_bound(bound, step_size, beta, x.size) / step_size`, `bound` being
  `l2_norm_bound` when it is positive, else `||x|| * step_size` (TFF computes the threshold in
  the unscaled domain too); after `MAX_TRIES` failed draws, `x` rounded toward zero.

  Args:
    x: a float array, the values divided by `step_size` (scaled to the integer grid).
    key: a raw PRNG key.
    beta: a static Python float in [0, 1).
    l2_norm_bound: a bound on the unscaled values' norm (a scalar; 0 or None: none).
    step_size: the grid step the values were divided by.

  Example:
    >>> from federax.aggregators.stochastic_discretization import stochastic_round
    >>> r = stochastic_round(jnp.full([10000], 0.25), jax.random.PRNGKey(0))
    >>> sorted(set(np.asarray(r).tolist())), 0.23 < float(r.mean()) < 0.27
    ([0.0, 1.0], True)
  """
  floor = jnp.floor(x)
  fraction = x - floor

  def draw(attempt):
    uniform = jax.random.uniform(jax.random.fold_in(key, attempt), x.shape, x.dtype)
    return floor + (uniform < fraction).astype(x.dtype)

  if beta == 0:
    return draw(1)
  norm = jnp.linalg.norm(jnp.reshape(x, [-1])) * step_size
  bound = norm if l2_norm_bound is None else jnp.where(l2_norm_bound > 0, l2_norm_bound, norm)
  threshold = inflated_l2_norm_bound(bound, step_size, beta, x.size) / step_size
  too_long = lambda r: jnp.linalg.norm(jnp.reshape(r, [-1])) > threshold
  _, rounded = jax.lax.while_loop(
      lambda c: too_long(c[1]) & (c[0] < MAX_TRIES),
      lambda c: (c[0] + 1, draw(c[0] + 1)), (1, draw(1)))
  return jnp.where(too_long(rounded), jnp.trunc(x), rounded)


def inflated_l2_norm_bound(l2_norm_bound: Any, gamma: Any, beta: float, dim: int) -> jax.Array:
  """A bound on the L2 norm after stochastically rounding to the grid `gamma * k`.

  TFF's `discretization.inflated_l2_norm_bound` (arXiv:2102.06387, Theorem 1 and Sec. 4.1):
  `min(b1, b2)` with `b1 = c + gamma * sqrt(dim)` and, for `beta > 0`,
  `b2 = sqrt(c**2 + gamma**2 * dim / 4 + sqrt(2 log(1/beta)) * gamma * (c + gamma*sqrt(dim)/2))`
  (`b2 = b1` for beta = 0), `c` the norm bound before rounding.

  Example:
    >>> from federax.aggregators.stochastic_discretization import inflated_l2_norm_bound
    >>> float(inflated_l2_norm_bound(1.0, 0.1, 0.0, 100))
    2.0
  """
  norm = jnp.asarray(l2_norm_bound, jnp.float32)
  gamma = jnp.asarray(gamma, jnp.float32)
  gamma_sqrt_dim = gamma * jnp.float32(math.sqrt(dim))  # sqrt(dim) in float64 on the host.
  bound_1 = norm + gamma_sqrt_dim
  if beta == 0:
    return bound_1
  beta_term = jnp.float32(math.sqrt(2.0 * math.log(1.0 / beta)))
  squared_2 = (jnp.square(norm) + 0.25 * jnp.square(gamma_sqrt_dim)
               + beta_term * gamma * (norm + 0.5 * gamma_sqrt_dim))
  return jnp.minimum(bound_1, jnp.sqrt(squared_2))
