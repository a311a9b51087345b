"""Sequences as padded, masked arrays: the vectorized runtime's form of `T*`."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import types as t
from federax.core.rows import pad_rows as pad_rows  # Shared with the data layer.
from federax.core.rows import row_leaves as row_leaves
from federax.core.datasets import ALIGNMENT as ALIGNMENT  # Shared with the data layer.
from federax.core.datasets import aligned_empty as aligned_empty


class PaddedSequence(NamedTuple):
  """A sequence of `length` elements stored as arrays with a leading axis of padded length.

  Attributes:
    elements: the element payload with a leading axis `[L, ...]` (`[n, L, ...]` for clients).
    mask: bool `[L]` (`[n, L]`), True where an element is real; padding is zeros.
    rows: None, or bool `[L, B]` (`[n, L, B]`) when the elements are batches of different
      sizes (`batch(20)`'s short last one): every leaf whose declared leading dimension is
      unknown (`row_leaves`) is padded to `B` rows with zeros, and `rows` is True for the real
      ones. Only code declared to mask padded rows receives such elements
      (`federax.core.rows`).
  """

  elements: Any
  mask: Any
  rows: Any = None


from federax.core.errors import RaggedError as RaggedError  # one class for every ragged stack


def bucket(length: int, per_doubling: int = 8) -> int:
  """The padded length for `length` elements: `per_doubling` sizes (a power of 2) per doubling,
  so padding stays under `1 / per_doubling` and lengths that differ a little share one compiled
  program. 8 where padded elements cost compute (a masked scan); 1 (powers of 2, fewest
  programs) where they cost only memory (a loop over the real elements)."""
  if length <= per_doubling:
    return length
  step = 2 ** (int(math.log2(length)) - int(math.log2(per_doubling)))
  return -(-length // step) * step


def stack(members: list, where: str) -> Any:
  """Stacks payload pytrees with one shape into arrays with a new leading axis."""
  leaves = [jax.tree_util.tree_leaves(m) for m in members]
  shapes = {tuple(np.shape(x) for x in ls) for ls in leaves}
  if len(shapes) > 1:
    raise RaggedError(f"{where}: values have different shapes {sorted(shapes)[:3]}...")
  traced = any(isinstance(x, jax.core.Tracer) for ls in leaves for x in ls)
  return jax.tree_util.tree_map(lambda *xs: (jnp.stack if traced else np.stack)(xs), *members)


def zeros_like_type(ts: t.Type, leading: tuple = ()) -> Any:
  if isinstance(ts, t.TensorType):
    return np.zeros(leading + tuple(d or 0 for d in ts.shape), ts.dtype)
  return tuple(zeros_like_type(e, leading) for e in ts)


def pad_to(seq: PaddedSequence, length: int) -> PaddedSequence:
  current = seq.mask.shape[0]
  if current == length:
    return seq
  pad = lambda x: np.concatenate([x, np.zeros((length - current,) + x.shape[1:], x.dtype)])
  rows = None if seq.rows is None else pad(seq.rows)
  return PaddedSequence(jax.tree_util.tree_map(pad, seq.elements), pad(seq.mask), rows)
