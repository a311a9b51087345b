"""The tree of a hierarchical histogram: its shape, and its nodes summed up from the leaves.

A histogram of `num_bins` leaves is padded with zeros to `arity**(depth - 1)` leaves, and every
node above holds the sum of its `arity` children, up to one root. The tree is kept flat, layer
by layer from the root (TFF's `RaggedTensor.flat_values`): layer `i` has `arity**i` nodes and
starts at `(arity**i - 1) // (arity - 1)`. Depths are computed in integers, never with
floating-point logarithms (TFF's `ceil(log(n) / log(arity))` overshoots for some powers, e.g.
`num_bins=125, arity=5`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from federax.core.errors import error

__all__ = ["build_tree", "create_hierarchical_histogram", "layer_sizes", "num_nodes",
           "row_splits", "tree_depth"]


def tree_depth(num_leaves: int, arity: int) -> int:
  """The number of layers of the complete tree over `num_leaves` leaves, root included.

  Example:
    >>> from federax.analytics.hierarchical_histogram.build_tree_from_leaf import tree_depth
    >>> tree_depth(5, 2), tree_depth(8, 2), tree_depth(125, 5), tree_depth(1, 2)
    (4, 4, 4, 1)
  """
  depth, capacity = 1, 1
  while capacity < num_leaves:
    depth, capacity = depth + 1, capacity * arity
  return depth


def layer_sizes(num_leaves: int, arity: int) -> list[int]:
  """The number of nodes of each layer, root first: `[1, arity, ..., arity**(depth - 1)]`."""
  return [arity**layer for layer in range(tree_depth(num_leaves, arity))]


def num_nodes(num_leaves: int, arity: int) -> int:
  """The number of nodes of the tree (all layers)."""
  return sum(layer_sizes(num_leaves, arity))


def row_splits(num_leaves: int, arity: int) -> np.ndarray:
  """int32 offsets of the layers in the flat tree: `[0, 1, 1 + arity, ..., num_nodes]` (TFF's
  `nested_row_splits[0]`)."""
  return np.cumsum([0, *layer_sizes(num_leaves, arity)]).astype(np.int32)


def build_tree(leaves: jnp.ndarray, arity: int) -> jnp.ndarray:
  """The flat tree over the last axis of `leaves`: `[..., num_bins] -> [..., num_nodes]`.

  Leading axes are carried along (a client axis, a seed axis): no loop over them. The leaves
  are padded with zeros to a power of `arity`; each layer is its children summed in groups of
  `arity`.

  Example:
    >>> from federax.analytics.hierarchical_histogram.build_tree_from_leaf import build_tree
    >>> build_tree(np.array([1, 2, 3, 4, 5]), arity=2).tolist()
    [15, 10, 5, 3, 7, 5, 0, 1, 2, 3, 4, 5, 0, 0, 0]
  """
  leaves = jnp.asarray(leaves)
  sizes = layer_sizes(leaves.shape[-1], arity)
  pad = [(0, 0)] * (leaves.ndim - 1) + [(0, sizes[-1] - leaves.shape[-1])]
  layers = [jnp.pad(leaves, pad)]
  for size in reversed(sizes[:-1]):
    layers.insert(0, layers[0].reshape(*leaves.shape[:-1], size, arity).sum(-1))
  return jnp.concatenate(layers, axis=-1)


def create_hierarchical_histogram(histogram, arity: int) -> list[list]:
  """TFF's NumPy helper: the tree as a list of layers (lists), root first.

  Args:
    histogram: a 1-D array-like of leaf values.
    arity: the branching factor (>= 2).

  Raises:
    ValueError: if `arity < 2`.

  Example:
    >>> from federax.analytics.hierarchical_histogram import build_tree_from_leaf
    >>> build_tree_from_leaf.create_hierarchical_histogram([1, 2, 3], arity=2)
    [[6], [3, 3], [1, 2, 3, 0]]
  """
  if arity < 2:
    raise error(ValueError, "create_hierarchical_histogram", "arity must be at least 2.",
                expected="an int >= 2", actual=arity)
  histogram = np.asarray(histogram)
  flat = np.asarray(build_tree(histogram, arity))
  splits = row_splits(len(histogram), arity)
  return [flat[splits[i]:splits[i + 1]].tolist() for i in range(len(splits) - 1)]

