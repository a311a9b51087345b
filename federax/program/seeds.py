"""Seeds: checking them, and deriving independent ones from where a draw is in a run."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Optional

import numpy as np

from federax._checks import check_int

__all__ = ["check_seed", "derive_seed", "takes_seed"]


def check_seed(seed: object, where: str) -> Optional[int]:
  """`seed` as a non-negative int, or None.

  Raises:
    TypeError: if `seed` is not an int or None.
    ValueError: if it is negative.
  """
  return check_int(seed, f"{where} (seed)", minimum=0, optional=True)


def derive_seed(*parts: int) -> int:
  """A non-negative 63-bit seed derived from non-negative ints, e.g. (run seed, round, client).

  Different tuples give independent-looking seeds (NumPy's `SeedSequence` hashes them), so a
  training loop can seed each client's preprocessing from where it is in the run and resume
  bit for bit.

  Raises:
    TypeError, ValueError: if a part is not a non-negative int.

  Example:
    >>> derive_seed(0, 3, 7) == derive_seed(0, 3, 7) != derive_seed(0, 3, 8)
    True
  """
  ints = [check_seed(p, "derive_seed(*parts)") for p in parts]
  if any(p is None for p in ints):
    raise TypeError(f"derive_seed(*parts) expects non-negative ints, got {parts!r}.")
  return int(np.random.SeedSequence(ints).generate_state(1, np.uint64)[0] >> np.uint64(1))


def takes_seed(fn: Callable) -> bool:
  """Whether `fn` accepts a `seed=` keyword (assumed for callables that cannot be inspected)."""
  try:
    params = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):
    return True
  return any(p.name == "seed" or p.kind is p.VAR_KEYWORD for p in params)
