"""The source nodes: rows of stacked arrays, or a list of ragged elements."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from federax.data._elements import (RaggedElementsError, frozen, leaf_type, merge_specs,
                                    read_only, spec_of, stack_flat, to_numpy)
from federax.data._node import Node, min_limit
from federax.data._plan import Plan, row_index


class Slices(Node):
  """The source: rows of stacked arrays."""

  def __init__(self, leaves: list, treedef: Any):
    self.leaves, self.treedef, self.n = leaves, treedef, len(leaves[0])

  @classmethod
  def from_tree(cls, tree: Any) -> Slices:
    tree = jax.tree_util.tree_map(np.asarray, tree, is_leaf=lambda x: isinstance(x, list))
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
    if not with_paths:
      raise ValueError(f"from_tensor_slices() expects a pytree of arrays, got {tree!r}.")
    names = [jax.tree_util.keystr(p) or "<tensors>" for p, _ in with_paths]
    leaves = [np.asarray(x) for _, x in with_paths]
    scalars = [n for n, x in zip(names, leaves) if x.ndim == 0]
    if scalars:
      raise ValueError(f"from_tensor_slices() slices along a leading axis, but {', '.join(scalars)}"
                       " has shape () (a scalar). Use from_elements() for a list of elements.")
    lengths = [x.shape[0] for x in leaves]
    if len(set(lengths)) > 1:
      shown = ", ".join(f"{n}: {k}" for n, k in zip(names, lengths))
      raise ValueError("from_tensor_slices() expects arrays sharing one leading (example) axis; "
                       f"got lengths {shown}.")
    return cls(leaves, treedef)

  def cardinality(self) -> int:
    return self.n

  def immutable(self) -> bool:
    return all(read_only(x) for x in self.leaves)

  def spec(self) -> Any:
    return self.treedef.unflatten([leaf_type(x, drop=1) for x in self.leaves])

  def iterate(self, path):
    for i in range(self.n):
      yield self.treedef.unflatten([x[i] for x in self.leaves])

  def plan(self, path, limit):
    return Plan(self.leaves, self.treedef, row_index(min_limit(self.n, limit)))


class List(Node):
  """Ragged elements kept as a list (named for `Dataset`'s repr, `<Dataset list: ...>`)."""

  def __init__(self, elements: list):
    self.items = [to_numpy(e) for e in elements]

  def cardinality(self) -> int:
    return len(self.items)

  def immutable(self) -> bool:
    return all(read_only(x) for item in self.items for x in jax.tree_util.tree_leaves(item))

  def spec(self) -> Any:
    spec = spec_of(self.items[0])
    for e in self.items[1:]:
      spec = merge_specs(spec, spec_of(e), "from_elements()")
    return spec

  def iterate(self, path):
    return iter(self.items)

  def plan(self, path, limit):
    return None


def elements_node(elements: list) -> Node:
  """The source of `Dataset.from_elements`: `Slices` when the shapes agree, else a `List`."""
  if not elements:
    raise ValueError("from_elements() expects at least one element, got an empty sequence.")
  try:
    leaves, treedef = stack_flat(elements, "from_elements()")
    return Slices(frozen(leaves), treedef)  # Stacked copies, the dataset's own: read-only.
  except RaggedElementsError:
    return List(elements)
