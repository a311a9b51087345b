"""Padded batches: how a runtime hands a short batch only to code that masks padded rows.

A dataset written TFF's way (`batch(20)`) ends with a short batch. To run every batch in one
compiled loop, a runtime pads the leading, unknown (`?`) dimension of each element to the
largest batch with zero rows, and keeps a row mask (bool[B], True for real rows) beside it.
Zero rows change any reduction over a batch (a sum, a mean, batch statistics), so the padded
element travels as a `RowMasked` that only a local computation declared with `row_mask=`
receives: `@fx.computation(..., row_mask=fn)` calls `fn(batch, mask)` and passes what it
returns. Any other use raises `RowMaskNotHonoured`, and the runtime runs the call as the real,
unpadded batches instead (the sequential runtime), saying why.

    >>> def with_mask(batch, mask):
    ...   return dict(batch, mask=mask)
    >>> @fx.computation(np.float32, {'x': (np.float32, [None])}, row_mask=with_mask)
    ... def add_sum(total, batch):
    ...   return total + jnp.sum(jnp.where(batch.get('mask', True), batch['x'], 0.0))
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import numpy as np

from federax.core import types as t
from federax.core.errors import RaggedError

__all__ = ["RowMasked", "RowMaskNotHonoured", "find_row_masked", "pad_rows", "row_leaves"]


class RowMasked:
  """An element's payload whose leading (batch) dimension was padded with zero rows.

  Not a pytree on purpose: JAX rejects it, so a padded batch cannot be reduced over by
  accident; `fx.computation(..., row_mask=fn)` unwraps it.

  Attributes:
    value: the padded payload (the internal tuple form of the element).
    mask: bool[B], True for the element's real rows.
  """

  __slots__ = ("value", "mask")

  def __init__(self, value: Any, mask: Any):
    self.value = value
    self.mask = mask

  def __getitem__(self, key) -> RowMasked:
    # A part of a padded batch (`batch.x`) keeps the batch's rows, and so its mask.
    return RowMasked(self.value[key], self.mask)

  def __repr__(self) -> str:
    return f"RowMasked(rows={getattr(self.mask, 'shape', '?')})"


class RowMaskNotHonoured(Exception):
  """A padded batch reached code that does not mask its padded rows (raised while tracing).

  Attributes:
    consumer: what received it: a computation's name, or an intrinsic.
    reason: why padding would change that code's result, a predicate of `consumer`.
    fix: how the code could take padded batches, if it can; None for the generic advice.
  """

  def __init__(self, consumer: Optional[str] = None, reason: Optional[str] = None,
               fix: Optional[str] = None):
    self.consumer = consumer
    self.reason = reason or "reduces over the rows of a batch and does not mask padded rows"
    self.fix = fix
    super().__init__(f"{consumer or 'a computation'} {self.reason}")

  def __reduce__(self):  # Pickled (from a Ray worker) with its fields, not its message.
    return type(self), (self.consumer, self.reason, self.fix)


def find_row_masked(payload: Any) -> Optional[RowMasked]:
  """The first `RowMasked` inside a payload (nested tuples), or None."""
  if isinstance(payload, RowMasked):
    return payload
  if isinstance(payload, tuple):  # Structs; a list is a sequence's elements, never padded.
    for part in payload:
      found = find_row_masked(part)
      if found is not None:
        return found
  return None


@functools.lru_cache(maxsize=256)
def row_leaves(element_type: t.Type) -> tuple[bool, ...]:
  """For each tensor of an element, in payload order: whether its leading dimension is a
  batch's rows, i.e. declared unknown (`float32[?,784]`), so padding may grow it."""
  if isinstance(element_type, t.TensorType):
    return (bool(element_type.shape) and element_type.shape[0] is None,)
  if isinstance(element_type, t.StructType):
    return tuple(f for e in element_type for f in row_leaves(e))
  return ()


def pad_rows(elements: list, flags: tuple[bool, ...], where: str) -> tuple[Any, np.ndarray]:
  """Stacks elements (pytrees of arrays) whose batches differ in rows: `(stacked, rows)`.

  Each leaf flagged in `flags` (leaf order; see `row_leaves`) is padded with zero rows to the
  largest batch `B`, giving `[L, B, ...]`; `rows` is bool `[L, B]`, True for real rows.

  Raises:
    RaggedError: if the elements differ in anything but their number of rows.

  Example:
    >>> stacked, rows = pad_rows([np.ones([2, 3]), np.ones([1, 3])], (True,), 'data')
    >>> stacked.shape, rows.tolist()
    ((2, 2, 3), [[True, True], [True, False]])
  """
  flat = [jax.tree_util.tree_leaves(e) for e in elements]
  if not any(flags) or any(isinstance(x, jax.core.Tracer) for ls in flat for x in ls):
    raise RaggedError(f"{where}: elements have different shapes "
                      f"{sorted({tuple(np.shape(x) for x in ls) for ls in flat})[:3]}...")
  counts = []
  for i, leaves in enumerate(flat):
    sizes = {np.shape(x)[0] for x, row in zip(leaves, flags) if row}
    if len(sizes) > 1:
      raise RaggedError(f"{where}[element {i}]: the parts of a batch have different numbers "
                        f"of rows {sorted(sizes)}")
    counts.append(sizes.pop())
  width, out = max(counts), []
  for k, row in enumerate(flags):
    column = [leaves[k] for leaves in flat]
    shapes = {np.shape(x)[1:] if row else np.shape(x) for x in column}
    if len(shapes) > 1:
      raise RaggedError(f"{where}: elements differ in more than their rows: "
                        f"{sorted(np.shape(x) for x in column)[:3]}...")
    if not row:
      out.append(np.stack(column))
      continue
    stacked = np.zeros((len(column), width) + shapes.pop(), np.asarray(column[0]).dtype)
    for j, x in enumerate(column):
      stacked[j, :len(x)] = x
    out.append(stacked)
  rows = np.arange(width)[None, :] < np.asarray(counts)[:, None]
  return jax.tree_util.tree_structure(elements[0]).unflatten(out), rows
