"""Padded batches: how a runtime hands a short batch only to code that masks padded rows.

A dataset written TFF's way (`batch(20)`) ends with a short batch. To run every batch in one
compiled loop, a runtime pads the leading, unknown (`?`) dimension of each element to the
largest batch with zero rows, and keeps a row mask (bool[B], True for real rows) beside it.
Zero rows change any reduction over a batch (a sum, a mean, batch statistics), so the padded
element travels as a `RowMasked` that only a local computation declared with `row_mask=`
receives: `@fx.computation(..., row_mask=fn)` calls `fn(batch, mask)` and passes what it
returns. A `Sequence.reduce` function (and so a compiled `for batch in dataset:` loop) receives
the batch with each padded tensor a `PaddedTensor`: JAX refuses it, federax's models
(`predict_on_batch`, `loss`, `forward_pass`, the metrics) mask its padded rows, and its
`shape[0]` is its real rows. Any other use raises `RowMaskNotHonoured`, and the runtime runs the
call as the real, unpadded batches instead (the sequential runtime), saying why.

    >>> def with_mask(batch, mask):
    ...   return dict(batch, mask=mask)
    >>> @fx.computation(np.float32, {'x': (np.float32, [None])}, row_mask=with_mask)
    ... def add_sum(total, batch):
    ...   return total + jnp.sum(jnp.where(batch.get('mask', True), batch['x'], 0.0))
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import types as t
from federax.core.errors import RaggedError

__all__ = ["PaddedTensor", "Padding", "RowMasked", "RowMaskNotHonoured", "find_row_masked", "pad_rows",
           "holds_padded", "padded_tensors", "repad", "row_leaves", "unpad"]


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


class _Origin:
  """A padded batch, by its row mask's `id` (the mask lives while the batch's step is traced)."""
  __slots__ = ("mask_id",)

  def __init__(self, mask_id: int):
    self.mask_id = mask_id


@jax.tree_util.register_pytree_node_class
class PaddedTensor:
  """A tensor of a batch padded with zero rows, as a `Sequence.reduce` function receives it.

  Not an array on purpose: JAX and NumPy refuse it, so its padded rows cannot reach a result by
  accident. federax's models take it and mask the padded rows (`FunctionalModel.predict_on_batch`
  returns `PaddedTensor` predictions; `loss` and `forward_pass` weigh the real rows only), and
  `shape[0]` is the number of real rows, a traced int32 (TFF's `tf.shape(y)[0]`). It is a pytree
  (its array and mask), so it passes through `jax.grad`'s auxiliary outputs and the like; what a
  function over its leaves makes of it is still a `PaddedTensor`, which the models check.

  Attributes:
    value: the padded array, `[B, ...]`.
    mask: bool[B], True for the real rows.
    origin: which padded batch it belongs to (static, so a pytree's aux data): tensors of one
      batch share it, and it names the batch's mask, so a mask a function changed is told.
  """

  __slots__ = ("value", "mask", "origin")

  def __init__(self, value: Any, mask: Any, origin: Optional[_Origin] = None):
    self.value = value
    self.mask = mask
    self.origin = _Origin(id(mask)) if origin is None else origin

  def tree_flatten(self):
    return (self.value, self.mask), self.origin

  @classmethod
  def tree_unflatten(cls, origin, children):
    return cls(*children, origin)

  @property
  def shape(self) -> tuple:
    return (jnp.sum(self.mask, dtype=jnp.int32),) + tuple(self.value.shape[1:])

  @property
  def dtype(self) -> Any:
    return self.value.dtype

  @property
  def ndim(self) -> int:
    return self.value.ndim

  def __repr__(self) -> str:
    return f"PaddedTensor({self.value.dtype}{list(self.value.shape)}, real rows traced)"

  def _refuse(self, *args, **kwargs):
    raise TypeError(f"{self!r} is a batch's tensor padded with zero rows: computing on it "
                    "would count the padded rows")

  __array__ = __bool__ = __len__ = __iter__ = __getitem__ = __eq__ = __ne__ = _refuse
  __hash__ = object.__hash__


def _is_padded(x: Any) -> bool:
  return isinstance(x, PaddedTensor)


def padded_tensors(masked: RowMasked, element_type: t.Type) -> Any:
  """The payload of a padded element with each padded tensor (`row_leaves`) a `PaddedTensor`."""
  flags, origin = iter(row_leaves(element_type)), _Origin(id(masked.mask))

  def wrap(payload: Any, ts: t.Type) -> Any:
    if isinstance(ts, t.StructType):
      return tuple(wrap(p, et) for p, et in zip(payload, ts))
    return PaddedTensor(payload, masked.mask, origin) if next(flags) else payload

  return wrap(masked.value, element_type)


def holds_padded(tree: Any) -> bool:
  """Whether `tree` holds a `PaddedTensor`."""
  return any(map(_is_padded, jax.tree_util.tree_leaves(tree, is_leaf=_is_padded)))


class Padding(NamedTuple):
  """The rows of a padded batch: its row mask (bool[B]) and its `PaddedTensor.origin`."""
  mask: Any
  origin: Any


def unpad(tree: Any) -> tuple[Any, Optional[Padding]]:
  """`(tree with each PaddedTensor's array, their batch's Padding or None)`.

  Raises:
    TypeError: if the tensors come from different padded batches, or one's mask is no longer
      its batch's (a function over its leaves changed it).
  """
  found: list = []

  def array(x: Any) -> Any:
    if not _is_padded(x):
      return x
    if id(x.mask) != x.origin.mask_id:
      raise TypeError(f"{x!r} no longer has its batch's row mask (a function over its leaves "
                      "changed it)")
    if found and x.origin.mask_id != found[0].origin.mask_id:
      raise TypeError("tensors of different padded batches are combined")
    found.append(x)
    return x.value

  tree = jax.tree_util.tree_map(array, tree, is_leaf=_is_padded)
  return tree, (Padding(found[0].mask, found[0].origin) if found else None)


def repad(tree: Any, padding: Optional[Padding]) -> Any:
  """Each array of `tree` (rows first) as a `PaddedTensor` of `padding`'s batch; `tree` itself
  if `padding` is None."""
  if padding is None:
    return tree
  return jax.tree_util.tree_map(lambda x: PaddedTensor(x, *padding), tree)


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
