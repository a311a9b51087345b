"""SecureSumFactory, SecureModularSumFactory and secure_quantized_sum against NumPy (and TFF's
printed types and documented examples), on every runtime."""

import collections
import contextlib

import numpy as np
import pytest

import federax as fx
from federax import aggregators

F32_STRUCT = fx.to_type(collections.OrderedDict(a=(np.float32, [3]), b=(np.float32, [])))
I32_STRUCT = fx.to_type(collections.OrderedDict(a=(np.int32, [2, 2]), b=(np.int32, [])))
EPS32 = 2.0**-23

MEASUREMENTS = ("secure_upper_clipped_count=int32,secure_lower_clipped_count=int32,"
                "secure_upper_threshold={d},secure_lower_threshold={d}")


def float_bound(n, lower, upper, eps=EPS32):
  """The documented error bound of a quantized secure sum of n clients."""
  levels = 2**31 if eps == EPS32 else 2**32 - 1  # float32's grid, TFF's (float64).
  span, largest = float(upper) - float(lower), max(abs(float(lower)), abs(float(upper)))
  return n * (span / (2 * levels) + 4 * eps * (span + largest))


def stacked(values, name=None):
  return np.stack([np.asarray(v if name is None else v[name], np.float64) for v in values])


def clip_counts(values, lower, upper):
  """(clients with an entry above upper, clients with one below lower), TFF's counts."""
  flat = [np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in
                          (v.values() if isinstance(v, dict) else [v])]) for v in values]
  return sum(int(f.max() > upper) for f in flat), sum(int(f.min() < lower) for f in flat)


def threshold_process(initial):
  """A hand-written adaptive threshold: `t <- t / 2 + mean(fed values) / 2`."""
  initialize = fx.federated_computation(
      lambda: fx.federated_value(np.float32(initial), fx.SERVER))
  step = fx.computation(np.float32, np.float32)(lambda t, mean: 0.5 * t + 0.5 * mean)
  next_fn = fx.federated_computation(
      lambda state, value: fx.federated_map(step, (state, fx.federated_mean(value))),
      fx.FederatedType(np.float32, fx.SERVER), fx.FederatedType(np.float32, fx.CLIENTS))
  report = fx.federated_computation(lambda state: state, fx.FederatedType(np.float32, fx.SERVER))
  return fx.templates.EstimationProcess(initialize, next_fn, report)


# --- SecureModularSumFactory ---------------------------------------------------------------------


def test_modular_sum_is_the_exact_modular_sum(runtime):
  rng = np.random.default_rng(0)
  for modulus in (7, 2**31 - 1):
    process = aggregators.SecureModularSumFactory(modulus).create(I32_STRUCT)
    assert str(process.next.type_signature) == (
        "(<state=<>@SERVER,value={<a=int32[2,2],b=int32>}@CLIENTS> -> <state=<>@SERVER,"
        "result=<a=int32[2,2],b=int32>@SERVER,measurements=<>@SERVER>)")
    values = [collections.OrderedDict(a=rng.integers(-2**31, 2**31, (2, 2)).astype(np.int32),
                                      b=np.int32(rng.integers(-2**31, 2**31)))
              for _ in range(6)]
    output = process.next(process.initialize(), values)
    for name in ("a", "b"):
      exact = np.mod(np.stack([v[name] for v in values]).astype(object) % modulus, modulus)
      np.testing.assert_array_equal(output.result[name], exact.sum(0) % modulus)
    assert output.measurements == ()


# TFF's own test table (secure_test.py): (modulus, client values, expected sum).
TFF_SYMMETRIC = [(2, [0, 1], 1), (2, [0, 1, 1], -1), (2, [0, 1, 1, 1], 0), (2, [0, -1], -1),
                 (2, [0, -1, -1], 1), (8, [1, 2, 3], 6), (8, [1, 2, 3, 4], -5),
                 (8, [-1, -2, -3, -4], 5), (22, [22], -21), (22, [-22], 21), (22, [215], 0),
                 (22, [112, 123], 20)]


def test_symmetric_modular_sum_matches_tffs_table_and_numpy(runtime):
  for modulus, values, expected in TFF_SYMMETRIC:
    process = aggregators.SecureModularSumFactory(modulus, symmetric_range=True).create(np.int32)
    assert int(process.next(process.initialize(), values).result) == expected
  modulus = 2**30  # The largest: the secure sum runs modulo 2**31 - 1.
  rng = np.random.default_rng(1)
  values = rng.integers(-modulus + 1, modulus, size=(5, 3)).astype(np.int32)
  process = aggregators.SecureModularSumFactory(modulus, True).create((np.int32, [3]))
  result = process.next(process.initialize(), list(values)).result
  total = np.mod(values.astype(object), 2 * modulus - 1).sum(0) % (2 * modulus - 1)
  expected = np.where(total >= modulus, total - (2 * modulus - 1), total)
  np.testing.assert_array_equal(result, expected.astype(np.int64))
  assert np.all(np.abs(result) <= modulus - 1)


# --- SecureSumFactory with integers --------------------------------------------------------------


def test_integer_thresholds_sum_clipped_values_exactly_and_count_clients(runtime):
  process = aggregators.SecureSumFactory(5, -3).create(I32_STRUCT)
  assert str(process.next.type_signature) == (
      "(<state=<>@SERVER,value={<a=int32[2,2],b=int32>}@CLIENTS> -> <state=<>@SERVER,"
      "result=<a=int32[2,2],b=int32>@SERVER,measurements=<" + MEASUREMENTS.format(d="int32")
      + ">@SERVER>)")
  rng = np.random.default_rng(2)
  values = [collections.OrderedDict(a=rng.integers(-6, 7, (2, 2)).astype(np.int32),
                                    b=np.int32(rng.integers(-2, 4))) for _ in range(7)]
  values[3]["b"] = np.int32(2**31 - 1)  # One client far outside the range.
  state = process.initialize()
  for _ in range(2):  # A second round from the carried (empty) state.
    output = process.next(state, values)
    state = output.state
    for name in ("a", "b"):
      expected = np.clip(np.stack([v[name] for v in values]), -3, 5).sum(0)
      np.testing.assert_array_equal(output.result[name], expected)
    above, below = clip_counts(values, -3, 5)
    assert (int(output.measurements["secure_upper_clipped_count"]),
            int(output.measurements["secure_lower_clipped_count"])) == (above, below)
    assert (int(output.measurements["secure_upper_threshold"]),
            int(output.measurements["secure_lower_threshold"])) == (5, -3)


def test_full_int32_range_cannot_overflow(runtime):
  # 32-bit shifted values: any two would overflow a 32-bit sum, yet the result is exact.
  process = aggregators.SecureSumFactory(2**31 - 1, -2**31).create(fx.TensorType(np.int32, [3]))
  values = [np.array([2**31 - 1, -2**31, 2**30], np.int32),
            np.array([2**31 - 1, -2**31, 2**30], np.int32),
            np.array([-2**31, 2**31 - 1, -2**31 + 5], np.int32),
            np.array([-2**31 + 1, 2**31 - 1, 0], np.int32)]
  result = process.next(process.initialize(), values).result
  np.testing.assert_array_equal(result, np.stack(values).astype(np.int64).sum(0))
  # A lone threshold of 2**30 spans 31 bits: these shifted values sum to more than 2**32.
  process = aggregators.SecureSumFactory(2**30).create(np.int32)
  values = [2**30, 2**30, -2**30 + 3, 2**30 - 5, -2**30]
  assert int(process.next(process.initialize(), values).result) == sum(values)


# --- SecureSumFactory with floats ----------------------------------------------------------------


def test_float_thresholds_match_tffs_example(runtime):
  process = aggregators.SecureSumFactory(1.0, -1.0).create(np.float32)
  output = process.next(process.initialize(), [-2.5, -0.5, 0.0, 1.0, 1.5, 2.5])
  assert float(output.result) == 1.5  # Dyadic values in [-1, 1]: float32's grid keeps them.
  assert float(process.next(process.initialize(), [0.0] * 5).result) == 0.0
  assert dict(output.measurements) == dict(
      secure_upper_clipped_count=2, secure_lower_clipped_count=1, secure_upper_threshold=1.0,
      secure_lower_threshold=-1.0)


def test_float_struct_within_documented_error_with_a_huge_client(runtime):
  process = aggregators.SecureSumFactory(2.0, -0.5).create(F32_STRUCT)
  assert str(process.next.type_signature) == (
      "(<state=<>@SERVER,value={<a=float32[3],b=float32>}@CLIENTS> -> <state=<>@SERVER,"
      "result=<a=float32[3],b=float32>@SERVER,measurements=<" + MEASUREMENTS.format(d="float32")
      + ">@SERVER>)")
  rng = np.random.default_rng(3)
  values = [collections.OrderedDict(a=rng.uniform(-1, 2.5, 3).astype(np.float32),
                                    b=np.float32(rng.uniform(-0.4, 1.9))) for _ in range(9)]
  values[4] = collections.OrderedDict(a=np.array([3e30, 1.0, 0.0], np.float32), b=np.float32(1))
  output = process.next(process.initialize(), values)
  for name in ("a", "b"):
    expected = np.clip(stacked(values, name), np.float32(-0.5), np.float32(2.0)).sum(0)
    error = np.max(np.abs(np.asarray(output.result[name], np.float64) - expected))
    assert error <= float_bound(9, -0.5, 2.0), (name, error)
  assert (int(output.measurements["secure_upper_clipped_count"]),
          int(output.measurements["secure_lower_clipped_count"])) == clip_counts(values, -0.5, 2)


RANGES = [(-1.0, 1.0), (1000.0, 1001.0), (-2.0**34, 2.0**34), (-1e-3, 5e-4), (-3.0, -2.5)]


def test_quantization_error_stays_within_the_documented_bound():
  # Bounds at the server: one program serves every range.
  @fx.federated_computation(fx.FederatedType((np.float32, [64]), fx.CLIENTS),
                            fx.FederatedType(np.float32, fx.SERVER),
                            fx.FederatedType(np.float32, fx.SERVER))
  def total(values, lower, upper):
    return aggregators.secure_quantized_sum(values, lower, upper)

  rng = np.random.default_rng(4)
  for n in (1, 300):
    for lower, upper in RANGES:
      # Values across the range, beyond it, and on and next to the bounds (the hardest levels).
      span = upper - lower
      inside = rng.uniform(lower - 0.2 * span, upper + 0.2 * span, size=(n, 32))
      edges = rng.choice([lower, upper, lower + 1e-7 * span, upper - 1e-7 * span], size=(n, 32))
      values = np.concatenate([inside, edges], axis=1).astype(np.float32)
      result = total(list(values), np.float32(lower), np.float32(upper))
      expected = np.clip(values.astype(np.float64), np.float32(lower), np.float32(upper)).sum(0)
      error = np.max(np.abs(np.asarray(result, np.float64) - expected))
      assert error <= float_bound(n, lower, upper), (n, lower, upper, error)


def test_a_nan_counts_as_the_lower_bound_as_in_tff(runtime):
  process = aggregators.SecureSumFactory(1.0).create(np.float32)
  output = process.next(process.initialize(), [np.nan, 0.5])
  assert abs(float(output.result) - (-0.5)) <= float_bound(2, -1, 1)
  assert int(output.measurements["secure_upper_clipped_count"]) == 0
  assert int(output.measurements["secure_lower_clipped_count"]) == 0


# --- Adaptive thresholds -------------------------------------------------------------------------


def test_one_adaptive_threshold_is_fed_each_clients_largest_magnitude(runtime):
  process = aggregators.SecureSumFactory(threshold_process(1.0)).create(F32_STRUCT)
  assert str(process.next.type_signature) == (
      "(<state=float32@SERVER,value={<a=float32[3],b=float32>}@CLIENTS> -> <state=float32@SERVER,"
      "result=<a=float32[3],b=float32>@SERVER,measurements=<" + MEASUREMENTS.format(d="float32")
      + ">@SERVER>)")
  rng = np.random.default_rng(5)
  state, threshold = process.initialize(), 1.0
  for round_index in range(3):  # Different values each round: the state must be carried.
    values = [collections.OrderedDict(a=rng.normal(0, 2, 3).astype(np.float32),
                                      b=np.float32(rng.normal(0, 2))) for _ in range(5)]
    output = process.next(state, values)
    for name in ("a", "b"):
      expected = np.clip(stacked(values, name), -threshold, threshold).sum(0)
      error = np.max(np.abs(np.asarray(output.result[name], np.float64) - expected))
      assert error <= float_bound(5, -threshold, threshold), (round_index, name, error)
    measured = output.measurements
    assert float(measured["secure_upper_threshold"]) == pytest.approx(threshold, rel=1e-6)
    assert float(measured["secure_lower_threshold"]) == pytest.approx(-threshold, rel=1e-6)
    assert (int(measured["secure_upper_clipped_count"]),
            int(measured["secure_lower_clipped_count"])) == clip_counts(values, -threshold,
                                                                        threshold)
    largest = [max(np.abs(v["a"]).max(), abs(float(v["b"]))) for v in values]
    threshold = 0.5 * threshold + 0.5 * float(np.mean(largest))
    state = output.state
    assert float(state) == pytest.approx(threshold, rel=1e-5)


def test_two_adaptive_thresholds_are_fed_client_maxima_and_minima(runtime):
  process = aggregators.SecureSumFactory(threshold_process(1.0),
                                         threshold_process(-1.0)).create((np.float32, [2]))
  assert str(process.next.type_signature) == (
      "(<state=<float32,float32>@SERVER,value={float32[2]}@CLIENTS> -> <state=<float32,float32>"
      "@SERVER,result=float32[2]@SERVER,measurements=<" + MEASUREMENTS.format(d="float32")
      + ">@SERVER>)")
  rng = np.random.default_rng(6)
  state, upper, lower = process.initialize(), 1.0, -1.0
  for _ in range(3):
    values = rng.normal(0.3, 1.0, size=(6, 2)).astype(np.float32)
    output = process.next(state, list(values))
    expected = np.clip(values.astype(np.float64), lower, upper).sum(0)
    error = np.max(np.abs(np.asarray(output.result, np.float64) - expected))
    assert error <= float_bound(6, lower, upper)
    assert float(output.measurements["secure_upper_threshold"]) == pytest.approx(upper, 1e-6)
    assert float(output.measurements["secure_lower_threshold"]) == pytest.approx(lower, 1e-6)
    assert (int(output.measurements["secure_upper_clipped_count"]),
            int(output.measurements["secure_lower_clipped_count"])) == clip_counts(
                list(values), lower, upper)
    upper = 0.5 * upper + 0.5 * float(values.max(1).mean())
    lower = 0.5 * lower + 0.5 * float(values.min(1).mean())
    state = output.state
    np.testing.assert_allclose([float(state[0]), float(state[1])], [upper, lower], rtol=1e-5)


def test_wide_values_extremes_are_read_in_one_map(runtime):
  # The adaptive thresholds learn each client's largest and smallest entry, both taken in one
  # map by one reduction (test_one_pass.py): each client's value is read once for the two.
  process = aggregators.SecureSumFactory(threshold_process(1.0),
                                         threshold_process(-1.0)).create((np.float32, [5000]))
  rng = np.random.default_rng(8)
  values = list(rng.normal(0.2, 0.5, size=(4, 5000)).astype(np.float32))
  output = process.next(process.initialize(), values)
  expected = np.clip(np.asarray(values, np.float64), -1.0, 1.0).sum(0)
  assert np.max(np.abs(np.asarray(output.result, np.float64) - expected)) <= float_bound(4, -1, 1)
  assert (int(output.measurements["secure_upper_clipped_count"]),
          int(output.measurements["secure_lower_clipped_count"])) == clip_counts(values, -1, 1)
  upper = 0.5 + 0.5 * float(np.mean([v.max() for v in values]))
  lower = -0.5 + 0.5 * float(np.mean([v.min() for v in values]))
  np.testing.assert_allclose([float(output.state[0]), float(output.state[1])], [upper, lower],
                             rtol=1e-6)
  if isinstance(runtime, fx.runtime.VectorizedRuntime):
    explained = fx.runtime.explain(process.next, process.initialize(), values)
    assert "reductions of >= 4096 elements read one argument" not in explained, explained


# --- secure_quantized_sum ------------------------------------------------------------------------


MIXED = fx.to_type(collections.OrderedDict(a=(np.int32, [2]), b=(np.float32, [3])))


def test_quantized_sum_of_several_dtypes_with_server_bounds(runtime):
  bound_type = fx.to_type(collections.OrderedDict(a=np.int32, b=np.float32))

  @fx.federated_computation(fx.FederatedType(MIXED, fx.CLIENTS),
                            fx.FederatedType(bound_type, fx.SERVER),
                            fx.FederatedType(bound_type, fx.SERVER))
  def total(values, lower, upper):
    return aggregators.secure_quantized_sum(values, lower, upper)

  assert str(total.type_signature) == (
      "(<values={<a=int32[2],b=float32[3]>}@CLIENTS,lower=<a=int32,b=float32>@SERVER,"
      "upper=<a=int32,b=float32>@SERVER> -> <a=int32[2],b=float32[3]>@SERVER)")
  rng = np.random.default_rng(7)
  values = [collections.OrderedDict(a=rng.integers(-2**31, 2**31, 2).astype(np.int32),
                                    b=rng.uniform(-3, 3, 3).astype(np.float32)) for _ in range(5)]
  lower = collections.OrderedDict(a=np.int32(-2**31), b=np.float32(-1.5))
  upper = collections.OrderedDict(a=np.int32(2**31 - 1), b=np.float32(2.0))
  values[0]["a"] = np.array([2**31 - 1, -2**31], np.int32)
  result = total(values, lower, upper)
  ints = np.stack([v["a"] for v in values]).astype(object).sum(0)
  ints = (ints + 2**31) % 2**32 - 2**31  # int32 wraps, as TFF's int32 result does.
  np.testing.assert_array_equal(result["a"], ints.astype(np.int64))
  expected = np.clip(stacked(values, "b"), -1.5, 2.0).sum(0)
  assert np.max(np.abs(result["b"] - expected)) <= float_bound(5, -1.5, 2.0)

  crossed = collections.OrderedDict(a=np.int32(0), b=np.float32(3.0))  # b: lower > upper.
  with pytest.raises(Exception, match=r"lower_bound 3.0 exceeds upper_bound 2.0"):
    total(values, crossed, upper)


def test_quantized_sum_of_many_clients_at_the_top_level(runtime):
  # 300 clients at the top level (about 2**32 each): the limb sums keep the total exact.
  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
  def total(values):
    return aggregators.secure_quantized_sum(values, np.float32(-4.0), np.float32(4.0))

  result = float(total([4.0] * 150 + [-4.0] * 100 + [1.0] * 50))
  assert abs(result - (600.0 - 400.0 + 50.0)) <= float_bound(300, -4.0, 4.0)


def test_quantized_sum_with_equal_bounds_gives_n_times_the_bound(runtime):
  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
  def total(values):
    return aggregators.secure_quantized_sum(values, 0.5, 0.5)

  assert float(total([0.0, 2.0, np.nan])) == 1.5


# --- Misuse --------------------------------------------------------------------------------------


@contextlib.contextmanager
def raises(cls, *words):
  """`pytest.raises(cls)` that also checks the message holds every one of `words`."""
  with pytest.raises(cls) as info:
    yield info
  missing = [w for w in words if w not in str(info.value)]
  assert not missing, f"{missing} not in:\n{info.value}"


def test_modular_sum_misuse():
  with raises(ValueError, "SecureModularSumFactory", "[2, 2147483647]"):
    aggregators.SecureModularSumFactory(1)
  with raises(ValueError, "[2, 2147483647]"):
    aggregators.SecureModularSumFactory(2**31)
  with raises(ValueError, "[2, 1073741824]", "2 * modulus - 1"):
    aggregators.SecureModularSumFactory(2**30 + 1, symmetric_range=True)
  with raises(TypeError, "`modulus` must be an int"):
    aggregators.SecureModularSumFactory(8.0)
  with raises(TypeError, "`symmetric_range` must be a bool"):
    aggregators.SecureModularSumFactory(8, symmetric_range="True")
  with raises(TypeError, "SecureModularSumFactory.create", "integer tensors", "float32"):
    aggregators.SecureModularSumFactory(8).create(fx.TensorType(np.float32))
  with raises(TypeError, "signed integer"):
    aggregators.SecureModularSumFactory(8, True).create(fx.TensorType(np.uint32))
  with raises(ValueError, "do not fit int8"):
    aggregators.SecureModularSumFactory(1000).create(fx.TensorType(np.int8))


def test_secure_sum_factory_misuse():
  with raises(TypeError, "SecureSumFactory", "`upper_bound_threshold` must be a number"):
    aggregators.SecureSumFactory("1.0")
  with raises(TypeError, "same kind", "lower_bound_threshold a float"):
    aggregators.SecureSumFactory(1.0, -1)
  with raises(TypeError, "same kind"):
    aggregators.SecureSumFactory(threshold_process(1.0), -1.0)
  with raises(ValueError, "must be positive"):
    aggregators.SecureSumFactory(-1.0)
  with raises(ValueError, "must be larger than"):
    aggregators.SecureSumFactory(1, 1)
  with raises(TypeError, "SecureSumFactory.create", "integer thresholds sum integer values",
              "float32"):
    aggregators.SecureSumFactory(1, -1).create(fx.TensorType(np.float32))
  with raises(TypeError, "float thresholds sum float32 or float64", "int thresholds"):
    aggregators.SecureSumFactory(1.0).create(fx.TensorType(np.int32))
  with raises(TypeError, "thresholds from estimation processes sum float32", "int32"):
    aggregators.SecureSumFactory(threshold_process(1.0)).create(fx.TensorType(np.int32))
  with raises(TypeError, "share one dtype", "float32, int32"):
    aggregators.SecureSumFactory(1.0).create(MIXED)
  with raises(TypeError, "numeric tensors"):
    aggregators.SecureSumFactory(1.0).create(fx.TensorType(np.str_))
  with raises(TypeError, "numeric tensors"):
    aggregators.SecureSumFactory(1.0).create(fx.FederatedType(np.float32, fx.SERVER))
  with raises(ValueError, "must fit the values' dtype int32", "42 bits"):
    aggregators.SecureSumFactory(2**40).create(fx.TensorType(np.int32))


def test_secure_sum_factory_refuses_a_mistyped_estimation_process():
  good = threshold_process(1.0)
  no_value = fx.templates.EstimationProcess(
      good.initialize, fx.federated_computation(lambda s: s, fx.FederatedType(np.float32,
                                                                              fx.SERVER)),
      good.report)
  with raises(TypeError, "`upper_bound_threshold.next` must take two arguments"):
    aggregators.SecureSumFactory(no_value)
  int_fed = fx.templates.EstimationProcess(
      good.initialize, fx.federated_computation(
          lambda s, v: s, fx.FederatedType(np.float32, fx.SERVER),
          fx.FederatedType(np.int32, fx.CLIENTS)), good.report)
  with raises(TypeError, "second argument must accept", "{float32}@CLIENTS"):
    aggregators.SecureSumFactory(good, int_fed)


def test_secure_quantized_sum_misuse():
  clients = fx.FederatedType(np.float32, fx.CLIENTS)
  server = fx.FederatedType(np.float32, fx.SERVER)
  with raises(TypeError, "secure_quantized_sum", "both be constants or both be federated"):
    fx.federated_computation(
        lambda v, b: aggregators.secure_quantized_sum(v, b, 1.0), clients, server)
  with raises(TypeError, "a scalar bound must have the dtype", "int32"):
    fx.federated_computation(lambda v: aggregators.secure_quantized_sum(v, -1, 1), clients)
  with raises(ValueError, "`lower_bound` must not exceed `upper_bound`"):
    fx.federated_computation(lambda v: aggregators.secure_quantized_sum(v, 1.0, -1.0), clients)
  with raises(TypeError, "placed at CLIENTS"):
    fx.federated_computation(lambda v: aggregators.secure_quantized_sum(v, -1.0, 1.0), server)
  with raises(TypeError, "int32, int64, float32 or float64"):
    fx.federated_computation(lambda v: aggregators.secure_quantized_sum(v, -1.0, 1.0),
                             fx.FederatedType(np.float16, fx.CLIENTS))
  with raises(TypeError, "structured bounds must match"):
    fx.federated_computation(
        lambda v: aggregators.secure_quantized_sum(v, (np.int32(0), np.float32(0)),
                                                   (np.int32(1), np.float32(1))),
        fx.FederatedType(MIXED, fx.CLIENTS))


X64_SCRIPT = """
import numpy as np
import federax as fx
process = fx.aggregators.SecureSumFactory(2**33, -2**33).create(fx.TensorType(np.int64, [2]))
values = [np.array([2**33, -2**34], np.int64), np.array([5, 2**32 + 7], np.int64)]
print([int(x) for x in process.next(process.initialize(), values).result])
process = fx.aggregators.SecureSumFactory(np.float64(2.0**66)).create(np.float64)
print(float(process.next(process.initialize(), [2.0**65, 2.0**65, 2.0**66]).result))
process = fx.aggregators.SecureSumFactory(1.0, -0.5).create(fx.TensorType(np.float64, [100]))
values = np.random.default_rng(8).uniform(-0.7, 1.2, size=(50, 100))
result = process.next(process.initialize(), list(values)).result
print(np.abs(result - np.clip(values, -0.5, 1.0).sum(0)).max())
"""


def test_64_bit_values_with_x64_enabled():
  # 64-bit dtypes need JAX's x64 mode, a process-wide switch: run them in a process of their own.
  import os
  import pathlib
  import subprocess
  import sys
  root = pathlib.Path(__file__).resolve().parents[2]
  env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu",
             PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
  out = subprocess.run([sys.executable, "-c", X64_SCRIPT], env=env, capture_output=True,
                       text=True, timeout=120, check=True).stdout.split("\n")
  # TFF's own cases (secure_test.py): 2**33 thresholds on int64, 2**66 on float64.
  assert out[0] == str([2**33 + 5, -2**33 + 2**32 + 7])  # Clipped to [-2**33, 2**33], exact.
  assert abs(float(out[1]) - 2.0**67) <= float_bound(3, -2.0**66, 2.0**66, eps=2.0**-52)
  # In float64 the grid dominates the bound: a coarser grid than 2**32 - 1 steps would fail.
  assert float(out[2]) <= float_bound(50, -0.5, 1.0, eps=2.0**-52)
