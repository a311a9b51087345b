"""`ClientSpec`: how a baseline task preprocesses each client's dataset (epochs, batches, ...)."""

from __future__ import annotations

import dataclasses
from typing import Optional

from federax._checks import check_int

__all__ = ["ClientSpec"]


def _positive_int(name: str, value: object, optional: bool) -> Optional[int]:
  """`value` as an int if it is a positive integer (or None where allowed), else raises."""
  return check_int(value, f"ClientSpec({name}=...)", minimum=1, optional=optional)


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
