"""Elements and specs: stacking pytrees of NumPy arrays and describing them as `TensorType`s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import jax
import numpy as np

from federax.core.errors import RaggedError
from federax.core.types import TensorType

Element = Any  # A pytree of NumPy arrays.


# Elements that differ in shape cannot be stacked into one array per feature: the core's error.
RaggedElementsError = RaggedError


def leaf_names(treedef: Any) -> list[str]:
  """Each leaf's path in `treedef`, for error messages: `['x']`, or `<element>` at the root."""
  paths, _ = jax.tree_util.tree_flatten_with_path(treedef.unflatten([0] * treedef.num_leaves))
  return [jax.tree_util.keystr(p) or "<element>" for p, _ in paths]


def to_numpy(tree: Any) -> Any:
  """The pytree with every leaf converted to a NumPy array."""
  return jax.tree_util.tree_map(np.asarray, tree)


def read_only(x: Any) -> bool:
  """Whether nobody can change the array `x`'s values: it, and every array whose memory it
  views, is read-only (a view of an immutable `bytes` counts; another buffer does not)."""
  while isinstance(x, np.ndarray):
    if x.flags.writeable:
      return False
    x = x.base
  return x is None or isinstance(x, bytes)


def frozen(tree: Any) -> Any:
  """`tree` with its arrays, and the arrays they view, made read-only (for arrays that their
  maker owns, as a loader's: then a dataset of them reads the same every time, `read_only`)."""
  for leaf in jax.tree_util.tree_leaves(tree):
    while isinstance(leaf, np.ndarray):
      leaf.flags.writeable = False
      leaf = leaf.base
  return tree


def stack_flat(elements: list, what: str) -> tuple[list, Any]:
  """Stacks elements leaf by leaf; raises RaggedElementsError naming the first ragged leaf."""
  flats = [jax.tree_util.tree_flatten(e) for e in elements]
  treedef = flats[0][1]
  for _, other in flats:
    if other != treedef:
      raise ValueError(f"{what}: elements have different structures: {treedef} and {other}.")
  columns = list(zip(*([np.asarray(x) for x in leaves] for leaves, _ in flats)))
  for name, column in zip(leaf_names(treedef), columns):
    shapes = sorted({c.shape for c in column})
    if len(shapes) > 1:
      raise RaggedElementsError(
          f"{what}: elements differ in shape at {name}: {', '.join(map(str, shapes[:4]))}"
          f"{' ...' if len(shapes) > 4 else ''}. Stacking needs one shape per feature: use "
          "masked_batch(batch_size) or batch(batch_size, drop_remainder=True) so batches share "
          "one size, or padded_batch() for variable-length features.")
  return [np.stack(c) for c in columns], treedef


def leaf_type(a: Any, drop: int = 0) -> TensorType:
  """The `TensorType` of an array without its first `drop` dims (strings become `np.str_`)."""
  a = np.asarray(a)
  return TensorType(np.str_ if a.dtype.kind in "USO" else a.dtype, a.shape[drop:])


def spec_of(element: Any) -> Any:
  """The element spec of one element: its structure with `TensorType` leaves."""
  return jax.tree_util.tree_map(leaf_type, element)


def map_spec(fn: Callable[[TensorType], Any], spec: Any) -> Any:
  """`fn` applied to every `TensorType` leaf of a spec."""
  return jax.tree_util.tree_map(fn, spec)


def prepend(dim: Optional[int]) -> Callable[[TensorType], TensorType]:
  """A function adding a leading (batch) dim `dim` to a `TensorType`; `None` means it varies."""
  return lambda t: TensorType(t.dtype, None if t.shape is None else (dim,) + t.shape)


def merge_specs(a: Any, b: Any, what: str) -> Any:
  """The spec covering elements of both specs (differing dims become None)."""
  la, ta = jax.tree_util.tree_flatten(a)
  lb, tb = jax.tree_util.tree_flatten(b)
  if ta != tb:
    raise TypeError(f"{what} needs elements of one structure; got {a} and {b}.")
  merged = []
  for name, x, y in zip(leaf_names(ta), la, lb):
    if x.dtype != y.dtype:
      raise TypeError(f"{what} needs one dtype per feature; {name} is {x.dtype} and {y.dtype}.")
    if x.shape is None or y.shape is None or len(x.shape) != len(y.shape):
      merged.append(TensorType(x.dtype, None))
    else:
      merged.append(TensorType(x.dtype, [p if p == q else None for p, q in zip(x.shape, y.shape)]))
  return ta.unflatten(merged)


def empty_from_spec(spec: Any) -> Any:
  """Zero stacked elements of `spec`: leaves of shape `[0, ...]`, unknown dims set to 0."""
  return map_spec(lambda t: np.zeros((0,) + tuple(d or 0 for d in (t.shape or ())), t.dtype),
                  spec)



def with_key(tree: Any, key: str, value: Any) -> Any:
  """A copy of the mapping `tree` with `tree[key] = value`."""
  out = type(tree)(tree)
  out[key] = value
  return out


def call_with_element(fn: Callable[..., Any], element: Any) -> Any:
  """Calls `fn` on an element, passing a tuple element as positional arguments (as tf.data does)."""
  return fn(*element) if type(element) is tuple else fn(element)  # pylint: disable=unidiomatic-typecheck
