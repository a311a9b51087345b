"""`add_measurements`: a factory reporting extra measurements of the client values or the
result besides its inner factory's (TFF's)."""

from __future__ import annotations

import collections
import inspect
from collections.abc import Mapping
from typing import Any, Callable, Optional

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import callable_name
from federax.core.errors import error
from federax.core.placements import SERVER
from federax.core.values import Value, to_value
from federax.templates.measured_process import MeasuredProcessOutput
from federax.aggregators.factory import (AggregationFactory, AggregationProcess,
                                         UnweightedAggregationFactory,
                                         WeightedAggregationFactory, next_computation)

_NAME = "add_measurements"


def add_measurements(inner_agg_factory: AggregationFactory, *,
                     client_measurement_fn: Optional[Callable[..., Mapping]] = None,
                     server_measurement_fn: Optional[Callable[..., Mapping]] = None
                     ) -> AggregationFactory:
  """Wraps `inner_agg_factory` so its processes report more measurements (TFF's).

  Both functions run inside the process's `next` (a federated computation), on federated
  values, and return a mapping of names to values placed at SERVER (they aggregate what they
  measure themselves, e.g. with `fx.federated_max`):
  - `client_measurement_fn(value)` (unweighted) or `client_measurement_fn(value, weight)`
    (weighted): `value` is `{V}@CLIENTS`, `weight` `{W}@CLIENTS`;
  - `server_measurement_fn(result)`: `result` is the inner aggregate, `R@SERVER`.
  The new entries are added to the inner measurements (a named struct, or empty), client ones
  first; as in TFF's dict update, a name already there keeps its place and takes the new value.
  State and result are the inner process's. The factory is weighted exactly when the inner one
  is; a weighted process calls `client_measurement_fn(value, weight)`, an unweighted one
  `client_measurement_fn(value)`.

  Args:
    inner_agg_factory: the factory to wrap.
    client_measurement_fn: measures the client values (and weights).
    server_measurement_fn: measures the aggregate.

  Raises:
    TypeError: an inner factory that is not a factory, or a function taking the wrong number
      of arguments. ValueError: neither function given.

  Example:
    >>> factory = fx.aggregators.add_measurements(
    ...     fx.aggregators.SumFactory(),
    ...     client_measurement_fn=lambda value: {"largest": fx.federated_max(value)})
    >>> process = factory.create(fx.TensorType(np.float32))
    >>> output = process.next(process.initialize(), [1.0, 5.0, 2.0])
    >>> float(output.result), float(output.measurements["largest"])
    (8.0, 5.0)
  """
  if not isinstance(inner_agg_factory, AggregationFactory):
    raise error(TypeError, _NAME, "inner_agg_factory must be an aggregation factory.",
                actual=repr(inner_agg_factory), hint="e.g. fx.aggregators.MeanFactory()")
  if client_measurement_fn is None and server_measurement_fn is None:
    raise error(ValueError, _NAME, "give client_measurement_fn, server_measurement_fn or both.")
  weighted = inner_agg_factory.weighted
  if client_measurement_fn is not None:
    # A weighted factory may also be created unweighted: the count is checked by `create`.
    _check_arity("client_measurement_fn", client_measurement_fn, (1, 2) if weighted else (1,),
                 "(value, weight) for a weighted factory" if weighted else "(value)")
  if server_measurement_fn is not None:
    _check_arity("server_measurement_fn", server_measurement_fn, (1,), "(result)")
  cls = _WeightedMeasured if weighted else _UnweightedMeasured
  return cls(inner_agg_factory, client_measurement_fn, server_measurement_fn)


def _arity(fn: Callable) -> Optional[int]:
  try:
    return len(inspect.signature(fn).parameters)
  except (TypeError, ValueError):  # A callable whose signature Python cannot read.
    return None


def _check_arity(arg: str, fn: Any, counts: tuple, shape: str, where: str = _NAME) -> None:
  if not callable(fn):
    raise error(TypeError, where, f"{arg} must be a function.", actual=repr(fn))
  count = _arity(fn)
  if count is not None and count not in counts:
    raise error(TypeError, where, f"{arg} must take {shape}.",
                expected=" or ".join(f"{c} parameter(s)" for c in counts),
                actual=f"{callable_name(fn)} takes {count}")


class _Measured(AggregationFactory):
  """The inner factory's processes, with the measurement functions' entries added."""

  def __init__(self, inner: AggregationFactory, client_fn: Optional[Callable],
               server_fn: Optional[Callable]):
    self._inner = inner
    self._client_fn = client_fn
    self._server_fn = server_fn

  def __repr__(self) -> str:
    return f"<add_measurements({type(self._inner).__name__})>"

  def create(self, value_type: Any, weight_type: Any = None) -> AggregationProcess:
    if weight_type is not None and not self.weighted:
      raise error(TypeError, f"{_NAME}(...).create", "the inner factory takes no weights, so "
                  "neither does this one.", actual=f"weight_type {weight_type}",
                  hint="wrap a weighted factory, e.g. fx.aggregators.MeanFactory()")
    return super().create(value_type, weight_type)

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    weighted = weight_type is not None
    signature = "value_type, weight_type" if weighted else "value_type"
    where = f"{_NAME}(...).create({signature})"
    if self._client_fn is not None:
      _check_arity("client_measurement_fn", self._client_fn, (2,) if weighted else (1,),
                   "(value, weight) when weighted" if weighted else "(value) when unweighted",
                   where)
    inner = (self._inner.create(value_type, weight_type) if weighted
             else self._inner.create(value_type))
    measured = inner.next.type_signature.result[2].member
    if not (isinstance(measured, t.StructType)
            and (len(measured) == 0 or all(measured.names()))):
      raise error(TypeError, where, "the inner measurements must be a struct of named "
                  "entries (or empty) to add entries to.", actual=measured)
    client_fn, server_fn = self._client_fn, self._server_fn

    def step(state, value, weight=None):
      output = (inner.next(state, value) if weight is None
                else inner.next(state, value, weight))
      entries = collections.OrderedDict(
          (name, output.measurements[i]) for i, name in enumerate(measured.names()))
      if client_fn is not None:
        new = client_fn(value) if weight is None else client_fn(value, weight)
        entries.update(_server_entries(where, "client_measurement_fn", new))
      if server_fn is not None:
        entries.update(_server_entries(where, "server_measurement_fn", server_fn(output.result)))
      measurements = (fi.federated_zip(entries) if entries
                      else fi.federated_value((), SERVER))
      return MeasuredProcessOutput(output.state, output.result, measurements)

    next_fn = next_computation(where, inner.initialize.type_signature.result, value_type,
                               weight_type, step)

    return AggregationProcess(inner.initialize, next_fn)


class _UnweightedMeasured(_Measured, UnweightedAggregationFactory):
  weighted = False


class _WeightedMeasured(_Measured, WeightedAggregationFactory):
  weighted = True


def _server_entries(where: str, fn_name: str, returned: Any) -> list:
  """`(name, value@SERVER)` pairs of what a measurement function returned."""
  problem = f"{fn_name} must return a mapping of names to values placed at SERVER."
  if isinstance(returned, Value) and isinstance(returned.type_signature, t.FederatedType):
    # An already zipped `<name=..,...>@SERVER`: its elements.
    member = returned.type_signature.member
    if (returned.type_signature.placement is SERVER and isinstance(member, t.StructType)
        and all(member.names())):
      return [(name, returned[i]) for i, name in enumerate(member.names())]
    raise error(TypeError, where, problem, actual=returned.type_signature)
  if not isinstance(returned, Mapping):
    raise error(TypeError, where, problem, actual=repr(returned),
                hint="e.g. return {'max': fx.federated_max(value)}")
  entries = []
  for name, obj in returned.items():
    try:
      value = to_value(obj)
    except TypeError:
      raise error(TypeError, where, problem, actual=f"{name!r}: {obj!r}") from None
    if isinstance(value.type_signature, t.StructType) and len(value.type_signature):
      value = fi.federated_zip(value)  # A nested mapping of server values.
    ts = value.type_signature
    if not (isinstance(name, str) and isinstance(ts, t.FederatedType) and ts.placement is SERVER):
      raise error(TypeError, where, problem, actual=f"{name!r}: {ts}",
                  hint="aggregate client values first, e.g. fx.federated_mean(value)")
    entries.append((name, value))
  return entries
