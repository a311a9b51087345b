"""Argument checks shared by every layer (no federax imports: any module may use them)."""

from __future__ import annotations

import operator
from typing import Optional


def check_int(value: object, what: str, *, minimum: Optional[int] = None,
              optional: bool = False) -> Optional[int]:
  """`value` as a Python int: any integer type but bool; None too where `optional`.

  Args:
    value: the argument.
    what: how the error names it, e.g. "ClientSpec(batch_size=...)".
    minimum: the smallest value allowed, if any.
    optional: whether None is allowed (and returned).

  Raises:
    TypeError: if `value` is not an integer (bools are refused).
    ValueError: if it is below `minimum`.

  Example:
    >>> check_int(np.int64(3), "ClientSpec(batch_size=...)", minimum=1)
    3
  """
  if value is None and optional:
    return None
  expected = {None: "an int", 0: "a non-negative int", 1: "a positive int"}.get(
      minimum, f"an int >= {minimum}") + (" or None" if optional else "")
  if isinstance(value, bool):
    raise TypeError(f"{what} expects {expected}, got the bool {value!r}.")
  try:
    number = operator.index(value)
  except TypeError:
    raise TypeError(f"{what} expects {expected}, got {value!r} "
                    f"(a {type(value).__name__}).") from None
  if minimum is not None and number < minimum:
    raise ValueError(f"{what} expects {expected}, got {number}.")
  return int(number)
