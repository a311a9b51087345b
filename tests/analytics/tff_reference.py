"""Writes tff_reference.json: TFF 0.87's answers on the inputs the analytics tests use.

Run with the TFF peer's environment (benchmarks/peers/tff/setup.sh), from the repository root:

    benchmarks/peers/tff/.venv/bin/python tests/analytics/tff_reference.py

The tests compare federax with these figures; they never run TFF themselves.
"""

import json
import pathlib

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.analytics.hierarchical_histogram import build_tree_from_leaf
from tensorflow_federated.python.analytics.hierarchical_histogram import (
    hierarchical_histogram_decoder as decoder_lib)
from tensorflow_federated.python.core.backends.test import execution_contexts

OUT = pathlib.Path(__file__).with_suffix(".json")


def histograms(rng):
  """The process's trees on 13 clients (no noise, clipping that does not bind)."""
  clients = [rng.uniform(-1.0, 3.0, size=rng.integers(0, 9)).astype(np.float32)
             for _ in range(12)]
  # The range's edges: 2.0 is outside [0, 2), 1.999999 in the last bin, -0.5 and 2.5 outside.
  clients.append(np.array([0.0, 2.0, 1.999999, -0.5, 2.5], np.float32))
  datasets = [tf.data.Dataset.from_tensor_slices(c) for c in clients]
  results = []
  for num_bins, arity, clip, secure in [(5, 2, "sub-sampling", True), (8, 2, "distinct", False),
                                        (10, 3, "sub-sampling", False), (7, 4, "distinct", True)]:
    process = tff.analytics.build_hierarchical_histogram_process(
        0.0, 2.0, num_bins, arity=arity, clip_mechanism=clip, max_records_per_user=20,
        enable_secure_sum=secure)
    state, _ = process.next(process.initialize(), datasets)
    tree = state.aggregated_hierarchical_histogram
    results.append(dict(num_bins=num_bins, arity=arity, clip=clip, secure=secure,
                        flat_values=np.asarray(tree["flat_values"]).tolist(),
                        splits=np.asarray(tree["nested_row_splits"][0]).tolist()))
  return [c.tolist() for c in clients], results


def decoders(rng):
  """Honaker's node estimates, range queries and consistent trees of noised trees."""
  results = []
  for arity, leaves in [(2, 8), (3, 9), (2, 16), (4, 16)]:
    tree = build_tree_from_leaf.create_hierarchical_histogram(
        rng.integers(0, 10, size=leaves).astype(np.float64), arity)
    noisy = [(np.asarray(layer) + rng.normal(0, 1.5, size=len(layer))).tolist()
             for layer in tree]
    ranges = [(0, leaves - 1), (1, leaves - 2), (2, 2), (0, leaves // 2), (leaves // 3, leaves - 1)]
    efficient = decoder_lib.HierarchicalHistogramDecoder(tf.ragged.constant(noisy), 0.0, 1.0,
                                                         use_efficient=True)
    plain = decoder_lib.HierarchicalHistogramDecoder(tf.ragged.constant(noisy), 0.0, 1.0)
    result = dict(arity=arity, tree=tree, noisy=noisy, ranges=ranges,
                  efficient_nodes=[[efficient.node_query(layer, i) for i in range(len(values))]
                                   for layer, values in enumerate(noisy)],
                  efficient_ranges=[efficient.range_query(a, b) for a, b in ranges],
                  plain_ranges=[plain.range_query(a, b) for a, b in ranges])
    plain.enforce_consistency()
    result["consistent"] = [list(map(float, layer)) for layer in plain._hierarchical_histogram]
    exact = decoder_lib.HierarchicalHistogramDecoder(tf.ragged.constant(tree), 2.0, 10.0)
    result["quantiles"] = {str(q): list(exact.quantile_query(q))
                           for q in (0.0, 0.1, 0.25, 0.5, 0.77, 0.9, 1.0)}
    results.append(result)
  return results


def hashes(rng):
  """`to_hash_bucket_fast(s, 2**32)` of byte strings of every length class."""
  strings = [bytes(rng.integers(0, 256, size=n, dtype=np.uint8))
             for n in [*range(0, 73), 130, 200]]
  strings += [s.encode() for s in ["hello", "héllo wörld", "to", "the", "日本語"]]
  values = tf.strings.to_hash_bucket_fast(tf.constant(strings), 2**32).numpy()
  return [s.hex() for s in strings], values.tolist()


def main():
  execution_contexts.set_sync_test_cpp_execution_context()  # TFF's secure sums need it.
  rng = np.random.default_rng(7)
  clients, trees = histograms(rng)
  hll = tff.analytics.count_distinct.create_federated_hyperloglog_computation()
  words = [[f"w{i}" for i in range(j * 1000, j * 1000 + 1000)] for j in range(100)]
  strings, values = hashes(rng)
  OUT.write_text(json.dumps(dict(
      clients=clients, histograms=trees, decoder=decoders(rng),
      hll_words_1e5=int(hll(words)),
      hll_small=int(hll([["a", "b", "c"], ["c", "d"]])),
      hash_strings_hex=strings, hash_values=values)))


if __name__ == "__main__":
  main()
