"""Federated HyperLogLog against NumPy, TFF 0.87's figures (tff_reference.json) and its bound."""

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.analytics import count_distinct

REFERENCE = json.loads((pathlib.Path(__file__).parent / "tff_reference.json").read_text())


def numpy_sketch(hashes):
  """The registers by the textbook definition: the top 5 bits pick the register, which keeps
  the largest `27 - floor(log2(tail))` (28 for a zero tail), 0 where no item landed."""
  hashes = np.asarray(hashes, np.uint64)
  registers = np.zeros(32, np.int64)
  for register in range(32):
    tails = hashes[(hashes >> np.uint64(27)) == register] & np.uint64(2**27 - 1)
    if tails.size:
      logs = np.where(tails > 0, np.floor(np.log2(np.maximum(tails, 1).astype(np.float64))), -1)
      registers[register] = int(np.max(27 - logs))
  return registers


def numpy_estimate(registers):
  return int(0.697 * 32**2 / np.sum(0.5 ** np.asarray(registers, np.float64)))


def test_hashes_equal_tensorflows():
  strings = [bytes.fromhex(s) for s in REFERENCE["hash_strings_hex"]]
  assert {len(s) for s in strings} >= {0, 3, 4, 8, 16, 17, 32, 33, 64, 65, 130, 200}
  np.testing.assert_array_equal(count_distinct.hash_items(strings), REFERENCE["hash_values"])
  # Strings hash as their UTF-8 bytes.
  assert count_distinct.hash_items(["héllo wörld"])[0] == REFERENCE["hash_values"][-4]


def test_sketch_and_estimate_match_numpy():
  rng = np.random.default_rng(0)
  hashes = rng.integers(0, 2**32, size=(3, 4000), dtype=np.uint64).astype(np.uint32)
  hashes[0, :5] = [0, 2**27, 2**27 - 1, 2**32 - 1, 1]  # Zero tails and extreme tails.
  mask = rng.random((3, 4000)) < 0.7
  sketches = np.asarray(count_distinct.sketch(hashes, mask))
  estimates = np.asarray(count_distinct.estimate_count(sketches))
  for row in range(3):
    expected = numpy_sketch(hashes[row][mask[row]])
    np.testing.assert_array_equal(sketches[row], expected)
    assert abs(int(estimates[row]) - numpy_estimate(expected)) <= 1  # float32 vs float64
  assert numpy_sketch([0, 2**27])[:2].tolist() == [28, 28]


def test_relative_error_is_within_the_documented_bound():
  """10**5 distinct items, 200 independent draws of their hashes (a trial axis, no loop)."""
  n, trials = 100_000, 200
  hashes = jax.random.bits(jax.random.PRNGKey(1), (trials, n), jnp.uint32)
  relative = np.asarray(count_distinct.estimate_count(count_distinct.sketch(hashes))) / n - 1
  bound = count_distinct.RELATIVE_STANDARD_ERROR
  assert bound == pytest.approx(1.070 / math.sqrt(32))
  rms = float(np.sqrt(np.mean(relative**2)))
  # The RMS of 200 draws is within 4 of its standard errors (bound / sqrt(400)) of the bound.
  assert bound * 0.8 < rms < bound * 1.2, rms
  assert abs(float(np.mean(relative))) < 4 * bound / math.sqrt(trials)


def test_federated_estimate_equals_tffs_on_100k_words():
  words = [[f"w{i}" for i in range(j * 1000, j * 1000 + 1000)] for j in range(100)]
  plain = count_distinct.create_federated_hyperloglog_computation()
  secure = count_distinct.create_federated_hyperloglog_computation(use_secagg=True)
  expected = REFERENCE["hll_words_1e5"]
  assert abs(int(plain(words)) - expected) <= 1  # float32 here, float64 in TFF
  assert int(secure(words)) == int(plain(words))
  assert abs(expected / 100_000 - 1) < 3 * count_distinct.RELATIVE_STANDARD_ERROR


def test_both_runtimes_and_both_merges_agree_with_numpy(runtime):
  rng = np.random.default_rng(2)
  clients = [[f"item{k}" for k in rng.integers(0, 400, size=rng.integers(0, 60))]
             for _ in range(6)]
  clients[2] = []  # A client without items.
  expected = numpy_estimate(numpy_sketch(count_distinct.hash_items(sum(clients, []))))
  for use_secagg in (False, True):
    computation = count_distinct.create_federated_hyperloglog_computation(use_secagg=use_secagg)
    assert abs(int(computation(clients)) - expected) <= 1
  small = count_distinct.create_federated_hyperloglog_computation()([["a", "b", "c"], ["c", "d"]])
  assert int(small) == REFERENCE["hll_small"]


def test_secure_max_equals_max_including_the_largest_register():
  secure_max = count_distinct.build_federated_secure_max_computation()
  rng = np.random.default_rng(3)
  sketches = rng.integers(0, 29, size=(5, 32)).astype(np.int32)
  sketches[1, 7] = 28  # TFF's one-hot has no class for 28; here it is kept.
  np.testing.assert_array_equal(secure_max(list(sketches)), sketches.max(axis=0))


def test_type_signatures():
  assert str(count_distinct.create_federated_hyperloglog_computation().type_signature) == (
      "({str*}@CLIENTS -> int32@SERVER)")
  assert str(count_distinct.build_client_hyperloglog_computation().type_signature) == (
      "(uint32* -> int32[32])")
  assert str(count_distinct.build_federated_secure_max_computation().type_signature) == (
      "({int32[32]}@CLIENTS -> int32[32]@SERVER)")


def test_misuse_is_reported():
  with pytest.raises(TypeError, match=r"use_secagg must be a bool(.|\n)*actual:   1"):
    count_distinct.create_federated_hyperloglog_computation(use_secagg=1)
  with pytest.raises(TypeError, match=r"client 0\]\[element 0\]: expected strings"):
    count_distinct.create_federated_hyperloglog_computation()([[1.0, 2.0]])
