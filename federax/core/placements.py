"""Placements: where a federated value lives (`CLIENTS` or `SERVER`)."""

from __future__ import annotations


class Placement:
  """A placement literal. Compare with `is`; there is one object per placement."""

  __slots__ = ("name",)

  def __init__(self, name: str):
    self.name = name

  def __repr__(self) -> str:
    return f"fx.{self.name}"

  def __str__(self) -> str:
    return self.name

  def __reduce__(self):
    return (_placement_by_name, (self.name,))


CLIENTS = Placement("CLIENTS")
SERVER = Placement("SERVER")


def _placement_by_name(name: str) -> Placement:
  return {"CLIENTS": CLIENTS, "SERVER": SERVER}[name]
