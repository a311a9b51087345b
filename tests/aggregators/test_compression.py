"""EncodedSumFactory (quantization, its bits measurement) and concat_factory against NumPy."""

import collections
import math
import re

import numpy as np
import pytest

import federax as fx
from federax import aggregators

# a and c have more than 10 elements (quantized at threshold 10); b has 6 (sent as it is).
VALUE = fx.to_type(collections.OrderedDict(
    a=(np.float32, [30]), b=(np.float32, [2, 3]), c=(np.float32, [4, 5])))
SHAPES = {"a": (30,), "b": (2, 3), "c": (4, 5)}


def client_values(n, seed=0, huge=None):
  rng = np.random.default_rng(seed)
  values = [collections.OrderedDict((k, rng.normal(size=s).astype(np.float32))
                                    for k, s in SHAPES.items()) for _ in range(n)]
  if huge is not None:  # One client with a huge norm.
    values[huge] = collections.OrderedDict((k, v * np.float32(1e4)) for k, v in
                                           values[huge].items())
  return values


def stack(values, name):
  return np.stack([np.asarray(v[name], np.float64) for v in values])


def quantize(bits, threshold=10, seed=0):
  return aggregators.EncodedSumFactory.quantize_above_threshold(
      quantization_bits=bits, threshold=threshold, seed=seed)


def test_quantized_sum_is_within_one_level_per_client_and_small_tensors_exact(runtime):
  process = quantize(8).create(VALUE)
  assert str(process.next.type_signature) == (
      "(<state=uint32[2]@SERVER,value={<a=float32[30],b=float32[2,3],c=float32[4,5]>}@CLIENTS> "
      "-> <state=uint32[2]@SERVER,result=<a=float32[30],b=float32[2,3],c=float32[4,5]>@SERVER,"
      "measurements=<bits=float32>@SERVER>)")
  state = process.initialize()
  for round_num in range(2):  # The state (the key) is carried.
    values = client_values(4, seed=round_num, huge=2)
    output = process.next(state, values)
    state = output.state
    # b is below the threshold: summed as it is.
    np.testing.assert_allclose(output.result["b"], stack(values, "b").sum(0), rtol=1e-6)
    for name in ("a", "c"):
      x = stack(values, name).reshape(4, -1)
      # Each client's decoded value lies within one level (its range / 255) of its input.
      level = (x.max(1) - x.min(1)) / 255
      error = np.abs(np.asarray(output.result[name], np.float64).reshape(-1) - x.sum(0))
      assert np.all(error <= level.sum() * (1 + 1e-5)), (name, error.max(), level.sum())
      # ... and is not exact: the tensor was quantized.
      assert error.max() > 1e-3 * level.max()


def test_values_on_the_grid_come_back_exactly(runtime):
  # Integers 0..255 with min 0 and max 255 are the levels themselves at 8 bits.
  rng = np.random.default_rng(3)
  value_type = fx.TensorType(np.float32, [16])
  values = []
  for _ in range(3):
    x = rng.integers(0, 256, size=16).astype(np.float32)
    x[:2] = [0, 255]
    values.append(x)
  process = quantize(8, threshold=0).create(value_type)
  result = process.next(process.initialize(), values).result
  np.testing.assert_allclose(result, np.sum(values, axis=0), rtol=1e-6)


def test_quantization_is_unbiased():
  # 4000 clients with the same value, at 2 bits: each element sits 0.3 of a level above a
  # level, so rounding to the nearest level would be off by 0.3 levels; the stochastic mean
  # must come within 5 standard errors (a level / (2 sqrt(n))) of the value.
  n, bits = 4000, 2
  levels = np.array([0, 0.3, 1.3, 2.3, 3.0, 0.7, 1.5, 2.9], np.float32)
  x = (levels * np.float32(0.25) - np.float32(1.0)).astype(np.float32)  # Range [-1, -0.25].
  step = (x.max() - x.min()) / (2**bits - 1)
  process = quantize(bits, threshold=0).create(fx.TensorType(np.float32, [8]))
  with fx.runtime.vectorized():
    state = process.initialize()
    means = []
    for _ in range(2):
      output = process.next(state, [x] * n)
      state = output.state
      means.append(np.asarray(output.result, np.float64) / n)
  for mean in means:
    np.testing.assert_array_less(np.abs(mean - x), 5 * step / (2 * math.sqrt(n)))
  nearest = np.round((x - x.min()) / step) * step + x.min()
  assert np.abs(means[0] - x).max() < 0.2 * np.abs(nearest - x).max()
  assert not np.array_equal(means[0], means[1])  # Fresh randomness every round.


def test_a_run_replays_from_its_seed_on_both_runtimes():
  def run(runtime, seed):
    process = quantize(4, seed=seed).create(VALUE)
    with runtime:
      state, results = process.initialize(), []
      for round_num in range(2):
        output = process.next(state, client_values(3, seed=round_num))
        state = output.state
        results.append(output.result["a"])
      return results, state

  vectorized, v_state = run(fx.runtime.vectorized(), 7)
  sequential, s_state = run(fx.runtime.sequential(), 7)
  np.testing.assert_array_equal(v_state, s_state)
  for v, s in zip(vectorized, sequential):
    np.testing.assert_allclose(v, s, rtol=1e-6, atol=1e-6)
  other, _ = run(fx.runtime.vectorized(), 8)
  assert not np.allclose(other[0], vectorized[0])


def test_a_nan_reaches_only_its_tensor(runtime):
  values = client_values(3)
  values[1]["a"][4] = np.nan
  process = quantize(8).create(VALUE)
  result = process.next(process.initialize(), values).result
  assert np.all(np.isnan(result["a"]))  # The client's range is NaN: its whole tensor is.
  assert np.all(np.isfinite(result["b"])) and np.all(np.isfinite(result["c"]))


def test_bits_measurement_counts_by_hand(runtime):
  # threshold 10, 8 bits: a (30) -> ceil(30*8/28)=9 int32s + [lo, hi] = 288 + 64;
  # b (6 float32, sent as they are) -> 192; c (20) -> ceil(160/28)=6 int32s + 64 = 256.
  process = quantize(8).create(VALUE)
  output = process.next(process.initialize(), client_values(2))
  assert output.measurements == collections.OrderedDict(bits=np.float32(352 + 192 + 256))
  # 3 bits and an int16 tensor kept as it is: a -> ceil(90/28)=4 -> 128 + 64; b -> 192;
  # c -> ceil(60/28)=3 -> 96 + 64; d: 5 int16 -> 80.
  mixed = fx.to_type(collections.OrderedDict(a=(np.float32, [30]), b=(np.float32, [2, 3]),
                                             c=(np.float32, [4, 5]), d=(np.int16, [5])))
  process = quantize(3).create(mixed)
  values = [collections.OrderedDict(v, d=np.arange(5, dtype=np.int16)) for v in client_values(2)]
  output = process.next(process.initialize(), values)
  assert float(output.measurements["bits"]) == 192 + 192 + 160 + 80
  np.testing.assert_array_equal(output.result["d"], 2 * np.arange(5))


def test_bits_of_the_compression_tutorials_model():
  # TFF's compression tutorial: the FedAvg CNN on EMNIST digits, 8 bits above 20000 elements.
  # Uncompressed a client sends 1,663,370 float32s: 53,227,840 bits (x 10 clients = 507.62
  # Mibit, the tutorial's broadcast/aggregate size per round). Quantized: the conv2 kernel
  # (51200) and dense kernel (1605632) become 14629 and 458752 int32s plus [lo, hi] each; the
  # rest (6538 elements) stays float32: 15,357,536 bits (x 10 = 146.46 Mibit; the tutorial
  # prints 146.47, its sizing also counting the weights, metrics and clipping counts).
  shapes = [(5, 5, 1, 32), (32,), (5, 5, 32, 64), (64,), (3136, 512), (512,), (512, 10), (10,)]
  value_type = fx.to_type([(np.float32, s) for s in shapes])
  process = aggregators.EncodedSumFactory.quantize_above_threshold().create(value_type)
  zeros = [np.zeros(s, np.float32) for s in shapes]
  with fx.runtime.vectorized():
    bits = float(process.next(process.initialize(), [zeros]).measurements["bits"])
  expected = 32 * (14629 + 458752) + 2 * 64 + 32 * 6538
  assert bits == expected == 15_357_536
  assert f"{10 * expected / 2**20:.2f}" == "146.46"
  assert f"{10 * 32 * sum(math.prod(s) for s in shapes) / 2**20:.2f}" == "507.62"


# --- concat_factory ------------------------------------------------------------------------------


class _RecordingSum(aggregators.UnweightedAggregationFactory):
  """A sum that records the value type it was created for."""

  created_for = None

  def create(self, value_type):
    _RecordingSum.created_for = value_type
    return aggregators.SumFactory().create(value_type)


def test_concat_sums_one_vector_and_restores_the_structure(runtime):
  process = aggregators.concat_factory(_RecordingSum()).create(VALUE)
  assert _RecordingSum.created_for == fx.TensorType(np.float32, [30 + 6 + 20])
  assert str(process.next.type_signature) == (  # TFF's.
      "(<state=<>@SERVER,value={<a=float32[30],b=float32[2,3],c=float32[4,5]>}@CLIENTS> -> "
      "<state=<>@SERVER,result=<a=float32[30],b=float32[2,3],c=float32[4,5]>@SERVER,"
      "measurements=<>@SERVER>)")
  values = client_values(3, huge=0)
  result = process.next(process.initialize(), values).result
  for name, shape in SHAPES.items():
    assert result[name].shape == shape
    np.testing.assert_allclose(result[name], stack(values, name).sum(0), rtol=1e-6)


def test_concat_of_a_weighted_mean_takes_weights_and_still_works_unweighted(runtime):
  factory = aggregators.concat_factory(aggregators.MeanFactory())
  assert isinstance(factory, aggregators.WeightedAggregationFactory)
  values, weights = client_values(4, seed=1), [1.0, 3.0, 0.5, 7.0]
  weighted = factory.create(VALUE, fx.TensorType(np.float32))
  state = weighted.initialize()
  for _ in range(2):
    output = weighted.next(state, values, weights)
    state = output.state
  w = np.asarray(weights)
  for name in SHAPES:
    np.testing.assert_allclose(output.result[name],
                               np.tensordot(w, stack(values, name), axes=1) / w.sum(), rtol=1e-5)
  assert output.measurements == collections.OrderedDict(mean_value=(), mean_weight=())
  unweighted = factory.create(VALUE)
  result = unweighted.next(unweighted.initialize(), values).result
  np.testing.assert_allclose(result["c"], stack(values, "c").mean(0), rtol=1e-5)


def test_concat_sums_integers_exactly(runtime):
  value_type = fx.to_type([(np.int32, [2]), (np.int32, [])])
  process = aggregators.concat_factory(aggregators.SumFactory()).create(value_type)
  result = process.next(process.initialize(), [[[1, 2], 2**30], [[3, -4], 5]]).result
  np.testing.assert_array_equal(result[0], [4, -2])
  assert result[1] == 2**30 + 5


# --- Misuse ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, cls, words", [
    (lambda: quantize(0), ValueError,
     ["EncodedSumFactory: quantization_bits is out of range.", "expected: an int in [1, 16]",
      "actual:   0"]),
    (lambda: quantize(17), ValueError, ["quantization_bits is out of range.", "actual:   17"]),
    (lambda: quantize(8.0), TypeError, ["quantization_bits must be an int.", "8.0"]),
    (lambda: quantize(8, threshold=-1), ValueError,
     ["EncodedSumFactory: threshold is out of range.", "expected: an int >= 0", "actual:   -1"]),
    (lambda: quantize(8, seed=True), TypeError, ["seed must be an int."]),
    (lambda: aggregators.EncodedSumFactory(lambda spec: None), TypeError,
     ["no tensor_encoding encoders", "hint: use EncodedSumFactory.quantize_above_threshold"]),
    (lambda: quantize(8).create(fx.TensorType(np.int32, [20])), TypeError,
     ["EncodedSumFactory.create: the tensors to quantize must be floating point.",
      "actual:   value_type int32[20]"]),
    (lambda: quantize(8).create(fx.SequenceType(fx.TensorType(np.float32))), TypeError,
     ["the value must be a tensor or a structure of tensors", "actual:   value_type float32*"]),
    (lambda: quantize(8).create(VALUE, np.float32), TypeError,
     ["EncodedSumFactory.create: this factory does not take weights."]),
    (lambda: aggregators.concat_factory(aggregators.SumFactory()).create(
        fx.to_type([(np.float32, [2]), (np.int32, [3])])), TypeError,
     ["concat_factory(...).create: the tensors must all have one dtype.",
      "(dtypes float32, int32)"]),
    (lambda: aggregators.concat_factory(aggregators.SumFactory()).create(
        fx.TensorType(np.bool_, [2])), TypeError,
     ["the values must be integers or floats.", "actual:   value_type bool[2]"]),
    (lambda: aggregators.concat_factory("sum"), TypeError,
     ["concat_factory: inner_agg_factory must be an aggregation factory.", "actual:   'sum'"]),
])
def test_misuse_is_a_clear_error(make, cls, words):
  with pytest.raises(cls) as info:
    make()
  message = str(info.value)
  for word in words:
    assert word in message, (word, message)
  assert re.search(rf"at {re.escape(__file__)}:\d+", message)  # Points at the user's line.
