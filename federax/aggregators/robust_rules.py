"""Robust aggregation rules: coordinate-wise median and trimmed mean, (multi-)Krum, and RFA's
geometric median, as aggregation factories.

Unlike a mean, these rules need every client's value at the server at once: each process stacks
the clients' values with `fx.federated_stack` (`{V}@CLIENTS -> V'@SERVER`, a client axis on
every tensor) and computes the rule on the server in one array program over that axis (see
`_robust_ops`). The server therefore sees each client's value: these rules do not compose with
secure aggregation, and they hold all `n` values in memory (`O(n d)` for `d` numbers a client).

The processes are stateless (state `<>`) and return the value type at the server. Which take
weights: only `GeometricMedianFactory` (RFA weighs clients, by their number of examples in the
paper); the coordinate-wise rules and Krum weigh every client equally, so `create` refuses a
weight type for them. Use those with the unweighted algorithms
(`fx.learning.algorithms.build_unweighted_fed_avg(..., model_aggregator=...)`).
"""

from __future__ import annotations

import collections
import numbers
from collections.abc import Callable
from typing import Any, Optional

import jax
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type
from federax.templates._naming import named
from federax.templates.measured_process import MeasuredProcessOutput
from federax.aggregators import _robust_ops as ops
from federax.aggregators.factory import (AggregationProcess, UnweightedAggregationFactory,
                                         WeightedAggregationFactory, check_float_value,
                                         check_float_weight)

_UNWEIGHTED_HINT = ("{name} weighs every client equally: use it with an unweighted algorithm "
                    "(fx.learning.algorithms.build_unweighted_fed_avg), or use "
                    "fx.aggregators.GeometricMedianFactory, a robust rule that takes weights")
_FLOAT_HINT = "cast the values to a float dtype first"


class _RobustFactory(UnweightedAggregationFactory):
  """A stateless rule on the stacked client values; subclasses give `_rule` and measurements."""

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    cls._no_weights_hint = _UNWEIGHTED_HINT.format(name=cls.__name__)

  def _measurements_type(self) -> t.Type:
    return to_type(())

  def _rule(self, stacked: Any, weights: Optional[jax.Array]) -> tuple[Any, Any]:
    """(the aggregate, the measurements) of the stacked values (leaves `[n, ...]`)."""
    raise NotImplementedError

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    name = type(self).__name__
    check_float_value(name, value_type, hint=_FLOAT_HINT)
    if not t.contains(value_type, lambda x: isinstance(x, t.TensorType)):
      raise error(TypeError, f"{name}.create", "the value must hold at least one tensor.",
                  actual=f"value_type {value_type}")
    if weight_type is not None:
      check_float_weight(name, weight_type)
    return _stacking_process(name, value_type, weight_type, self._rule,
                             self._measurements_type())


def _stacking_process(name: str, value_type: t.Type, weight_type: Optional[t.Type],
                      rule: Callable, measurements_type: t.Type) -> AggregationProcess:
  """The process: stack the client values (and weights) at the server, apply `rule` there."""
  created = f"{name}.create(value_type{'' if weight_type is None else ', weight_type'})"
  # Declared, so the result is the value type exactly (its containers included).
  result_type = t.StructType([value_type, measurements_type])
  stacked_type = fi.with_client_axis(value_type)

  if weight_type is None:
    @computation(stacked_type, result=result_type)
    @named(f"{created}.aggregate")
    def aggregate(values):
      return rule(values, None)
  else:
    @computation(stacked_type, fi.with_client_axis(weight_type), result=result_type)
    @named(f"{created}.aggregate")
    def aggregate(values, weights):
      return rule(values, weights)

  @federated_computation
  @named(f"{created}.initialize")
  def initialize():
    return fi.federated_value((), SERVER)

  def output(state, stacked):
    out = fi.federated_map(aggregate, stacked)
    return MeasuredProcessOutput(state=state, result=out[0], measurements=out[1])

  at_clients = t.FederatedType(value_type, CLIENTS)
  if weight_type is None:
    @federated_computation(initialize.type_signature.result, at_clients)
    @named(f"{created}.next")
    def next_fn(state, value):
      return output(state, fi.federated_stack(value))
  else:
    @federated_computation(initialize.type_signature.result, at_clients,
                           t.FederatedType(weight_type, CLIENTS))
    @named(f"{created}.next")
    def next_fn(state, value, weight):
      return output(state, (fi.federated_stack(value), fi.federated_stack(weight)))

  return AggregationProcess(initialize, next_fn)


class MedianFactory(_RobustFactory):
  """The coordinate-wise median of the client values (unweighted).

  Every coordinate of every tensor is the median of the clients' values there (the mean of the
  middle two for an even count). NaN: ignored coordinate by coordinate (`jnp.nanmedian`), so a
  NaN client does not poison the result; a coordinate NaN at every client is NaN. Infinities
  are ordinary (extreme) values. State `<>`, measurements `<>`.

  Cost, for `n` clients of `d` numbers: `O(n log n d)` time (a sort per coordinate) and
  `O(n d)` memory at the server.

  Example:
    >>> median = fx.aggregators.MedianFactory().create(fx.TensorType(np.float32, [2]))
    >>> median.next(median.initialize(), [[1.0, 5.0], [2.0, -1.0], [300.0, 2.0]]).result
    array([2., 2.], dtype=float32)
  """

  def _rule(self, stacked, weights):
    return ops.coordinate_median(stacked), ()


class TrimmedMeanFactory(_RobustFactory):
  """The coordinate-wise trimmed mean of the client values (unweighted; Flower's FedTrimmedAvg).

  In every coordinate, the `int(beta * n)` largest and the as many smallest of the `n` client
  values are dropped and the rest averaged. NaN: ignored coordinate by coordinate, the cut then
  taken from the `m` values that are not NaN (`int(beta * m)` from each end); a coordinate NaN
  at every client is NaN. Infinities are ordinary values: trimmed when at an end that is cut.
  State `<>`, measurements `<>`.

  Cost, for `n` clients of `d` numbers: `O(n log n d)` time (a sort per coordinate) and
  `O(n d)` memory at the server.

  Args:
    beta: the fraction cut from each end, `0 <= beta < 0.5` (0 is the plain mean).

  Raises:
    ValueError: if `beta` is outside `[0, 0.5)`.

  Example:
    >>> trimmed = fx.aggregators.TrimmedMeanFactory(beta=0.25).create(fx.TensorType(np.float32))
    >>> float(trimmed.next(trimmed.initialize(), [1.0, 2.0, 4.0, 1000.0]).result)
    3.0
  """

  def __init__(self, beta: float):
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
      raise error(TypeError, "TrimmedMeanFactory", "beta must be a number.",
                  expected="a float in [0, 0.5)", actual=repr(beta))
    if not 0 <= beta < 0.5:
      raise error(ValueError, "TrimmedMeanFactory", "beta, the fraction cut from each end, "
                  "must lie in [0, 0.5).", expected="0 <= beta < 0.5", actual=f"beta={beta!r}",
                  hint="beta=0.1 drops the top and bottom 10% of the values in each coordinate")
    self._beta = float(beta)

  def _rule(self, stacked, weights):
    return ops.trimmed_mean(stacked, self._beta), ()


class KrumFactory(_RobustFactory):
  """(Multi-)Krum (Blanchard et al., 2017): the mean of the clients with the lowest Krum scores.

  Each client's value is flattened over the whole structure; its score is the sum of the
  squared Euclidean distances to its `n - f - 2` nearest other clients (`f = num_byzantine`).
  The `num_selected` clients with the lowest scores are averaged (unweighted; ties go to the
  lower client index): `num_selected=1` is Krum, more is multi-Krum. When `n <= f + 2` the
  neighbour count is clamped to 1 (as Flower does), and to the `n - 1` others at most;
  `num_selected` is clamped to `n`. NaN or infinity: a client holding one anywhere gets an
  infinite score and infinite distances to the others, so it is selected only if fewer than
  `num_selected` clients are finite (and then the result is not finite).

  State `<>`; measurements `<num_neighbors=int32,num_selected=int32>`: the counts used, after
  clamping.

  Cost, for `n` clients of `d` numbers: `O(n^2 d)` time for the distances, through the Gram
  matrix of the values (a matmul, after centring them on their coordinate-wise median,
  `O(n log n d)`), and `O(n^2 log n)` for the nearest neighbours; `O(n^2 + n d)` memory.

  Args:
    num_byzantine: `f`, the number of Byzantine clients tolerated, `>= 0`.
    num_selected: how many clients to average, `>= 1`.

  Raises:
    ValueError: if `num_byzantine < 0` or `num_selected < 1`.

  Example:
    >>> krum = fx.aggregators.KrumFactory(num_byzantine=1).create(fx.TensorType(np.float32, [2]))
    >>> out = krum.next(krum.initialize(), [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    >>> out.result, int(out.measurements["num_neighbors"])  # n - f - 2 = 1 neighbour.
    (array([0., 0.], dtype=float32), 1)
  """

  def __init__(self, num_byzantine: int, num_selected: int = 1):
    _check_int("KrumFactory", "num_byzantine", num_byzantine, 0,
               "the number of Byzantine clients tolerated")
    _check_int("KrumFactory", "num_selected", num_selected, 1,
               "the number of clients averaged (1 is Krum)")
    self._num_byzantine = int(num_byzantine)
    self._num_selected = int(num_selected)

  def _measurements_type(self):
    return to_type(collections.OrderedDict(num_neighbors=np.int32, num_selected=np.int32))

  def _rule(self, stacked, weights):
    result, measurements = ops.krum(stacked, self._num_byzantine, self._num_selected)
    return result, collections.OrderedDict(measurements)


class GeometricMedianFactory(_RobustFactory, WeightedAggregationFactory):
  """RFA's geometric median (Pillutla, Kakade and Harchaoui, "Robust Aggregation for Federated
  Learning"), by the smoothed Weiszfeld algorithm, weighted or not.

  Minimises `g(v) = sum_i a_i |v - x_i|` over the clients' values `x_i` flattened over the
  whole structure, `a_i = w_i / sum_j w_j` (`create(value_type, weight_type)`: the clients'
  weights, e.g. their numbers of examples as in RFA; `create(value_type)`: `a_i = 1 / n`).
  From the weighted mean, each iteration sets `b_i = a_i / max(eps, |v - x_i|)` and
  `v = sum_i b_i x_i / sum_i b_i`; it stops after `max_iterations`, or once `g` changes by at
  most `ftol * g(v)` (RFA reports a few iterations suffice). Weights must be non-negative; a
  client whose value or weight is NaN or infinite gets `a_i = 0` (ignored); all ignored (or a
  total weight of 0) gives NaN.

  State `<>`; measurements `<num_iterations=int32>`: the Weiszfeld iterations run.

  Cost, for `n` clients of `d` numbers: `O(R n d)` time for the `R <= max_iterations`
  iterations (one pass over the values each), `O(n d)` memory.

  Args:
    max_iterations: the most Weiszfeld iterations, `>= 1`.
    eps: the smoothing `nu > 0`: distances below it count as `eps` (no division by zero).
    ftol: the relative change of the objective below which the iterations stop, `>= 0`.

  Raises:
    ValueError: if a parameter is out of range.

  Example:
    >>> median = fx.aggregators.GeometricMedianFactory().create(fx.TensorType(np.float32, [2]),
    ...                                                         fx.TensorType(np.float32))
    >>> out = median.next(median.initialize(), [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [50.0, 50.0]],
    ...                   [1.0, 1.0, 1.0, 1.0])
    >>> np.round(out.result, 2)  # The far point pulls it no further than a near one would.
    array([0.5, 0.5], dtype=float32)
  """

  weighted = True

  def __init__(self, max_iterations: int = 100, eps: float = 1e-6, ftol: float = 1e-6):
    _check_int("GeometricMedianFactory", "max_iterations", max_iterations, 1,
               "the most Weiszfeld iterations")
    _check_real("GeometricMedianFactory", "eps", eps, "eps > 0", lambda x: x > 0)
    _check_real("GeometricMedianFactory", "ftol", ftol, "ftol >= 0", lambda x: x >= 0)
    self._max_iterations = int(max_iterations)
    self._eps = float(eps)
    self._ftol = float(ftol)

  def _measurements_type(self):
    return to_type(collections.OrderedDict(num_iterations=np.int32))

  def _rule(self, stacked, weights):
    result, measurements = ops.geometric_median(stacked, weights, self._max_iterations,
                                                self._eps, self._ftol)
    return result, collections.OrderedDict(measurements)


def _check_int(factory: str, name: str, value: Any, low: int, what: str) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise error(TypeError, factory, f"{name} must be an int.", expected=f"an int >= {low}",
                actual=f"{name}={value!r}")
  if value < low:
    raise error(ValueError, factory, f"{name}, {what}, must be >= {low}.",
                expected=f"{name} >= {low}", actual=f"{name}={value!r}")


def _check_real(factory: str, name: str, value: Any, expected: str,
                valid: Callable[[float], bool]) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise error(TypeError, factory, f"{name} must be a number.", expected=expected,
                actual=f"{name}={value!r}")
  if not valid(value):
    raise error(ValueError, factory, f"{name} is out of range.", expected=expected,
                actual=f"{name}={value!r}")
