"""Options every runtime shares."""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
  """Seed of runtime-drawn PRNG keys, and the client count when no argument is at CLIENTS.

  As in TFF, a computation with no argument placed at CLIENTS runs with
  `default_num_clients` clients (0 unless set).
  """

  seed: int = 0
  default_num_clients: Optional[int] = None

  def num_clients(self, n: Optional[int]) -> int:
    if n is not None:
      return n
    return self.default_num_clients or 0

  def __str__(self) -> str:
    return f"seed={self.seed}, default_num_clients={self.default_num_clients}"
