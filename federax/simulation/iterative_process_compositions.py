"""Computations and processes whose clients build their own datasets (TFF's names).

`tff.simulation.compose_dataset_computation_with_*`: given a dataset computation `(T -> U*)`
(`ClientData.dataset_computation` maps a client id to its dataset) and a computation that takes
the clients' datasets `{U*}@CLIENTS`, the composition takes `{T}@CLIENTS` (client ids) instead
and maps the dataset computation over them first. Datasets are then built where the round
runs, not by the caller. On the vectorized runtime the dataset computation runs on the host
and the original computation as its compiled program, so training on client ids gives the same
numbers as training on the datasets.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

from federax.core import types as t
from federax.core.computations import (Computation, FederatedComputation, LocalComputation,
                                       computation, federated_computation)
from federax.core.errors import FederatedTypeError
from federax.core.intrinsics import federated_map
from federax.core.placements import CLIENTS
from federax.core.structure import Struct
from federax.core.values import Value
from federax.learning.templates.learning_process import LearningProcess
from federax.templates.iterative_process import IterativeProcess

__all__ = [
    "compose_dataset_computation_with_computation",
    "compose_dataset_computation_with_iterative_process",
    "compose_dataset_computation_with_learning_process",
    "MultipleMatchingSequenceTypesError", "SequenceTypeNotAssignableError",
    "SequenceTypeNotFoundError",
]


class SequenceTypeNotAssignableError(FederatedTypeError):
  """The computation takes client sequences, none of the dataset computation's type."""


class SequenceTypeNotFoundError(FederatedTypeError):
  """The computation takes no client sequence."""


class MultipleMatchingSequenceTypesError(FederatedTypeError):
  """The computation takes several client sequences of the dataset computation's type."""


def compose_dataset_computation_with_computation(
    dataset_computation: Computation, computation_body: Computation) -> FederatedComputation:
  """`computation_body` taking the dataset computation's arguments at the clients instead.

  With `dataset_computation: (T -> U*)` and `computation_body: ({U*}@CLIENTS -> V)` (or a
  struct parameter with exactly one `{U*}@CLIENTS` element, at any depth), the result has the
  type `({T}@CLIENTS -> V)` (that element replaced): it maps `dataset_computation` over its
  argument, then runs `computation_body`. A mapping's keys need not be in the same order.

  Raises:
    TypeError: if `dataset_computation` takes no argument or returns no sequence.
    SequenceTypeNotFoundError: if `computation_body` takes no client sequence.
    SequenceTypeNotAssignableError: if none of its client sequences has the dataset type.
    MultipleMatchingSequenceTypesError: if several have.

  Example:
    >>> cd = fx.simulation.ClientData.from_dict({'a': {'x': np.arange(3, dtype=np.int32)},
    ...                                          'b': {'x': np.arange(5, dtype=np.int32)}})
    >>> @fx.federated_computation(fx.FederatedType(fx.SequenceType({'x': np.int32}), fx.CLIENTS))
    ... def total(datasets):
    ...   return fx.federated_sum(fx.sequence_sum(datasets))
    >>> by_id = fx.simulation.compose_dataset_computation_with_computation(
    ...     cd.dataset_computation, total)
    >>> str(by_id.type_signature)
    '({str}@CLIENTS -> <x=int32>@SERVER)'
    >>> int(by_id(['a', 'b'])['x'])  # 0+1+2 + 0+1+2+3+4
    13
  """
  op = "compose_dataset_computation_with_computation"
  dataset_type = _dataset_type(op, dataset_computation)
  body_type = computation_body.type_signature
  ids = t.FederatedType(dataset_computation.type_signature.parameter, CLIENTS)
  path, new_parameter, expected = _replace(op, body_type.parameter, dataset_type, ids)
  make_datasets = _returning(dataset_computation, expected)
  names = computation_body._signature.names

  def with_datasets(*args):
    if len(names) > 1:
      values = list(args)
      values[path[0]] = _map_at(values[path[0]], path[1:], make_datasets)
      return computation_body(*values)
    return computation_body(_map_at(args[0], path, make_datasets))

  # The composition's Python parameters are the body's, so it is called as the body is.
  with_datasets.__signature__ = inspect.Signature(
      [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
  with_datasets.__qualname__ = with_datasets.__name__ = (
      f"{computation_body.__wrapped__.__name__}_with_datasets")
  return federated_computation(new_parameter)(with_datasets)


def compose_dataset_computation_with_iterative_process(
    dataset_computation: Computation, process: IterativeProcess) -> IterativeProcess:
  """`process` whose `next` takes the dataset computation's arguments at the clients.

  With `dataset_computation: (T -> U*)` and `process.next: (<S, {U*}@CLIENTS> -> <S, V>)`, the
  result's `next` is `(<S, {T}@CLIENTS> -> <S, V>)`; `initialize` is unchanged.

  Raises:
    TypeError: as `compose_dataset_computation_with_computation`, or if `initialize` returns a
      sequence.
  """
  op = "compose_dataset_computation_with_iterative_process"
  if not isinstance(process, IterativeProcess):
    raise TypeError(f"{op}: expected an IterativeProcess, got {type(process).__name__}.")
  _dataset_type(op, dataset_computation)
  state = process.initialize.type_signature.result
  if t.contains(state, lambda x: isinstance(x, t.SequenceType)):
    raise FederatedTypeError(op, "initialize must not return a dataset.", actual=state)
  next_fn = compose_dataset_computation_with_computation(dataset_computation, process.next)
  return IterativeProcess(process.initialize, next_fn)


def compose_dataset_computation_with_learning_process(
    dataset_computation: Computation, process: LearningProcess) -> LearningProcess:
  """`compose_dataset_computation_with_iterative_process` for a `LearningProcess`, keeping
  `get_model_weights` and `set_model_weights`.

  Example: a FedAvg process trained on client ids, its datasets built per round:

    process = fx.simulation.compose_dataset_computation_with_learning_process(
        client_data.dataset_computation, fx.learning.algorithms.build_weighted_fed_avg(...))
    state, metrics = process.next(state, client_data.client_ids[:10])
  """
  if not isinstance(process, LearningProcess):
    raise TypeError("compose_dataset_computation_with_learning_process: expected a "
                    f"LearningProcess, got {type(process).__name__}.")
  composed = compose_dataset_computation_with_iterative_process(dataset_computation, process)
  return LearningProcess(composed.initialize, composed.next, process.get_model_weights,
                         process.set_model_weights)


def _dataset_type(op: str, dataset_computation: Computation) -> t.SequenceType:
  if not isinstance(dataset_computation, Computation):
    raise TypeError(f"{op}: dataset_computation must be an fx computation, got "
                    f"{dataset_computation!r}.")
  signature = dataset_computation.type_signature
  if not isinstance(signature.result, t.SequenceType):
    raise FederatedTypeError(op, "dataset_computation must return a sequence.",
                             expected="(T -> U*)", actual=signature)
  if signature.parameter is None:
    raise FederatedTypeError(op, "dataset_computation must take an argument (a client id).",
                             expected="(T -> U*)", actual=signature)
  return signature.result


def _matches(ts: t.Type, dataset_type: t.SequenceType) -> bool:
  return (isinstance(ts, t.FederatedType) and ts.placement is CLIENTS
          and isinstance(ts.member, t.SequenceType)
          and ts.member.is_assignable_from(t.aligned_like(ts.member, dataset_type)))


def _replace(op: str, parameter: Optional[t.Type], dataset_type: t.SequenceType,
             ids: t.FederatedType) -> tuple[list, t.Type, t.SequenceType]:
  """(the path to the one matching client sequence, the parameter with it replaced by `ids`,
  the sequence type the body expects there)."""
  found, sequences = [], []

  def walk(ts: t.Type, path: list) -> t.Type:
    if isinstance(ts, t.FederatedType) and isinstance(ts.member, t.SequenceType):
      sequences.append(ts.member)
    if _matches(ts, dataset_type):
      found.append((path, ts.member))
      return ids
    if isinstance(ts, t.StructType):
      return t.StructType([(n, walk(e, path + [i])) for i, (n, e) in enumerate(ts.items())],
                          ts.container_type)
    return ts

  new_parameter = None if parameter is None else walk(parameter, [])
  if len(found) > 1:
    raise MultipleMatchingSequenceTypesError(
        op, "the computation takes more than one client sequence of the dataset type.",
        expected=dataset_type, actual=parameter)
  if not found and sequences:
    raise SequenceTypeNotAssignableError(
        op, "none of the computation's client sequences has the dataset computation's type.",
        expected=dataset_type, actual=", ".join(map(str, sequences)))
  if not found:
    raise SequenceTypeNotFoundError(
        op, "the computation takes no client sequence to build from the dataset computation.",
        expected=f"{{{dataset_type}}}@CLIENTS in the parameter", actual=parameter)
  path, expected = found[0]
  return path, new_parameter, expected


def _returning(dataset_computation: Computation, expected: t.SequenceType) -> Computation:
  """The dataset computation, typed to return `expected` where only a mapping's key order
  differs (datasets are read by key)."""
  signature = dataset_computation.type_signature
  if signature.result == expected or not isinstance(dataset_computation, LocalComputation):
    return dataset_computation
  return computation(signature.parameter, result=expected)(dataset_computation.__wrapped__)


def _map_at(value: Value, path: list, dataset_computation: Computation) -> Any:
  """`value` with the dataset computation mapped over its element at `path`."""
  if not path:
    return federated_map(dataset_computation, value)
  elements = list(value)
  elements[path[0]] = _map_at(elements[path[0]], path[1:], dataset_computation)
  return Struct(zip(value.type_signature.names(), elements))
