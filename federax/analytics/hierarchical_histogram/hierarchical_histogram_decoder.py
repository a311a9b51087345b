"""`HierarchicalHistogramDecoder` (TFF's): node, range and quantile queries on a (noised)
hierarchical histogram, Honaker's estimates, and least-squares consistency, at the server."""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from federax.core.errors import error

__all__ = ["HierarchicalHistogramDecoder"]

_NAME = "HierarchicalHistogramDecoder"


def _layers(hierarchical_histogram: Any) -> list[np.ndarray]:
  """The tree's layers, root first, as float64 arrays, from any of its forms."""
  value = hierarchical_histogram
  if isinstance(value, dict) and "flat_values" in value:
    flat = np.asarray(value["flat_values"], np.float64)
    splits = value["nested_row_splits"]
    splits = np.asarray(splits[0] if isinstance(splits, (list, tuple)) else splits, np.int64)
    return [flat[splits[i]:splits[i + 1]] for i in range(len(splits) - 1)]
  if hasattr(value, "to_list"):  # A tf.RaggedTensor, as TFF's decoder takes.
    value = value.to_list()
  try:
    return [np.asarray(layer, np.float64).reshape(-1) for layer in value]
  except (TypeError, ValueError):
    raise error(TypeError, _NAME, "the hierarchical histogram must be a tree of layers.",
                expected="the process's <flat_values, nested_row_splits>, or a list of 1-D "
                "layers (root first)", actual=type(hierarchical_histogram).__name__) from None


class HierarchicalHistogramDecoder:
  """Answers queries on a hierarchical histogram (TFF's decoder).

  The tree is `tree[layer][index]`, layer 0 the root and the last layer the (padded) leaves.
  With differential privacy every node carries independent noise; a range query sums the
  fewest nodes that cover the range (about `2 * (arity - 1) * depth`), so its noise grows with
  the log of the range, not its length. Two optional estimates lower the error further:
  `use_efficient=True` combines each node with its subtree and the rest of the tree (Honaker,
  "Efficient Use of Differentially Private Binary Trees"); `enforce_consistency()` replaces the
  tree by its least-squares consistent fit (Hay et al., "Boosting the Accuracy of
  Differentially Private Histograms Through Consistency", 2010), computed in two linear passes
  (TFF solves a dense `[num_nodes, num_leaves]` least-squares problem; the results are equal).

  Args:
    hierarchical_histogram: `ServerOutput.aggregated_hierarchical_histogram` (TFF's ragged
      tensor components `<flat_values, nested_row_splits>`), or a list of layers, root first.
    lower_bound: the lower end of the data range.
    upper_bound: the upper end of the data range.
    use_efficient: answer node queries with Honaker's estimates.
    num_bins: the histogram's number of bins before padding (a federax addition); it sets the
      width of a bin for `quantile_query`. Default: the number of leaves, as TFF, which is
      right only when `num_bins` is a power of the arity.

  Raises:
    TypeError: if the histogram is not a tree. ValueError: if its layers do not have the
      sizes of a complete tree (1, arity, arity**2, ...), or `num_bins` exceeds the leaves.

  Example:
    >>> tree = [[10], [3, 7], [1, 2, 3, 4]]
    >>> decoder = fx.analytics.HierarchicalHistogramDecoder(tree, 0.0, 4.0)
    >>> decoder.node_query(1, 1), decoder.range_query(1, 3), decoder.quantile_query(0.5)
    (7.0, 9.0, (2.0, 3.0))
  """

  def __init__(self, hierarchical_histogram: Any, lower_bound: float, upper_bound: float,
               use_efficient: bool = False, *, num_bins: Optional[int] = None):
    layers = _layers(hierarchical_histogram)
    sizes = [len(layer) for layer in layers]
    arity = sizes[1] if len(sizes) > 1 else 2
    if not sizes or arity < 2 or sizes != [arity**i for i in range(len(sizes))]:
      raise error(ValueError, _NAME, "the layers must have the sizes of a complete tree.",
                  expected="1, arity, arity**2, ... nodes per layer (root first), arity >= 2",
                  actual=f"layers of {sizes} nodes")
    self._layers = layers
    self._arity = arity
    self._num_layers = len(layers)
    self._size = sizes[-1]
    if num_bins is not None and not 1 <= num_bins <= self._size:
      raise error(ValueError, _NAME, "num_bins must be at least 1 and at most the number of "
                  "leaves.", expected=f"1 <= num_bins <= {self._size}", actual=num_bins)
    self._num_bins = self._size if num_bins is None else int(num_bins)
    self._lower_bound = float(lower_bound)
    self._upper_bound = float(upper_bound)
    self._use_efficient = bool(use_efficient)
    self._efficient: Optional[list[np.ndarray]] = None

  # --- The tree's geometry ---------------------------------------------------------------------

  def _leaf_span(self, layer: int, index: int) -> tuple[int, int]:
    """The leftmost and rightmost leaves under node (layer, index)."""
    width = self._arity**(self._num_layers - 1 - layer)
    return index * width, (index + 1) * width - 1

  def _children_sums(self, values: np.ndarray) -> np.ndarray:
    return values.reshape(-1, self._arity).sum(axis=1)

  def _check_index(self, layer: int, index: int) -> None:
    if not 0 <= layer < self._num_layers:
      raise error(ValueError, f"{_NAME}.node_query", "the layer is out of range.",
                  expected=f"0 <= layer < {self._num_layers}", actual=layer)
    if not 0 <= index < self._arity**layer:
      raise error(ValueError, f"{_NAME}.node_query", f"the index is out of range for layer "
                  f"{layer}.", expected=f"0 <= index < {self._arity**layer}", actual=index)

  # --- Honaker's estimates ---------------------------------------------------------------------

  def _efficient_tree(self) -> list[np.ndarray]:
    """Every node's Honaker estimate (TFF's `node_query` with `use_efficient`), all at once."""
    if self._efficient is not None:
      return self._efficient
    h, k, depth = self._layers, self._arity, self._num_layers
    below = [None] * depth  # Each node from its own value and its subtree, bottom-up.
    below[-1] = h[-1]
    weight = k / (k + 1)
    for layer in range(depth - 2, -1, -1):
      below[layer] = weight * h[layer] + (1 - weight) * self._children_sums(below[layer + 1])
    above = [None] * depth  # Each node from its value and the tree outside its subtree.
    above[0] = h[0]
    for layer in range(1, depth):
      rest = self._others(above[layer - 1], below[layer])
      weight = 1 / (3 - k**(layer - depth + 1))
      above[layer] = weight * h[layer] + (1 - weight) * rest
    estimates = [below[0]]
    for layer in range(1, depth):
      rest = self._others(above[layer - 1], below[layer])
      below_variance = 1 / (2 - k**(layer - depth + 1))
      above_variance = 1 / (3 - k**(layer - depth + 1))
      weight = (1 / below_variance) / (1 / below_variance + 1 / (below_variance + above_variance))
      estimates.append(weight * below[layer] + (1 - weight) * rest)
    self._efficient = estimates
    return estimates

  def _others(self, parents: np.ndarray, children: np.ndarray) -> np.ndarray:
    """Each child's parent minus the child's siblings (its estimate from above)."""
    siblings = np.repeat(self._children_sums(children), self._arity) - children
    return np.repeat(parents, self._arity) - siblings

  # --- Queries ---------------------------------------------------------------------------------

  def node_query(self, layer: int, index: int) -> float:
    """The value of node `index` of layer `layer` (Honaker's estimate with `use_efficient`).

    Raises:
      ValueError: if the node does not exist.
    """
    self._check_index(layer, index)
    values = self._efficient_tree() if self._use_efficient else self._layers
    return float(values[layer][index])

  def range_query(self, left: int, right: int) -> float:
    """The sum of leaves `left` to `right` (both included), from the fewest covering nodes.

    Raises:
      ValueError: if `[left, right]` is not inside `[0, num_leaves)` or `left > right`.
    """
    where = f"{_NAME}.range_query"
    if left < 0 or right >= self._size:
      raise error(ValueError, where, "the range is outside the leaves.",
                  expected=f"0 <= left <= right < {self._size}", actual=f"[{left}, {right}]")
    if left > right:
      raise error(ValueError, where, "left must not exceed right.",
                  expected="left <= right", actual=f"left={left}, right={right}")
    return float(self._range_query(left, right, 0, 0))

  def _range_query(self, left: int, right: int, layer: int, index: int) -> float:
    first, last = self._leaf_span(layer, index)
    if left > last or right < first:
      return 0.0
    if left <= first and last <= right:
      return self.node_query(layer, index)
    return sum(self._range_query(left, right, layer + 1, child)
               for child in range(index * self._arity, (index + 1) * self._arity))

  def _check_consistency(self) -> bool:
    return all(np.allclose(self._layers[layer], self._children_sums(self._layers[layer + 1]))
               for layer in range(self._num_layers - 1))

  def enforce_consistency(self) -> None:
    """Replaces the tree by the consistent tree closest to it in least squares.

    Consistent: every node equals the sum of its children. For a tree whose nodes carry
    independent noise of equal variance this is the best linear unbiased estimate (Hay et al.,
    Theorem 3), computed bottom-up then top-down. Turns `use_efficient` off (TFF's: the two
    together do not improve further).
    """
    self._use_efficient = False
    self._efficient = None
    if self._check_consistency():
      return
    h, k, depth = self._layers, self._arity, self._num_layers
    # Bottom-up: z = each node's own value and its children's z, weighted by their variances.
    z = [None] * depth
    z[-1] = h[-1]
    for layer in range(depth - 2, -1, -1):
      height = depth - layer  # Leaves have height 1.
      a = (k**height - k**(height - 1)) / (k**height - 1)
      z[layer] = a * h[layer] + (1 - a) * self._children_sums(z[layer + 1])
    # Top-down: give each family the difference between its parent and its children's sum.
    fitted = [z[0]]
    for layer in range(1, depth):
      gap = fitted[-1] - self._children_sums(z[layer])
      fitted.append(z[layer] + np.repeat(gap, k) / k)
    self._layers = fitted

  def quantile_query(self, q: float) -> tuple[float, float]:
    """The `[low, high)` range of the bin holding the q-quantile of the records.

    The bin of the record of rank `max(1, ceil(q * total))` in sorted order (the lower
    q-quantile; q=0 gives the minimum's bin, q=1 the maximum's), found by walking down the
    tree. TFF's walk may instead return an empty bin after it when a node's cumulative sum
    equals `q * total` exactly. The bin's width is `(upper - lower) / num_bins`.

    Raises:
      ValueError: if the tree is not consistent (e.g. noised: call `enforce_consistency()`
        first), holds no records, or `q` is outside [0, 1].
    """
    where = f"{_NAME}.quantile_query"
    if not self._check_consistency():
      raise error(ValueError, where, "the tree is not consistent: a node differs from the sum "
                  "of its children (noise does this).", hint="call enforce_consistency() "
                  "before quantile_query")
    if not 0 <= q <= 1:
      raise error(ValueError, where, "q must lie in [0, 1].", actual=q)
    total = float(self._layers[0][0])
    if not total > 0:
      raise error(ValueError, where, "the histogram holds no records: it has no quantiles.",
                  actual=f"a total of {total}")
    target = q * total
    index = 0
    for layer in range(1, self._num_layers):
      children = self._layers[layer][index * self._arity:(index + 1) * self._arity]
      cumulative = np.cumsum(children)
      reached = np.nonzero((cumulative >= target) & (cumulative > 0))[0]
      child = int(reached[0]) if reached.size else self._arity - 1
      target -= float(cumulative[child - 1]) if child else 0.0
      index = index * self._arity + child
    width = (self._upper_bound - self._lower_bound) / self._num_bins
    low = self._lower_bound + index * width
    return low, low + width
