"""`clients_dropped` in each training round's metrics of a run on the Ray runtime."""

from __future__ import annotations

from typing import Any

CLIENTS_DROPPED = "clients_dropped"


class WithClientsDropped:
  """`process` (a `LearningProcess`), whose `next` adds to the round's metrics
  `clients_dropped`: the clients the Ray runtime's drop policy (`min_clients_per_round`) left
  out of that round, as its `last_call` reports them (a round is one call of `process.next`).
  Everything else is `process`'s.

  Args:
    process: the training process.
    runtime: the Ray runtime the rounds run on (`fx.runtime.ray(...)`).
  """

  def __init__(self, process: Any, runtime: Any):
    self._process = process
    self._runtime = runtime

  def __getattr__(self, name: str) -> Any:
    return getattr(self._process, name)

  def next(self, state: Any, client_data: Any) -> Any:
    out = self._process.next(state, client_data)
    dropped = self._runtime.last_call.get(CLIENTS_DROPPED, 0)
    return out._replace(metrics={**out.metrics, CLIENTS_DROPPED: dropped})
