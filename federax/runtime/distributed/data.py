"""`ClientIds`: a cohort named by client ids, each client's dataset loaded where it runs.

On the Ray runtime the driver sends the ids (and the loader, once per worker), never the data:
each worker loads its clients with `load_fn` and keeps them across rounds. On the other
runtimes the ids are loaded in this process, so one program runs on all three. `schedule`
assigns a cohort's clients to workers by their number of examples, keeping a client on the
worker that already holds it.
"""

from __future__ import annotations

import collections.abc
from typing import Any, Callable, Optional, Sequence

import numpy as np

from federax.core import errors


class ClientIds(collections.abc.Sequence):
  """A client argument given as client ids, resolved by `load_fn(client_id)` where it runs.

  Pass it where a computation takes client data (a list with one dataset per client). On
  `fx.runtime.ray` each worker loads (and caches, across rounds) only its own clients; on the
  vectorized and sequential runtimes, indexing it loads the client here.

  Args:
    client_ids: the cohort's client ids (hashable, picklable: strings, ints).
    load_fn: `client_id -> the client's data` (e.g. an `fx.data.Dataset`); it travels to the
      Ray workers pickled, so it must not hold locks, open files or sockets (open files inside).
    num_examples: the clients' numbers of examples, in `client_ids` order (None: all equal),
      which the Ray runtime balances its workers by.

  Example:
    >>> load = lambda cid: fx.data.Dataset.from_tensor_slices(np.arange(cid, dtype=np.float32))
    >>> cohort = fx.runtime.ClientIds([2, 3], load, num_examples=[2, 3])
    >>> len(cohort), [float(sum(ds)) for ds in cohort]
    (2, [1.0, 3.0])
  """

  def __init__(self, client_ids: Sequence[Any], load_fn: Callable[[Any], Any],
               num_examples: Optional[Sequence[int]] = None):
    if not callable(load_fn):
      raise errors.error(TypeError, "fx.runtime.ClientIds", "load_fn must be callable.",
                         expected="client_id -> the client's data", actual=repr(load_fn))
    self.client_ids = list(client_ids)
    self.load_fn = load_fn
    if num_examples is not None:
      num_examples = [int(k) for k in num_examples]
      if len(num_examples) != len(self.client_ids) or any(k < 0 for k in num_examples):
        raise errors.error(
            ValueError, "fx.runtime.ClientIds", "num_examples must give each client's number "
            "of examples (>= 0), in client_ids order.",
            expected=f"{len(self.client_ids)} ints >= 0", actual=repr(num_examples)[:80])
    self.num_examples = num_examples

  def __len__(self) -> int:
    return len(self.client_ids)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self.load_fn(c) for c in self.client_ids[index]]
    return self.load_fn(self.client_ids[index])

  def __repr__(self) -> str:
    return f"fx.runtime.ClientIds({len(self)} clients, load_fn={self.load_fn!r})"


def schedule(sizes: Sequence[int], holders: Sequence[int], workers: int,
             slack: float = 1.25) -> list[np.ndarray]:
  """Each worker's clients (ascending cohort positions, int32): the largest clients first, each
  to the worker that holds it (`holders[i]`, -1: none) while that worker's examples stay within
  `slack` times an even share and its clients within an even share of the cohort (so that
  clients of equal size give blocks of the same sizes round after round: one compiled program
  per worker, not one per new block size), else to the least-loaded worker. Workers left
  without a client are left out (at least one block, empty for an empty cohort).

  Example:
    >>> [b.tolist() for b in schedule([5, 1, 1, 1, 4], [-1, -1, -1, -1, -1], 2)]
    [[0, 2], [1, 3, 4]]
    >>> [b.tolist() for b in schedule([1, 1, 1, 1], [1, 1, 0, 0], 2)]  # Kept where cached.
    [[2, 3], [0, 1]]
  """
  sizes = [max(int(s), 0) for s in sizes]
  share = slack * max(sum(sizes), 1) / workers
  count_share = -(-len(sizes) // workers)
  loads = np.zeros(workers)
  assigned: list = [[] for _ in range(workers)]
  for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):  # Stable: ties in client order.
    holder = holders[i]
    if (0 <= holder < workers and loads[holder] + sizes[i] <= share and
        len(assigned[holder]) < count_share):
      w = holder
    else:
      # Least examples; among equals, fewest clients (then the first worker).
      w = min(range(workers), key=lambda k: (loads[k], len(assigned[k])))
    loads[w] += sizes[i]
    assigned[w].append(i)
  blocks = [np.asarray(sorted(a), np.int32) for a in assigned if a]
  return blocks or [np.zeros(0, np.int32)]
