"""Placement checks shared by the learning templates: one error text for every block."""

from __future__ import annotations

from federax.core import types as t
from federax.core.errors import FederatedTypeError
from federax.core.computations import Computation


def placed_at(process: str, what: str, type_spec: t.Type, placement) -> None:
  """Raises `FederatedTypeError` unless `type_spec` is a federated type at `placement`."""
  if not (isinstance(type_spec, t.FederatedType) and type_spec.placement is placement):
    raise FederatedTypeError(process, f"{what} must be placed at {placement}.",
                             expected=f"T@{placement}", actual=type_spec)


def parameters(process: str, next_fn: Computation, names: tuple[str, ...]) -> t.StructType:
  """The parameter struct of `next_fn`, which must have exactly `len(names)` parameters."""
  parameter = next_fn.type_signature.parameter
  if not isinstance(parameter, t.StructType) or len(parameter) != len(names):
    raise FederatedTypeError(process, f"next_fn must take ({', '.join(names)}).",
                             actual=next_fn.type_signature)
  return parameter
