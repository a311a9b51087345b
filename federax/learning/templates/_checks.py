"""Placement checks shared by the learning templates: one error text for every block."""

from __future__ import annotations

from federax.core import types as t
from federax.core.errors import FederatedTypeError
from federax.core.computations import Computation
from federax.templates._checks import placed_at as placed_at  # shared with the aggregators


def parameters(process: str, next_fn: Computation, names: tuple[str, ...]) -> t.StructType:
  """The parameter struct of `next_fn`, which must have exactly `len(names)` parameters."""
  parameter = next_fn.type_signature.parameter
  if not isinstance(parameter, t.StructType) or len(parameter) != len(names):
    raise FederatedTypeError(process, f"next_fn must take ({', '.join(names)}).",
                             actual=next_fn.type_signature)
  return parameter
