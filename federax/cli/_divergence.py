"""Stops a training run that diverged: a global model holding a NaN or Inf, or a round in which
every client's update was dropped as not finite (the model can only stay where it is)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

FIX = "lower --client-lr or --server-lr and start a new run"


class DivergedError(Exception):
  """Training diverged; the message is one line naming the round and the last checkpoint."""


class StopWhenDiverged:
  """`process` (a `LearningProcess`), whose `next` raises `DivergedError` after a round that
  diverged, before its metrics are released or its state saved: the checkpoints on disk stay
  those of the last sound round. Everything else is `process`'s.

  Args:
    process: the training process.
    first_round: the number of the round of the first `next` call.
    last_saved: `() -> int`, the round of the latest checkpoint (for the message).
  """

  def __init__(self, process: Any, first_round: int, last_saved: Any):
    self._process = process
    self._round = first_round
    self._last_saved = last_saved

  def __getattr__(self, name: str) -> Any:
    return getattr(self._process, name)

  def next(self, state: Any, client_data: Any) -> Any:
    out = self._process.next(state, client_data)
    round_num, self._round = self._round, self._round + 1
    weights = getattr(out.state, "global_model_weights", None)
    if weights is None:
      weights = self._process.get_model_weights(out.state)
    bad = [jax.tree_util.keystr(path)
           for path, leaf in jax.tree_util.tree_leaves_with_path(weights) if not _finite(leaf)]
    if bad:
      self._stop(round_num, f"the model's weights are no longer finite (NaN or Inf in "
                 f"{', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})")
    dropped = _num_non_finite_clients(out.metrics)
    if dropped is not None and dropped > 0 and dropped == len(client_data):
      self._stop(round_num, f"the updates of all {dropped} clients were NaN or Inf, so none "
                 "was applied and the model cannot improve")
    return out

  def _stop(self, round_num: int, why: str) -> None:
    raise DivergedError(f"training diverged in round {round_num}: {why}; the latest "
                        f"checkpoint is of round {self._last_saved()}; {FIX}")


def _finite(leaf: Any) -> bool:
  array = np.asarray(leaf)
  if array.dtype.kind in "biu":
    return True
  return bool(np.isfinite(array if array.dtype.kind in "fc" else array.astype(np.float32)).all())


def _num_non_finite_clients(metrics: Any) -> Any:
  try:
    return int(metrics["client_work"]["train"]["num_non_finite_clients"])
  except (KeyError, TypeError, IndexError):
    return None
