"""The next round's client datasets read while this round's program runs.

A training loop passes the same client datasets round after round. A cohort of datasets over
read-only arrays (the loaders') is kept between calls (`stacking.CohortCache`); one over
writable arrays, written TFF's way (no `cache()`), is read again every round (shuffles,
batches, a `map`'s function once per batch), as tf.data does, then stacked and padded. That is
Python on one core while the compiled program waits, or the program on the device while
Python waits. When a call's
cohort of datasets is the one of the call before (the same dataset objects), the runtime reads
it again for the next call on a background thread while this call's program runs, and waits
for that read before the call returns: the next call with those datasets takes the stacked
cohort as it is, and no reading runs outside a call. A dataset is a value (iterating it twice
gives the same elements), so the values are the ones a read at the next call would give.

What it costs: a cohort read once more than it is used, after the last round; one cohort's
stacked arrays held between calls (at most `READ_AHEAD_BYTES`); and a dataset's pipeline runs
during the call before the one that uses it, on another thread, so its `map` functions must be
pure (as `Dataset.map` asks) and its source arrays unchanged between rounds (as a value's
are). It pays when a core is free while the program runs; with the other core busy the
overlapped reading slows the program about as much as it saves, so it is off by default:
`fx.runtime.vectorized(read_ahead=True)` turns it on.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Hashable, Optional

import jax
import numpy as np

READ_AHEAD_BYTES = 2**28
"""The largest stacked cohort read ahead (256 MB): above it, a second copy held between calls
costs more memory than the overlap is worth."""


def payload_bytes(payload: Any) -> int:
  return sum(x.nbytes for x in jax.tree_util.tree_leaves(payload) if isinstance(x, np.ndarray))


class ReadAhead:
  """Cohorts read for the next call: at most `size` kept, taken once.

  A call `begin`s, `note`s each cohort it stacked (with how to read it again), `start`s once its
  program is dispatched, and `finish`es before it returns. A noted cohort is read ahead when one
  of the `calls` calls before noted it too, or it was taken from here: a loop over the same
  clients, also one that calls other computations in between (an evaluation each round).
  """

  def __init__(self, size: int = 2, calls: int = 4):
    self.size = size
    self._entries: list = []  # (key, datasets, payload), most recent last.
    self._noted: list = []  # (key, datasets, read) of this call.
    self._recent = collections.deque(maxlen=calls)  # The keys each call before noted.
    self._taken: set = set()
    self._pending: list = []  # (key, datasets, Future).
    self._pool: Optional[ThreadPoolExecutor] = None
    self._lock = threading.Lock()

  def begin(self) -> None:
    self._noted, self._taken, self._pending = [], set(), []

  def take(self, key: Hashable) -> Optional[Any]:
    """The cohort read ahead for `key`, removed from here; None if there is none."""
    with self._lock:
      for i, (k, _, payload) in enumerate(self._entries):
        if k == key:
          del self._entries[i]
          self._taken.add(key)
          return payload
    return None

  def note(self, key: Optional[Hashable], datasets: list, read: Callable[[], Any],
           payload: Any) -> None:
    """A cohort this call stacked: `read()` gives the same `payload` again."""
    if key is not None and payload_bytes(payload) <= READ_AHEAD_BYTES:
      self._noted.append((key, datasets, read))

  def start(self) -> None:
    """Reads, on the background thread, the noted cohorts that a loop will ask for again."""
    noted, self._noted = self._noted, []
    recent = set().union(*self._recent)
    self._recent.append({key for key, _, _ in noted})
    for key, datasets, read in noted:
      if key in recent or key in self._taken:
        if self._pool is None:
          self._pool = ThreadPoolExecutor(1, thread_name_prefix="federax-read-ahead")
        self._pending.append((key, datasets, self._pool.submit(read)))

  def finish(self) -> None:
    """Waits for this call's reads and keeps those that succeeded (a failed one is read, and
    fails, in the call that needs it)."""
    pending, self._pending = self._pending, []
    for key, datasets, future in pending:
      payload = _result(future)
      if payload is None:
        continue
      with self._lock:
        self._entries = [e for e in self._entries if e[0] != key]
        self._entries = self._entries[-(self.size - 1):] if self.size > 1 else []
        self._entries.append((key, datasets, payload))


def _result(future: Future) -> Optional[Any]:
  try:
    return future.result()
  except Exception:  # pylint: disable=broad-except
    return None
