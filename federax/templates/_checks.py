"""Placement checks shared by the process templates, aggregators and learning blocks."""

from __future__ import annotations

from federax.core import types as t
from federax.core.errors import FederatedTypeError
from federax.core.placements import CLIENTS, Placement


def placed_at(process: str, what: str, type_spec: t.Type, placement: Placement) -> None:
  """Raises `FederatedTypeError` unless `type_spec` is a federated type at `placement`.

  Args:
    process: the process being built (e.g. `AggregationProcess`), named first in the message.
    what: the part of its signature being checked, e.g. `the state`.
    type_spec: that part's type.
    placement: where it must be placed.

  Raises:
    FederatedTypeError: `<process>: <what> must be placed at <placement>.`, expected versus
      actual, the caller's line.
  """
  if not (isinstance(type_spec, t.FederatedType) and type_spec.placement is placement):
    # Written as federated types print: client values in braces, server values without.
    expected = "{T}@CLIENTS" if placement is CLIENTS else f"T@{placement}"
    raise FederatedTypeError(process, f"{what} must be placed at {placement}.",
                             expected=expected, actual=type_spec)
