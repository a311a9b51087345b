"""build_hierarchical_histogram_process against NumPy and TFF 0.87's trees (tff_reference.json),
on both runtimes: binning, clipping, trees, secure and plain sums (each equal to the exact tree),
state, misuse."""

import functools
import json
import math
import pathlib
import time

import numpy as np
import pytest

import federax as fx

REFERENCE = json.loads((pathlib.Path(__file__).parent / "tff_reference.json").read_text())
CLIENTS = [np.asarray(c, np.float32) for c in REFERENCE["clients"]]
build = fx.analytics.build_hierarchical_histogram_process


@functools.lru_cache(maxsize=None)
def process(*args, **kwargs):
  """One process per configuration: tests that share one share its compiled programs."""
  return build(*args, **kwargs)


def numpy_histogram(records, lower, upper, num_bins):
  records = np.asarray(records, np.float64)
  records = records[(records >= lower) & (records < upper)]
  index = np.floor((records - lower) / ((upper - lower) / num_bins)).astype(int)
  return np.bincount(index, minlength=num_bins)


def numpy_tree(leaves, arity):
  """Every node as the sum of the leaves it spans, root first, flat."""
  layers = 1
  while arity**(layers - 1) < len(leaves):
    layers += 1
  padded = np.zeros(arity**(layers - 1))
  padded[:len(leaves)] = leaves
  return np.concatenate([padded.reshape(arity**layer, -1).sum(axis=1) for layer in range(layers)])


def flat(state):
  return np.asarray(state.aggregated_hierarchical_histogram["flat_values"])


@pytest.mark.parametrize("case", range(4))
def test_trees_equal_numpy_and_tff_without_noise(case):
  """13 clients (some empty, one with records on and outside the range's edges)."""
  check_tree(REFERENCE["histograms"][case])


def test_the_sequential_runtime_agrees():
  with fx.runtime.sequential():  # Secure sums; the clipping test runs both runtimes too.
    check_tree(REFERENCE["histograms"][0])


def check_tree(ref):
  num_bins, arity = ref["num_bins"], ref["arity"]
  hh = process(0.0, 2.0, num_bins, arity=arity, clip_mechanism=ref["clip"],
               max_records_per_user=20, enable_secure_sum=ref["secure"], seed=0)
  state, measurements = hh.next(hh.initialize(), CLIENTS)
  if ref["clip"] == "distinct":  # Each client counts a bin once.
    leaves = sum(np.minimum(numpy_histogram(c, 0.0, 2.0, num_bins), 1) for c in CLIENTS)
  else:
    leaves = numpy_histogram(np.concatenate(CLIENTS), 0.0, 2.0, num_bins)
  np.testing.assert_array_equal(flat(state), numpy_tree(leaves, arity))
  np.testing.assert_array_equal(flat(state), ref["flat_values"])
  np.testing.assert_array_equal(
      state.aggregated_hierarchical_histogram["nested_row_splits"][0], ref["splits"])
  assert measurements == ()


def test_type_signature_is_tffs_in_32_bits():
  hh = process(0.0, 1.0, 5, max_records_per_user=3, seed=0)
  histogram = "<flat_values=int32[15],nested_row_splits=<int32[5]>>"
  state = (f"<aggregated_hierarchical_histogram={histogram},round_timestamp=int32,"
           "aggregation_state=<sampling_key=uint32[2],inner_agg_process=<query_state=<>,"
           "agg_state=<>>>>@SERVER")
  assert str(hh.initialize.type_signature) == f"( -> {state})"
  assert str(hh.next.type_signature) == (
      f"(<state={state},client_data={{float32*}}@CLIENTS> -> <{state},<>@SERVER>)")
  central = build(0.0, 1.0, 5, dp_mechanism="central-gaussian", seed=0)
  assert "flat_values=float32[15]" in str(central.next.type_signature)


@pytest.mark.parametrize("clip_mechanism", ["sub-sampling", "distinct"])
def test_clipping_bounds_every_client_and_the_runtimes_agree(clip_mechanism):
  rng = np.random.default_rng(1)
  clients = [rng.uniform(0, 1, size=n).astype(np.float32) for n in (0, 2, 9, 30, 30, 7)]
  clients[4] = np.repeat(np.float32(0.55), 12)  # Twelve records in one bin.
  k = 4
  hh = process(0.0, 1.0, 8, arity=2, clip_mechanism=clip_mechanism, max_records_per_user=k,
               seed=5)
  # 'distinct' samples with the same code, from its 0/1 histogram: one runtime suffices.
  runtimes = [fx.runtime.vectorized()] + (
      [fx.runtime.sequential()] if clip_mechanism == "sub-sampling" else [])
  results = []
  for runtime in runtimes:
    with runtime:
      state, _ = hh.next(hh.initialize(), clients)
      results.append(flat(state))
  np.testing.assert_array_equal(results[0], results[-1])  # Same keys, same samples.
  histograms = [numpy_histogram(c, 0.0, 1.0, 8) for c in clients]
  if clip_mechanism == "distinct":
    histograms = [np.minimum(h, 1) for h in histograms]
  tree = results[0]
  assert tree[0] == sum(min(h.sum(), k) for h in histograms)  # The root: records kept.
  assert np.all(tree[-8:] <= sum(histograms))  # No bin gains records.
  np.testing.assert_array_equal(tree, numpy_tree(tree[-8:], 2))  # A consistent tree.
  if clip_mechanism == "distinct":  # The client with one bin keeps it once.
    assert tree[-8:][4] >= 1


def test_rounds_sample_afresh_and_stamp_the_time():
  clients = [np.linspace(0, 0.99, 40, dtype=np.float32) for _ in range(3)]
  hh = process(0.0, 1.0, 8, arity=2, clip_mechanism="sub-sampling", max_records_per_user=4,
               seed=5)
  state = hh.initialize()
  assert int(state.round_timestamp) == 0
  trees = []
  for _ in range(2):
    state, _ = hh.next(state, clients)
    trees.append(flat(state))
    assert abs(int(state.round_timestamp) - time.time()) < 600
  assert trees[0][0] == trees[1][0] == 12
  assert not np.array_equal(trees[0], trees[1])  # The state's key advanced.
  again, _ = hh.next(hh.initialize(), clients)
  np.testing.assert_array_equal(flat(again), trees[0])  # Same seed, same round.


def _raises(cls, pattern, **overrides):
  args = dict(lower_bound=0.0, upper_bound=1.0, num_bins=4)
  args.update(overrides)
  with pytest.raises(cls, match=pattern):
    build(**args)


def test_misuse_is_reported():
  _raises(ValueError, r"upper_bound must be no smaller than lower_bound(.|\n)*lower_bound=2.0",
          lower_bound=2.0, upper_bound=1.0)
  _raises(ValueError, r"num_bins must be an int >= 1(.|\n)*actual:   0", num_bins=0)
  _raises(ValueError, r"num_bins must be an int >= 1(.|\n)*actual:   -3", num_bins=-3)
  _raises(TypeError, r"num_bins must be an int(.|\n)*actual:   4.0", num_bins=4.0)
  _raises(ValueError, r"arity must be an int >= 2(.|\n)*actual:   1", arity=1)
  _raises(ValueError, r"unknown clip_mechanism(.|\n)*'sub-sampling', 'distinct'(.|\n)*'clip'",
          clip_mechanism="clip")
  _raises(ValueError, r"unknown dp_mechanism(.|\n)*'central-gaussian'(.|\n)*'laplace'",
          dp_mechanism="laplace")
  _raises(ValueError, r"max_records_per_user must be an int >= 1", max_records_per_user=0)
  _raises(ValueError, r"noise_multiplier must be non-negative", noise_multiplier=-0.1)
  _raises(ValueError, r"lower_bound must be finite", lower_bound=-math.inf)
  _raises(ValueError, r"expected_clients_per_round must be an int >= 1",
          expected_clients_per_round=0)
  _raises(ValueError, r"bits must be an int in \[1, 22\](.|\n)*actual:   0", bits=0)
  _raises(ValueError, r"bits must be an int in \[1, 22\](.|\n)*actual:   23", bits=23)
  _raises(ValueError, r"bits must be at least log2\(expected_clients_per_round\)"
          r"(.|\n)*expected: bits >= 3", bits=2, expected_clients_per_round=8)
  _raises(ValueError, r"needs secure sums(.|\n)*enable_secure_sum=True",
          dp_mechanism="distributed-discrete-gaussian", enable_secure_sum=False)
  _raises(ValueError, r"bits=10 is too small(.|\n)*expected: bits >= 1[0-9]",
          dp_mechanism="distributed-discrete-gaussian", noise_multiplier=5.0, bits=10,
          max_records_per_user=50, expected_clients_per_round=100)
  _raises(TypeError, r"seed must be an int or None", seed="7")


def test_factory_misuse_is_reported():
  hh = fx.analytics.hierarchical_histogram
  with pytest.raises(ValueError, match=r"HistogramClippingSumFactory: unknown clip_mechanism"):
    hh.HistogramClippingSumFactory("top-k")
  with pytest.raises(ValueError, match=r"max_records_per_user must be an int >= 1"):
    hh.HistogramClippingSumFactory(max_records_per_user=0)
  with pytest.raises(TypeError, match=r"a vector of integer counts(.|\n)*float32\[4\]"):
    hh.HistogramClippingSumFactory(seed=0).create(fx.TensorType(np.float32, [4]))
  with pytest.raises(ValueError, match=r"TreeRangeSumFactory: arity must be an int >= 2"):
    hh.TreeRangeSumFactory(1, "no-noise")
  with pytest.raises(ValueError, match=r"TreeRangeSumFactory: unknown dp_mechanism"):
    hh.TreeRangeSumFactory(2, "laplace")
  with pytest.raises(TypeError, match=r"histogram of float counts(.|\n)*int32\[4\]"):
    hh.TreeRangeSumFactory(2, "central-gaussian", 1.0, seed=0).create(
        fx.TensorType(np.int32, [4]))
  with pytest.raises(ValueError, match=r"num_bins must be an int >= 1"):
    hh.create_hierarchical_histogram_aggregation_factory(0)
