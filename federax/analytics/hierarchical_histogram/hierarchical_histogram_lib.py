"""`build_hierarchical_histogram_process` (TFF's): each round, the clients' float records become
histograms, are clipped, built into trees and summed (noised) at the server."""

from __future__ import annotations

import collections
import math
import time
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from federax.analytics.hierarchical_histogram import build_tree_from_leaf as trees
from federax.analytics.hierarchical_histogram import hierarchical_histogram_factory as hh_factory
from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER
from federax.templates._naming import named
from federax.templates.iterative_process import IterativeProcess

__all__ = ["ServerOutput", "build_hierarchical_histogram_process"]

_NAME = "build_hierarchical_histogram_process"


class ServerOutput(NamedTuple):
  """The state of a hierarchical histogram process, and what a round releases.

  Attributes:
    aggregated_hierarchical_histogram: the round's tree as TFF's ragged tensor components,
      `<flat_values=T[num_nodes],nested_row_splits=<int32[depth + 1]>>`: layer `i` (the root
      first) is `flat_values[splits[i]:splits[i + 1]]`. `T` is float32 for 'central-gaussian',
      int32 otherwise. Give it to `HierarchicalHistogramDecoder`.
    round_timestamp: int32 seconds since the Unix epoch at the start of the round (TFF's is
      int64; JAX keeps 32 bits, enough until 2038). 0 before the first round.
    aggregation_state: the aggregation's state (its sampling and noise keys), which the next
      round continues from (a federax addition: TFF draws from the clock, federax from keys).
  """

  aggregated_hierarchical_histogram: Any
  round_timestamp: Any
  aggregation_state: Any


def _timestamp() -> jax.Array:
  # Read when the program runs (a constant of the trace would repeat the first round's time).
  return io_callback(lambda: np.int32(time.time()), jax.ShapeDtypeStruct((), jnp.int32),
                     ordered=False)


def _bin_index(records: jax.Array, lower: float, upper: float, num_bins: int):
  precision = jnp.float32((upper - lower) / num_bins)
  inside = (records >= jnp.float32(lower)) & (records < jnp.float32(upper))
  index = jnp.floor((records - jnp.float32(lower)) / precision).astype(jnp.int32)
  return jnp.clip(index, 0, num_bins - 1), inside


def build_hierarchical_histogram_process(
    lower_bound: float, upper_bound: float, num_bins: int, arity: int = 2,
    clip_mechanism: str = "sub-sampling", max_records_per_user: int = 10,
    dp_mechanism: str = "no-noise", noise_multiplier: float = 0.0,
    expected_clients_per_round: int = 10, bits: int = 22, enable_secure_sum: bool = True, *,
    seed: Optional[int] = None) -> IterativeProcess:
  """The iterative process of a (differentially private) hierarchical histogram (TFF's).

  Each round: every client's records (`{float32*}@CLIENTS`) are counted into `num_bins` equal
  bins of `[lower_bound, upper_bound)`; the histogram is clipped to `max_records_per_user`
  records (`clip_mechanism`); its tree of arity `arity` is built (each node the sum of its
  children, leaves padded to a power of `arity`); the trees are summed (with secure sums when
  `enable_secure_sum`) and noised by `dp_mechanism`:
  - 'no-noise': the exact tree of the clipped records.
  - 'central-gaussian': Gaussian noise of standard deviation `noise_multiplier * C` on every
    node at the server, `C` the L2 norm bound of one client's tree
    (`hierarchical_histogram_factory.l2_norm_bound`).
  - 'distributed-discrete-gaussian': each client adds discrete Gaussian noise of scale
    `ceil(noise_multiplier * C / sqrt(expected_clients_per_round))`, summed modulo
    `2**(bits - 1)` (symmetric).

  The clients' histograms, clipping and trees are array programs over the client axis: the
  vectorized runtime runs a round as one compiled program. `next(state, client_data)` returns
  `(ServerOutput, ())`; read `state.aggregated_hierarchical_histogram`.

  Args:
    lower_bound: the data range's lower end (included).
    upper_bound: the range's upper end (excluded); `>= lower_bound`.
    num_bins: the number of bins (an int >= 1).
    arity: the tree's branching factor (an int >= 2).
    clip_mechanism: 'sub-sampling' (keep `max_records_per_user` records, sampled without
      replacement) or 'distinct' (each bin once, at most `max_records_per_user` bins).
    max_records_per_user: the most records a client contributes (an int >= 1).
    dp_mechanism: 'no-noise', 'central-gaussian' or 'distributed-discrete-gaussian'.
    noise_multiplier: the noise's standard deviation over the L2 bound (>= 0).
    expected_clients_per_round: the clients expected per round (>= 1); it splits the
      distributed noise, and `bits` must be at least its log2.
    bits: the secure sum's field, `2**bits`, for the distributed mechanism: an int in
      [1, 22], large enough for the sums (checked).
    enable_secure_sum: sum with secure aggregation (required by the distributed mechanism).
    seed: the seed of the sampling and the noise (a federax addition, keyword only); None
      draws a secret one from the operating system, so that nobody can recompute the noise.

  Returns:
    An `fx.templates.IterativeProcess` with `initialize: ( -> ServerOutput@SERVER)` and
    `next: (<ServerOutput@SERVER, {float32*}@CLIENTS> -> <ServerOutput@SERVER, <>@SERVER>)`.

  Raises:
    TypeError: an argument of the wrong type. ValueError: one out of its range (bounds
      crossed, `num_bins < 1`, `arity < 2`, an unknown mechanism, `bits` outside [1, 22] or
      too small, the distributed mechanism without secure sums).

  Example:
    >>> process = fx.analytics.build_hierarchical_histogram_process(
    ...     0.0, 4.0, num_bins=4, max_records_per_user=10, seed=0)
    >>> state, _ = process.next(process.initialize(), [[0.5, 1.5, 1.6], [3.9, 9.0]])
    >>> decoder = fx.analytics.HierarchicalHistogramDecoder(
    ...     state.aggregated_hierarchical_histogram, 0.0, 4.0)
    >>> decoder.range_query(0, 3), decoder.range_query(1, 1), decoder.quantile_query(0.5)
    (4.0, 2.0, (1.0, 2.0))
  """
  _check_bounds(lower_bound, upper_bound)
  lower, upper = float(lower_bound), float(upper_bound)
  factory = hh_factory.create_hierarchical_histogram_aggregation_factory(
      num_bins, arity, clip_mechanism, max_records_per_user, dp_mechanism, noise_multiplier,
      expected_clients_per_round, bits, enable_secure_sum, seed=seed)
  num_bins = int(num_bins)

  @computation(t.SequenceType(np.float32))
  @named(f"{_NAME}.client_work")
  def client_work(client_data):
    def insert_record(histogram, record):
      index, inside = _bin_index(record, lower, upper, num_bins)
      return histogram.at[index].add(inside.astype(jnp.int32))

    return client_data.reduce(jnp.zeros([num_bins], jnp.int32), insert_record)

  aggregation = factory.create(client_work.type_signature.result)
  splits = trees.row_splits(num_bins, arity)
  value_type = aggregation.next.type_signature.result[1].member

  @computation
  def initial_histogram():
    return collections.OrderedDict(flat_values=np.zeros(value_type.shape, value_type.dtype),
                                   nested_row_splits=(splits,))

  @computation(value_type)
  def ragged(flat_values):
    return collections.OrderedDict(flat_values=flat_values, nested_row_splits=(splits,))

  timestamp = computation(_timestamp)

  @federated_computation
  @named(f"{_NAME}.initialize")
  def initialize():
    return fi.federated_zip(ServerOutput(
        aggregated_hierarchical_histogram=fi.federated_eval(initial_histogram, SERVER),
        round_timestamp=fi.federated_value(np.int32(0), SERVER),
        aggregation_state=aggregation.initialize()))

  @federated_computation(initialize.type_signature.result,
                         t.FederatedType(t.SequenceType(np.float32), CLIENTS))
  @named(f"{_NAME}.next")
  def next_fn(state, client_data):
    round_timestamp = fi.federated_eval(timestamp, SERVER)
    client_histogram = fi.federated_map(client_work, client_data)
    output = aggregation.next(state.aggregation_state, client_histogram)
    server_output = fi.federated_zip(ServerOutput(
        aggregated_hierarchical_histogram=fi.federated_map(ragged, output.result),
        round_timestamp=round_timestamp, aggregation_state=output.state))
    return server_output, fi.federated_value((), SERVER)

  return IterativeProcess(initialize, next_fn)


def _check_bounds(lower_bound: Any, upper_bound: Any) -> None:
  for name, value in (("lower_bound", lower_bound), ("upper_bound", upper_bound)):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
      raise error(TypeError, _NAME, f"{name} must be a number.", actual=repr(value))
    if not math.isfinite(value):
      raise error(ValueError, _NAME, f"{name} must be finite.", actual=value)
  if upper_bound < lower_bound:
    raise error(ValueError, _NAME, "upper_bound must be no smaller than lower_bound.",
                expected="lower_bound <= upper_bound",
                actual=f"lower_bound={lower_bound}, upper_bound={upper_bound}")
