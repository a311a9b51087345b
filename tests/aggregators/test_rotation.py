"""HadamardTransformFactory, DiscreteFourierTransformFactory and the fast Walsh–Hadamard
transform against NumPy."""

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax import aggregators
from federax.aggregators.hadamard import fast_walsh_hadamard_transform

# Sizes 3, 6 and 1: padded to 4, 8, 1 (Hadamard) or 4, 6, 2 (DFT).
SHAPES = collections.OrderedDict(a=(3,), b=(2, 3), c=())
VALUE = fx.to_type(collections.OrderedDict((k, (np.float32, s)) for k, s in SHAPES.items()))
FACTORIES = [(aggregators.HadamardTransformFactory, "hd"),
             (aggregators.DiscreteFourierTransformFactory, "dft")]


def client_values(n, seed=0, huge=None):
  rng = np.random.default_rng(seed)
  values = [collections.OrderedDict((k, rng.normal(size=s).astype(np.float32))
                                    for k, s in SHAPES.items()) for _ in range(n)]
  if huge is not None:
    values[huge] = collections.OrderedDict((k, v * np.float32(1e3)) for k, v in
                                           values[huge].items())
  return values


def total(values, name):
  return np.sum([np.asarray(v[name], np.float64) for v in values], axis=0)


def hadamard_matrix(d):
  h = np.ones((1, 1))
  while h.shape[0] < d:
    h = np.block([[h, h], [h, -h]])
  return h / np.sqrt(d)


def test_fwht_is_the_normalized_sylvester_hadamard_product():
  rng = np.random.default_rng(0)
  transform = jax.jit(fast_walsh_hadamard_transform)
  for d in (1, 2, 8, 64):
    x = rng.normal(size=(3, d)).astype(np.float32)
    y = transform(jnp.asarray(x))
    np.testing.assert_allclose(y, x @ hadamard_matrix(d), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(transform(y), x, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="must be a power of two, got 6"):
    fast_walsh_hadamard_transform(jnp.zeros([6]))


@pytest.mark.parametrize("make, name", FACTORIES, ids=["hd", "dft"])
def test_signature_is_tffs_with_a_jax_key_for_the_seed(make, name):
  # TFF 0.87 prints int64[2] (a clock-seeded TF seed) where federax keeps a raw JAX key.
  tff = ("(<state=<<>,int64[2]>@SERVER,value={<a=float32[3],b=float32[2,3],c=float32>}@CLIENTS>"
         " -> <state=<<>,int64[2]>@SERVER,result=<a=float32[3],b=float32[2,3],c=float32>@SERVER,"
         f"measurements=<{name}=<>>@SERVER>)")
  signature = str(make().create(VALUE).next.type_signature)
  assert signature == tff.replace("int64[2]", "uint32[2]")


@pytest.mark.parametrize("make, name", FACTORIES, ids=["hd", "dft"])
def test_rotated_sum_equals_the_plain_sum(runtime, make, name):
  process = make(num_repeats=2).create(VALUE)
  state = process.initialize()
  keys = [np.asarray(state[1])]
  for round_num in range(2):
    values = client_values(4, seed=round_num, huge=1)
    output = process.next(state, values)
    state = output.state
    keys.append(np.asarray(state[1]))
    scale = max(np.abs(total(values, k)).max() for k in SHAPES)
    for k, shape in SHAPES.items():
      assert output.result[k].shape == shape and output.result[k].dtype == np.float32
      np.testing.assert_allclose(output.result[k], total(values, k), rtol=0, atol=1e-5 * scale)
    assert output.measurements == collections.OrderedDict([(name, ())])
  assert len({k.tobytes() for k in keys}) == len(keys)  # The seed advances every round.


@pytest.mark.parametrize("make, name", FACTORIES, ids=["hd", "dft"])
def test_integer_values_come_back_exact(runtime, make, name):
  value_type = fx.to_type(collections.OrderedDict(a=(np.int32, [5]), b=(np.int32, [2, 2])))
  values = [collections.OrderedDict(a=np.array([1, -2, 3, 40000, 5], np.int32),
                                    b=np.array([[4, 5], [6, -7]], np.int32))] * 3
  process = make().create(value_type)
  result = process.next(process.initialize(), values).result
  np.testing.assert_array_equal(result["a"], [3, -6, 9, 120000, 15])
  np.testing.assert_array_equal(result["b"], [[12, 15], [18, -21]])
  assert result["a"].dtype == np.int32


class _SumReportingSum(aggregators.UnweightedAggregationFactory):
  """A sum whose measurements are the summed value too: what the inner factory received."""

  def create(self, value_type):
    @fx.federated_computation
    def initialize():
      return fx.federated_value((), fx.SERVER)

    @fx.federated_computation(initialize.type_signature.result,
                              fx.FederatedType(value_type, fx.CLIENTS))
    def next_fn(state, value):
      total = fx.federated_sum(value)
      return fx.templates.MeasuredProcessOutput(state, total, total)

    return aggregators.AggregationProcess(initialize, next_fn)


def _hadamard_magnitudes(y, x):
  """(|H y|, |x padded|): equal iff y = H (s * x) for some signs s (H is its own inverse)."""
  d = y.shape[0]
  return np.abs(hadamard_matrix(d) @ y), np.abs(np.pad(x.reshape(-1), (0, d - x.size)))


def _dft_magnitudes(y, x):
  """(|z|, |x as complex|): equal iff y is the unitary DFT of x rotated by unit phases."""
  n = y.shape[0] // 2
  z = np.fft.ifft(y[:n] + 1j * y[n:]) * np.sqrt(n)
  x = np.pad(x.reshape(-1), (0, 2 * n - x.size))
  return np.abs(z), np.abs(x[:n] + 1j * x[n:])


@pytest.mark.parametrize("make, magnitudes, padded", [
    (aggregators.HadamardTransformFactory, _hadamard_magnitudes, dict(a=4, b=8, c=1)),
    (aggregators.DiscreteFourierTransformFactory, _dft_magnitudes, dict(a=4, b=6, c=2)),
], ids=["hd", "dft"])
def test_clients_send_one_random_rotation_per_round(runtime, make, magnitudes, padded):
  process = make(_SumReportingSum()).create(VALUE)
  assert str(process.next.type_signature.result[2]) == (
      f"<{process.next.type_signature.result[2].member.names()[0]}="
      f"<a=float32[{padded['a']}],b=float32[{padded['b']}],c=float32[{padded['c']}]>>@SERVER")
  state = process.initialize()
  for round_num in range(2):
    values = client_values(3, seed=round_num)
    output = process.next(state, values)
    state = output.state
    sent = list(output.measurements.values())[0]
    for k in SHAPES:
      y = np.asarray(sent[k], np.float64)
      # What the inner factory summed is an orthogonal rotation of the clients' sum (so all
      # clients used the same one; zero padding included), not the sum itself.
      got, expected = magnitudes(y, total(values, k))
      np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
      np.testing.assert_allclose(np.linalg.norm(y), np.linalg.norm(total(values, k)), rtol=1e-5)
  # The same values rotated in two rounds give different vectors: the rotation changes.
  values = client_values(1, seed=5)
  again = [np.asarray(list(process.next(s, values).measurements.values())[0]["b"]) for s in
           (process.initialize(), state)]
  assert not np.allclose(again[0], again[1], atol=1e-3)


@pytest.mark.parametrize("make", [f for f, _ in FACTORIES], ids=["hd", "dft"])
def test_a_run_replays_from_its_seed_on_both_runtimes(make):
  value_type = fx.TensorType(np.float32, [6])
  values = [np.arange(6, dtype=np.float32) * (i + 1) for i in range(3)]

  def run(runtime, seed):
    process = make(_SumReportingSum(), seed=seed).create(value_type)
    with runtime:
      return np.asarray(list(process.next(process.initialize(), values).measurements.values())[0])

  vectorized = run(fx.runtime.vectorized(), 3)
  np.testing.assert_allclose(run(fx.runtime.sequential(), 3), vectorized, rtol=1e-5, atol=1e-5)
  assert not np.allclose(run(fx.runtime.vectorized(), 4), vectorized, atol=1e-3)


def test_rotation_around_quantization_measures_the_padded_bits():
  # The inner factory gets the rotated (padded) structure: its bits count the padded sizes.
  inner = aggregators.EncodedSumFactory.quantize_above_threshold(8, threshold=0)
  process = aggregators.HadamardTransformFactory(inner).create(VALUE)
  values = client_values(2)
  with fx.runtime.vectorized():
    output = process.next(process.initialize(), values)
  # Padded sizes 4, 8, 1: 32 * ceil(8 d / 28) + 64 each.
  assert float(output.measurements["hd"]["bits"]) == sum(
      32 * -(-8 * d // 28) + 64 for d in (4, 8, 1))
  # Quantized after the rotation: close to the sum, within the levels' error.
  np.testing.assert_allclose(output.result["b"], total(values, "b"), atol=0.1)


@pytest.mark.parametrize("make, cls, words", [
    (lambda: aggregators.HadamardTransformFactory(num_repeats=0), ValueError,
     ["HadamardTransformFactory: num_repeats is out of range.", "expected: an int >= 1"]),
    (lambda: aggregators.DiscreteFourierTransformFactory(num_repeats=1.5), TypeError,
     ["DiscreteFourierTransformFactory: num_repeats must be an int."]),
    (lambda: aggregators.HadamardTransformFactory(inner_agg_factory="sum"), TypeError,
     ["inner_agg_factory must be an aggregation factory.", "actual:   'sum'"]),
    (lambda: aggregators.HadamardTransformFactory(_WeightedOnly()), TypeError,
     ["inner_agg_factory must be an unweighted aggregation factory.",
      "actual:   _WeightedOnly (a WeightedAggregationFactory)"]),
    (lambda: aggregators.HadamardTransformFactory().create(
        fx.to_type([(np.int32, [2]), (np.float32, [2])])), TypeError,
     ["HadamardTransformFactory.create: the tensors must be all integers or all floats."]),
    (lambda: aggregators.DiscreteFourierTransformFactory().create(fx.TensorType(np.str_, [2])),
     TypeError, ["the values must be integers or floats.", "actual:   value_type str[2]"]),
    (lambda: aggregators.HadamardTransformFactory().create(VALUE, np.float32), TypeError,
     ["this factory does not take weights."]),
])
def test_misuse_is_a_clear_error(make, cls, words):
  with pytest.raises(cls) as info:
    make()
  message = str(info.value)
  for word in words:
    assert word in message, (word, message)
  assert re.search(rf"at {re.escape(__file__)}:\d+", message)


class _WeightedOnly(aggregators.WeightedAggregationFactory):
  def create(self, value_type, weight_type):
    return aggregators.MeanFactory().create(value_type, weight_type)
