"""HierarchicalHistogramDecoder against NumPy (sums, sorted records, least squares) and TFF
0.87's estimates (tff_reference.json)."""

import json
import pathlib

import numpy as np
import pytest

import federax as fx
from federax.analytics.hierarchical_histogram import build_tree_from_leaf

REFERENCE = json.loads((pathlib.Path(__file__).parent / "tff_reference.json").read_text())
Decoder = fx.analytics.HierarchicalHistogramDecoder


def layers_of(leaves, arity):
  """The tree as layers, each node summing the leaves it spans (independent of the package)."""
  depth = 1
  while arity**(depth - 1) < len(leaves):
    depth += 1
  padded = np.zeros(arity**(depth - 1))
  padded[:len(leaves)] = leaves
  return [padded.reshape(arity**layer, -1).sum(axis=1) for layer in range(depth)]


@pytest.mark.parametrize("num_bins,arity", [(8, 2), (10, 3), (16, 4), (1, 2)])
def test_range_queries_equal_numpy_sums(num_bins, arity):
  leaves = np.random.default_rng(num_bins).integers(0, 50, size=num_bins)
  decoder = Decoder(layers_of(leaves, arity), 0.0, 1.0)
  padded = len(layers_of(leaves, arity)[-1])
  for left in range(padded):
    for right in range(left, padded):
      assert decoder.range_query(left, right) == leaves[left:right + 1].sum()


@pytest.mark.parametrize("num_bins,arity", [(10, 3), (16, 2), (5, 2)])
def test_quantiles_equal_sorted_records(num_bins, arity):
  """The bin of the record of rank max(1, ceil(q n)), from NumPy's sort of the records."""
  rng = np.random.default_rng(num_bins)
  lower, upper = -2.0, 3.0
  width = (upper - lower) / num_bins
  # Records at bin centres, with empty bins and ties at node boundaries.
  bins = np.concatenate([rng.integers(0, num_bins, size=40), [0, num_bins - 1]])
  bins = bins[bins != num_bins // 2]
  records = np.sort(lower + (bins + 0.5) * width)
  leaves = np.bincount(bins, minlength=num_bins)
  tree = layers_of(leaves, arity)
  decoder = Decoder(tree, lower, upper, num_bins=num_bins)
  for q in np.linspace(0, 1, 101):
    rank = max(1, int(np.ceil(q * len(records) - 1e-9)))
    expected = lower + np.floor((records[rank - 1] - lower) / width) * width
    low, high = decoder.quantile_query(q)
    assert low == pytest.approx(expected) and high == pytest.approx(expected + width), q
  # The process's output decodes the same way as its layers.
  flat = {"flat_values": np.concatenate(tree),
          "nested_row_splits": (np.cumsum([0] + [len(layer) for layer in tree]),)}
  assert Decoder(flat, lower, upper, num_bins=num_bins).quantile_query(0.3) == (
      decoder.quantile_query(0.3))


def test_quantiles_equal_tffs_but_in_ties_and_its_width_is_the_default():
  tree = layers_of(np.arange(8), 2)
  assert Decoder(tree, 2.0, 10.0).quantile_query(0.5) == (7.0, 8.0)
  ties = 0
  for case in REFERENCE["decoder"]:
    decoder = Decoder(case["tree"], 2.0, 10.0)
    leaves = case["tree"][-1]
    width = 8.0 / len(leaves)  # TFF's: the padded leaves share the range.
    for q, expected in case["quantiles"].items():
      ours = decoder.quantile_query(float(q))
      if ours != pytest.approx(expected):
        # A tie: TFF walks on into empty bins when a node's sum equals q * total exactly.
        mine, tffs = round((ours[0] - 2.0) / width), round((expected[0] - 2.0) / width)
        assert tffs > mine and sum(leaves[mine + 1:tffs + 1]) == 0, (q, ours, expected)
        ties += 1
  assert ties == 1  # q = 1 with an empty last bin: TFF answers that bin, here the maximum's.


@pytest.mark.parametrize("case", range(4))
def test_honaker_estimates_and_range_queries_equal_tffs(case):
  ref = REFERENCE["decoder"][case]
  efficient = Decoder(ref["noisy"], 0.0, 1.0, use_efficient=True)
  nodes = [[efficient.node_query(layer, i) for i in range(len(values))]
           for layer, values in enumerate(ref["noisy"])]
  for ours, tffs in zip(nodes, ref["efficient_nodes"]):
    np.testing.assert_allclose(ours, tffs, atol=1e-5)  # TFF's ragged tensor is float32.
  ranges = [tuple(r) for r in ref["ranges"]]
  np.testing.assert_allclose([efficient.range_query(*r) for r in ranges],
                             ref["efficient_ranges"], atol=2e-5)
  plain = Decoder(ref["noisy"], 0.0, 1.0)
  np.testing.assert_allclose([plain.range_query(*r) for r in ranges], ref["plain_ranges"],
                             atol=2e-5)
  plain.enforce_consistency()
  for ours, tffs in zip(plain._layers, ref["consistent"]):
    np.testing.assert_allclose(ours, tffs, atol=1e-5)


@pytest.mark.parametrize("arity,leaves", [(2, 16), (3, 27), (4, 16), (2, 5)])
def test_enforce_consistency_is_least_squares(arity, leaves):
  rng = np.random.default_rng(leaves)
  tree = layers_of(rng.integers(0, 20, size=leaves), arity)
  noisy = [layer + rng.normal(0, 2.0, size=len(layer)) for layer in tree]
  decoder = Decoder(noisy, 0.0, 1.0, use_efficient=True)
  decoder.enforce_consistency()
  # NumPy's least squares over the leaves: every node is the sum of the leaves it spans.
  width = len(tree[-1])
  rows = [np.kron(np.eye(len(layer)), np.ones(width // len(layer))) for layer in tree]
  solution = np.linalg.lstsq(np.concatenate(rows), np.concatenate(noisy), rcond=None)[0]
  expected = layers_of(solution, arity)
  for layer, values in enumerate(expected):
    np.testing.assert_allclose([decoder.node_query(layer, i) for i in range(len(values))],
                               values, atol=1e-9)
  low, high = decoder.quantile_query(0.5)  # Consistent now: quantiles are allowed.
  assert 0.0 <= low < high <= 1.0


def test_tffs_numpy_tree_helper():
  assert build_tree_from_leaf.create_hierarchical_histogram([1, 2, 3, 4, 5], 2) == [
      [15], [10, 5], [3, 7, 5, 0], [1, 2, 3, 4, 5, 0, 0, 0]]
  with pytest.raises(ValueError, match=r"arity must be at least 2(.|\n)*actual:   1"):
    build_tree_from_leaf.create_hierarchical_histogram([1, 2], 1)


def test_misuse_is_reported():
  tree = layers_of(np.arange(8), 2)
  decoder = Decoder(tree, 0.0, 1.0)
  with pytest.raises(ValueError, match=r"layer is out of range(.|\n)*0 <= layer < 4"):
    decoder.node_query(4, 0)
  with pytest.raises(ValueError, match=r"index is out of range for layer 2(.|\n)*0 <= index < 4"):
    decoder.node_query(2, 4)
  with pytest.raises(ValueError, match=r"range is outside the leaves(.|\n)*\[0, 8\]"):
    decoder.range_query(0, 8)
  with pytest.raises(ValueError, match=r"left must not exceed right(.|\n)*left=5, right=2"):
    decoder.range_query(5, 2)
  with pytest.raises(ValueError, match=r"q must lie in \[0, 1\](.|\n)*actual:   1.5"):
    decoder.quantile_query(1.5)
  noisy = [layer + 0.5 for layer in tree]
  with pytest.raises(ValueError, match=r"not consistent(.|\n)*call enforce_consistency"):
    Decoder(noisy, 0.0, 1.0).quantile_query(0.5)
  with pytest.raises(ValueError, match=r"holds no records"):
    Decoder(layers_of(np.zeros(4), 2), 0.0, 1.0).quantile_query(0.5)
  with pytest.raises(ValueError, match=r"sizes of a complete tree(.|\n)*\[1, 2, 3\]"):
    Decoder([[3], [1, 2], [1, 1, 1]], 0.0, 1.0)
  with pytest.raises(ValueError, match=r"num_bins must be at least 1 and at most(.|\n)*9"):
    Decoder(tree, 0.0, 1.0, num_bins=9)
  with pytest.raises(TypeError, match=r"must be a tree of layers"):
    Decoder(object(), 0.0, 1.0)
