"""`EstimationProcess`: an iterative process that also reports an estimate from its state."""

from __future__ import annotations

from federax.core.computations import Computation, federated_computation
from federax.core.errors import FederatedTypeError
from federax.templates.iterative_process import IterativeProcess


class EstimationProcess(IterativeProcess):
  """An `IterativeProcess` with a `report` computation: `report(state)` is the current estimate.

  An adaptive clipping norm is one: `next(state, {value}@CLIENTS)` updates the estimate from
  the clients' values, `report(state)` is the norm to clip with this round (TFF's template).

  Args:
    initialize_fn: `( -> S)`.
    next_fn: `(<S, ...> -> S)`.
    report_fn: `(S -> E)`, the estimate.

  Raises:
    FederatedTypeError: if `report_fn` does not accept the state.

  Example:
    >>> initialize = fx.federated_computation(
    ...     lambda: fx.federated_value(np.float32(1.0), fx.SERVER))
    >>> double = fx.computation(np.float32)(lambda x: x * 2)
    >>> next_fn = fx.federated_computation(
    ...     lambda state: fx.federated_map(double, state),
    ...     fx.FederatedType(np.float32, fx.SERVER))
    >>> report = fx.federated_computation(lambda state: state,
    ...                                   fx.FederatedType(np.float32, fx.SERVER))
    >>> process = fx.templates.EstimationProcess(initialize, next_fn, report)
    >>> float(process.report(process.next(process.initialize())))
    2.0
    >>> negate = fx.federated_computation(
    ...     lambda x: fx.federated_map(fx.computation(np.float32)(lambda v: -v), x),
    ...     fx.FederatedType(np.float32, fx.SERVER))
    >>> float(process.map(negate).report(process.initialize()))
    -1.0
  """

  def __init__(self, initialize_fn: Computation, next_fn: Computation, report_fn: Computation):
    super().__init__(initialize_fn, next_fn)
    name = type(self).__name__
    if not isinstance(report_fn, Computation):
      raise TypeError(f"{name}: report_fn must be an fx computation, got {report_fn!r}.")
    parameter = report_fn.type_signature.parameter
    if parameter is None or not parameter.is_assignable_from(self.state_type):
      raise FederatedTypeError(name, "report_fn must take the state initialize_fn returns.",
                               expected=self.state_type,
                               actual="no parameter" if parameter is None else parameter)
    self._report = report_fn

  @property
  def report(self) -> Computation:
    """The computation that reads the current estimate from the state: `(S -> E)`."""
    return self._report

  def map(self, map_fn: Computation) -> EstimationProcess:
    """The same process reporting `map_fn(report(state))` (e.g. a norm scaled by a constant).

    Raises:
      FederatedTypeError: if `map_fn` does not accept the estimate `report` returns.
    """
    if not isinstance(map_fn, Computation):
      raise TypeError(f"{type(self).__name__}.map: map_fn must be an fx computation, "
                      f"got {map_fn!r}.")
    estimate = self._report.type_signature.result
    parameter = map_fn.type_signature.parameter
    if parameter is None or not parameter.is_assignable_from(estimate):
      raise FederatedTypeError(f"{type(self).__name__}.map", "map_fn must take the estimate "
                               "that report returns.", expected=estimate,
                               actual="no parameter" if parameter is None else parameter)
    report = self._report
    mapped = federated_computation(lambda state: map_fn(report(state)), self.state_type)
    return EstimationProcess(self.initialize, self.next, mapped)
