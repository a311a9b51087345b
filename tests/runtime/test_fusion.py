"""Cheap client maps recomputed in the loop of the reduction that consumes them
(federax.runtime.vectorized.fusion), against NumPy and the unfused program."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx

WIDE = 5000  # Rows this wide reduce in a loop over the clients (`reductions.LOOP_MIN_ROW`).


def _secure_sum_of_levels():
  value = fx.FederatedType(fx.TensorType(np.float32, [WIDE]), fx.CLIENTS)

  @fx.computation(fx.TensorType(np.float32, [WIDE]))
  def levels(x):  # Two 8-bit limbs of a 16-bit level: a cheap map, as the secure sums' encoding.
    level = jnp.round(x * 1000).astype(jnp.int32)
    return level & 255, level >> 8

  @fx.federated_computation(value)
  def total(values):
    return fx.federated_secure_sum_bitwidth(fx.federated_map(levels, values), 8)

  return total


def test_secure_sum_recomputes_its_cheap_map_in_the_loop():
  rng = np.random.default_rng(0)
  data = [rng.uniform(0, 65, WIDE).astype(np.float32) for _ in range(5)]
  level = [np.round(x * np.float32(1000)).astype(np.int32) for x in data]
  total = _secure_sum_of_levels()
  with fx.runtime.vectorized(shard=False):
    low, high = total(data)
    assert "recomputed in its loop" in fx.runtime.explain(total, data)
  np.testing.assert_array_equal(low, sum(v & 255 for v in level))
  np.testing.assert_array_equal(high, sum(v >> 8 for v in level))


def test_fused_secure_sum_still_refuses_values_out_of_range():
  data = [np.zeros(WIDE, np.float32) for _ in range(3)]
  data[2][1234] = 70.0  # Level 70000: its high limb 273 > 255.
  data[1][5] = -0.002  # Level -2: its low limb 254, its high limb -1.
  with fx.runtime.vectorized(shard=False):
    with pytest.raises(Exception, match=r"client values \[-1, 273\] lie outside \[0, 255\]"):
      _secure_sum_of_levels()(data)


def test_aggregate_recomputes_its_cheap_map_bit_for_bit():
  value = fx.FederatedType(fx.TensorType(np.float32, [WIDE]), fx.CLIENTS)
  scale = fx.computation(lambda x: (x * 0.1 + 0.3, jnp.max(x)), fx.TensorType(np.float32, [WIDE]))
  zero = fx.computation(lambda: (np.zeros(WIDE, np.float32), np.float32(0)))
  add = lambda a, b: (a[0] + b[0], jnp.maximum(a[1], b[1]))  # noqa: E731
  pair = fx.StructType([fx.TensorType(np.float32, [WIDE]), fx.TensorType(np.float32)])
  accumulate = fx.computation(add, pair, pair)
  report = fx.computation(lambda a: a, pair)

  @fx.federated_computation(value)
  def fused(values):
    return fx.federated_aggregate(fx.federated_map(scale, values), zero(), accumulate,
                                  accumulate, report)

  data = [np.random.default_rng(i).normal(size=WIDE).astype(np.float32) for i in range(6)]
  with fx.runtime.vectorized(shard=False):
    got = fused(data)
    assert "recomputed in its loop" in fx.runtime.explain(fused, data)
  with fx.runtime.vectorized(shard=False, client_loop="vmap"):  # vmapped map, then the loop
    unfused = fx.federated_computation(
        lambda v: fx.federated_aggregate(v, zero(), accumulate, accumulate, report),
        fx.FederatedType(pair, fx.CLIENTS))
    want = unfused([tuple(np.asarray(y) for y in scale(x)) for x in data])
  np.testing.assert_array_equal(got[0], want[0])
  assert float(got[1]) == max(float(x.max()) for x in data)
  expected = np.zeros(WIDE, np.float32)
  for x in data:
    expected = expected + (x * np.float32(0.1) + np.float32(0.3))
  np.testing.assert_allclose(got[0], expected, rtol=1e-6, atol=1e-6)


def test_a_map_with_a_matrix_product_is_not_recomputed():
  value = fx.FederatedType(fx.TensorType(np.float32, [WIDE]), fx.CLIENTS)
  product = fx.computation(lambda x: ((x[:100, None] @ x[None, :50]).reshape(-1) > 0).astype(
      jnp.int32), fx.TensorType(np.float32, [WIDE]))
  total = fx.federated_computation(
      lambda v: fx.federated_secure_sum_bitwidth(fx.federated_map(product, v), 1), value)
  data = [np.ones(WIDE, np.float32)] * 3
  with fx.runtime.vectorized(shard=False):
    np.testing.assert_array_equal(total(data), np.full(5000, 3))
    assert "recomputed in its loop" not in fx.runtime.explain(total, data)


def _weighted_levels_sum(weigh):
  """A secure sum of the levels of `weigh(x, w)` per client (a map feeding a map)."""
  value = fx.FederatedType(fx.TensorType(np.float32, [WIDE]), fx.CLIENTS)
  weight = fx.FederatedType(fx.TensorType(np.float32), fx.CLIENTS)
  weighted = fx.computation(weigh, fx.TensorType(np.float32, [WIDE]), fx.TensorType(np.float32))
  levels = fx.computation(lambda y: (jnp.round(y * 1000).astype(jnp.int32) & 255,
                                     jnp.round(y * 1000).astype(jnp.int32) >> 8),
                          fx.TensorType(np.float32, [WIDE]))

  @fx.federated_computation(value, weight)
  def total(values, weights):
    ys = fx.federated_map(weighted, (values, weights))
    return fx.federated_secure_sum_bitwidth(fx.federated_map(levels, ys), 8)

  return total


def _np_weighted_levels(data, weights, weigh):
  level = [np.round(weigh(x, np.float32(w)) * np.float32(1000)).astype(np.int32)
           for x, w in zip(data, weights)]
  return sum(v & 255 for v in level), sum(v >> 8 for v in level)


def test_the_cheap_map_that_made_a_recomputed_maps_values_is_recomputed_too():
  # The weighting runs in the secure sum's loop from the clients' values: the weighted values
  # are not written out for the loop to read.
  rng = np.random.default_rng(4)
  data = [rng.uniform(0, 20, WIDE).astype(np.float32) for _ in range(6)]
  weights = [1.0, 0.5, 2.0, 3.0, 1.5, 0.25]
  weigh = lambda x, w: x * w  # noqa: E731
  total = _weighted_levels_sum(weigh)
  with fx.runtime.vectorized(shard=False):
    low, high = total(data, weights)
    explained = fx.runtime.explain(total, data, weights)
  assert "values, and 1 that made its arguments, recomputed in its loop" in explained, explained
  want_low, want_high = _np_weighted_levels(data, weights, weigh)
  np.testing.assert_array_equal(low, want_low)
  np.testing.assert_array_equal(high, want_high)


def test_a_map_that_reduces_a_wide_value_is_read_not_recomputed():
  # Recomputed per client, its reduction would run once more per client in the loop.
  rng = np.random.default_rng(5)
  data = [rng.uniform(1, 16, WIDE).astype(np.float32) for _ in range(4)]
  for x in data:
    x[7] = 16.0  # The max a power of two: x / max is exact, however XLA computes it.
  weights = [1.0, 2.0, 3.0, 4.0]
  weigh = lambda x, w: x / jnp.max(x) * w  # noqa: E731
  total = _weighted_levels_sum(weigh)
  with fx.runtime.vectorized(shard=False):
    low, high = total(data, weights)
    explained = fx.runtime.explain(total, data, weights)
  assert "recomputed in its loop" in explained and "made its arguments" not in explained
  want_low, want_high = _np_weighted_levels(data, weights, lambda x, w: x / x.max() * w)
  np.testing.assert_array_equal(low, want_low)
  np.testing.assert_array_equal(high, want_high)


def test_a_map_passing_its_argument_through_is_read_not_recomputed_from_itself():
  # Its result holds its argument itself (the same traced array), so the map is remembered as
  # that array's maker: it must not be recomputed to make its own argument.
  value = fx.FederatedType(fx.TensorType(np.float32, [WIDE]), fx.CLIENTS)
  both = fx.computation(lambda x: (x, jnp.round(x).astype(jnp.int32) & 255),
                        fx.TensorType(np.float32, [WIDE]))
  add = fx.computation(lambda a, b: (a[0] + b[0], a[1] + b[1]),
                       fx.StructType([fx.TensorType(np.float32, [WIDE]),
                                      fx.TensorType(np.int32, [WIDE])]),
                       fx.StructType([fx.TensorType(np.float32, [WIDE]),
                                      fx.TensorType(np.int32, [WIDE])]))
  zero = fx.computation(lambda: (np.zeros(WIDE, np.float32), np.zeros(WIDE, np.int32)))
  report = fx.computation(lambda a: a, add.type_signature.result)

  @fx.federated_computation(value)
  def total(values):
    once = fx.federated_map(both, values)
    return fx.federated_aggregate(fx.federated_map(both, once[0]), zero(), add, add, report)

  data = [np.full(WIDE, i + 0.25, np.float32) for i in range(4)]
  with fx.runtime.vectorized(shard=False):
    floats, ints = total(data)
    assert "recomputed in its loop" in fx.runtime.explain(total, data)
  np.testing.assert_array_equal(floats, np.full(WIDE, 0.25 + 1.25 + 2.25 + 3.25, np.float32))
  np.testing.assert_array_equal(ints, np.full(WIDE, 0 + 1 + 2 + 3))


def _limb_sums(n, low, high):
  """The fused secure sum (bitwidth 8) of `n` clients whose two int32 limbs are `low`, `high`."""
  value = fx.FederatedType(fx.TensorType(np.float32, [WIDE]), fx.CLIENTS)
  limbs = fx.computation(lambda x: ((x * 0).astype(jnp.int32) + low,
                                    (x * 0).astype(jnp.int32) + high),
                         fx.TensorType(np.float32, [WIDE]))
  total = fx.federated_computation(
      lambda v: fx.federated_secure_sum_bitwidth(fx.federated_map(limbs, v), 8), value)
  data = [np.full(WIDE, i, np.float32) for i in range(n)]
  with fx.runtime.vectorized(shard=False):
    assert "recomputed in its loop" in fx.runtime.explain(total, data)
    return total(data)


@pytest.mark.parametrize("n", [257, 258])
def test_limbs_added_two_to_a_word_are_exact_up_to_the_lane_bound(n):
  # Two 8-bit limbs share a uint32 word (16-bit lanes) while n * 255 < 2**16: at n = 257 both
  # lanes reach 65535 (the word 2**32 - 1) without a carry; at 258 the limbs are added apart.
  low, high = _limb_sums(n, 255, 255)
  np.testing.assert_array_equal(low, np.full(WIDE, n * 255))
  np.testing.assert_array_equal(high, np.full(WIDE, n * 255))
  low, high = _limb_sums(n, 0, 255)  # An empty low lane under a full high one, and back.
  np.testing.assert_array_equal(low, np.zeros(WIDE))
  np.testing.assert_array_equal(high, np.full(WIDE, n * 255))


def test_lane_groups_pair_32_bit_leaves_of_one_shape_and_bitwidth_within_the_bound():
  from federax.runtime.vectorized.execution import _lane_groups
  u32, i32, f32 = (jnp.zeros(4, d) for d in (jnp.uint32, jnp.int32, jnp.float32))
  # Four 8-bit limbs at 100 clients: two words.
  assert _lane_groups(100, [u32] * 4, [8] * 4) == [(0, 1), (2, 3)]
  assert _lane_groups(257, [u32] * 3, [8] * 3) == [(0, 1), (2,)]
  assert _lane_groups(258, [u32] * 2, [8] * 2) == [(0,), (1,)]  # 258 * 255 >= 2**16
  # Any 32-bit integers of one shape and bitwidth pair up; another shape or bitwidth does not.
  assert _lane_groups(10, [u32, jnp.zeros(5, jnp.uint32), i32, u32], [8, 8, 8, 7]) == [
      (0, 2), (1,), (3,)]
  assert _lane_groups(10, [f32, f32, jnp.zeros(4, jnp.int16)] * 2, [8] * 6) == [
      (0,), (1,), (2,), (3,), (4,), (5,)]


@pytest.mark.parametrize("n", [2, 6, 9])
def test_fused_secure_sum_adds_every_client_once(n):
  # The loop adds several clients a step, then the rest one by one: each client exactly once.
  rng = np.random.default_rng(n)
  data = [rng.uniform(0, 65, WIDE).astype(np.float32) for _ in range(n)]
  level = [np.round(x * np.float32(1000)).astype(np.int32) for x in data]
  with fx.runtime.vectorized(shard=False):
    low, high = _secure_sum_of_levels()(data)
  np.testing.assert_array_equal(low, sum(v & 255 for v in level))
  np.testing.assert_array_equal(high, sum(v >> 8 for v in level))


@pytest.mark.parametrize("n", [3, 9])
def test_fused_aggregate_takes_the_clients_in_order_bit_for_bit(n):
  # Several clients a step, in order: float sums as the sequential runtime adds them.
  value = fx.FederatedType(fx.TensorType(np.float32, [WIDE]), fx.CLIENTS)
  scale = fx.computation(lambda x: x * 0.1 + 0.3, fx.TensorType(np.float32, [WIDE]))
  zero = fx.computation(lambda: np.zeros(WIDE, np.float32))
  row = fx.TensorType(np.float32, [WIDE])
  add = fx.computation(lambda a, b: a + b, row, row)
  report = fx.computation(lambda a: a, row)
  total = fx.federated_computation(
      lambda v: fx.federated_aggregate(fx.federated_map(scale, v), zero(), add, add, report),
      value)
  data = [np.random.default_rng(i).normal(size=WIDE).astype(np.float32) * 10**i
          for i in range(n)]
  with fx.runtime.vectorized(shard=False):
    assert "recomputed in its loop" in fx.runtime.explain(total, data)
    got = total(data)
  with fx.runtime.vectorized(shard=False, client_loop="vmap"):  # vmapped map, one add a step
    unfused = fx.federated_computation(
        lambda v: fx.federated_aggregate(v, zero(), add, add, report), value)
    want = unfused([np.asarray(scale(x)) for x in data])
  np.testing.assert_array_equal(got, want)
  expected = np.zeros(WIDE, np.float64)
  for x in data:
    expected = expected + (x.astype(np.float64) * 0.1 + 0.3)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * 10**(n - 1))


def test_a_limb_masked_in_the_map_is_in_range_by_construction():
  # `x & m` (0 <= m) lies in [0, m] whatever x: the sum needs no range check for it.
  from federax.runtime.vectorized import fusion
  def limbs(x):
    level = jnp.round(x).astype(jnp.int32)
    return level & 255, level >> 8, level & -1, jnp.uint32(7) & level.astype(jnp.uint32), level
  record = fusion.MapRecord(fx.computation(limbs, fx.TensorType(np.float32, [WIDE])),
                            jnp.ones((3, WIDE), jnp.float32), [])
  assert record.bounds() == [255, None, None, 7, None]


def test_a_mask_in_one_branch_of_a_conditional_proves_nothing():
  from federax.runtime.vectorized import fusion
  def limbs(x):
    level = jnp.round(x).astype(jnp.int32)
    masked = jax.lax.cond(x[0] > 0, lambda v: v, lambda v: v & 255, level)  # Masked if not.
    return jax.jit(lambda v: v & 15)(level), masked
  record = fusion.MapRecord(limbs, jnp.ones((3, WIDE), jnp.float32), [])
  assert record.bounds() == [15, None]
