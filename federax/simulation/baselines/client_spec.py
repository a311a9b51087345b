"""`ClientSpec`: how a baseline task preprocesses each client's dataset (epochs, batches, ...)."""

from __future__ import annotations

import dataclasses
import operator
from typing import Optional

__all__ = ["ClientSpec"]


def _positive_int(name: str, value: object, optional: bool) -> Optional[int]:
  """`value` as an int if it is a positive integer (or None where allowed), else raises."""
  if value is None and optional:
    return None
  allowed = "a positive int" + (" or None" if optional else "")
  if isinstance(value, bool):
    raise TypeError(f"ClientSpec({name}=...) expects {allowed}, got the bool {value!r}.")
  try:
    number = operator.index(value)
  except TypeError:
    raise TypeError(f"ClientSpec({name}=...) expects {allowed}, got {value!r} "
                    f"(a {type(value).__name__}).") from None
  if number < 1:
    raise ValueError(f"ClientSpec({name}=...) expects {allowed}, got {number}.")
  return int(number)


@dataclasses.dataclass(frozen=True)
class ClientSpec:
  """How each client's dataset is preprocessed for a task: TFF's `ClientSpec`.

  A client's examples are shuffled (buffer `shuffle_buffer_size`), repeated `num_epochs`
  times, cut to the first `max_elements` examples, and put in batches of `batch_size` rows
  (with a 'mask' row feature; see `BaselineTaskDatasets`).

  Attributes:
    num_epochs: passes over the client's dataset, >= 1.
    batch_size: examples per batch, >= 1.
    max_elements: at most this many examples per client, counted after the repeat; None
      keeps them all.
    shuffle_buffer_size: the shuffle buffer; None uses the task's default, 1 does not
      shuffle.

  Raises:
    TypeError: if a field is not an int (None where allowed).
    ValueError: if a field is < 1.

  Example:
    >>> ClientSpec(num_epochs=1, batch_size=20)
    ClientSpec(num_epochs=1, batch_size=20, max_elements=None, shuffle_buffer_size=None)
    >>> ClientSpec(num_epochs=0, batch_size=20)
    Traceback (most recent call last):
    ValueError: ClientSpec(num_epochs=...) expects a positive int, got 0.
  """

  num_epochs: int
  batch_size: int
  max_elements: Optional[int] = None
  shuffle_buffer_size: Optional[int] = None

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = _positive_int(field.name, getattr(self, field.name),
                            optional=field.default is None)
      object.__setattr__(self, field.name, value)
