"""Composing measured processes: in a chain (`f` then `g`) or side by side (`<f(x), g(y)>`)."""

from __future__ import annotations

import collections
from collections.abc import Mapping

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import federated_computation
from federax.core.errors import FederatedTypeError
from federax.core.placements import SERVER
from federax.templates._checks import placed_at
from federax.templates.measured_process import MeasuredProcess, MeasuredProcessOutput


def _checked(op: str, processes: Mapping[str, MeasuredProcess]) -> dict:
  if not isinstance(processes, Mapping) or not processes:
    raise TypeError(f"{op}: expected a non-empty mapping (e.g. an OrderedDict) of names to "
                    f"MeasuredProcesses, got {processes!r}.")
  for name, process in processes.items():
    if not isinstance(process, MeasuredProcess):
      raise TypeError(f"{op}: {name!r} must be a MeasuredProcess, got {process!r}.")
    placed_at(op, f"the state of {name!r}", process.state_type, SERVER)
  return dict(processes)


def _value_type(process: MeasuredProcess) -> t.Type:
  parameter = process.next.type_signature.parameter
  return parameter[1] if isinstance(parameter, t.StructType) and len(parameter) > 1 else None


def _initialize(processes: dict):
  @federated_computation
  def initialize():
    return fi.federated_zip(collections.OrderedDict(
        (name, process.initialize()) for name, process in processes.items()))

  return initialize


def _state_type(processes: dict) -> t.FederatedType:
  return t.FederatedType(t.StructType([(name, p.state_type.member)
                                       for name, p in processes.items()]), SERVER)


def chain_measured_processes(
    measured_processes: Mapping[str, MeasuredProcess]) -> MeasuredProcess:
  """The processes applied in order, each to the previous one's result (TFF's).

  `next(<F=sF, G=sG>, x)` returns `result = G(F(x))`, `state = <F=.., G=..>` and
  `measurements = <F=.., G=..>`.

  Raises:
    FederatedTypeError: if a process does not accept the result of the one before it.

  Example:
    >>> sum_process = fx.aggregators.SumFactory().create(fx.TensorType(np.float32))
    >>> chained = fx.templates.chain_measured_processes({"sum": sum_process})
    >>> float(chained.next(chained.initialize(), [1.0, 2.0]).result)
    3.0
  """
  op = "chain_measured_processes"
  processes = _checked(op, measured_processes)
  names = list(processes)
  for before, after in zip(names, names[1:]):
    produced = processes[before].next.type_signature.result[1]
    accepted = _value_type(processes[after])
    if accepted is None or not accepted.is_assignable_from(produced):
      raise FederatedTypeError(op, f"{after!r} must accept the result of {before!r}.",
                               expected=produced, actual=accepted)

  @federated_computation(_state_type(processes), _value_type(processes[names[0]]))
  def next_fn(state, value):
    states, measurements = collections.OrderedDict(), collections.OrderedDict()
    for name, process in processes.items():
      output = process.next(state[name], value)
      states[name], measurements[name] = output.state, output.measurements
      value = output.result
    return MeasuredProcessOutput(state=fi.federated_zip(states), result=value,
                                 measurements=fi.federated_zip(measurements))

  return MeasuredProcess(_initialize(processes), next_fn)


def concatenate_measured_processes(
    measured_processes: Mapping[str, MeasuredProcess]) -> MeasuredProcess:
  """The processes side by side, each on its own input (TFF's).

  `next(<F=sF, G=sG>, <F=x, G=y>)` returns `result = <F=F(x), G=G(y)>`, the states and the
  measurements likewise named.

  Example:
    >>> total = fx.aggregators.SumFactory().create(fx.TensorType(np.float32))
    >>> both = fx.templates.concatenate_measured_processes({"a": total, "b": total})
    >>> out = both.next(both.initialize(), {"a": [1.0, 2.0], "b": [3.0, 4.0]})
    >>> float(out.result["a"]), float(out.result["b"])
    (3.0, 7.0)
  """
  op = "concatenate_measured_processes"
  processes = _checked(op, measured_processes)
  value_type = t.StructType([(name, _value_type(p)) for name, p in processes.items()])

  @federated_computation(_state_type(processes), value_type)
  def next_fn(state, values):
    states, results, measurements = (collections.OrderedDict() for _ in range(3))
    for name, process in processes.items():
      output = process.next(state[name], values[name])
      states[name], results[name], measurements[name] = (output.state, output.result,
                                                         output.measurements)
    return MeasuredProcessOutput(state=fi.federated_zip(states), result=results,
                                 measurements=fi.federated_zip(measurements))

  return MeasuredProcess(_initialize(processes), next_fn)
