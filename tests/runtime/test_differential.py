"""Every intrinsic on random inputs: vectorized == sequential == a NumPy re-computation."""

import jax
import numpy as np
import pytest

import federax as fx

CLIENT_COUNTS = [1, 4, 7]  # 4 divides the test devices, so that case runs sharded.


def run_everywhere(comp, *args):
  """Results on the vectorized runtime (plain and chunked by 2) and the sequential one."""
  with fx.runtime.vectorized():
    vectorized = comp(*args)
  with fx.runtime.vectorized(chunk_size=2):
    chunked = comp(*args)
  with fx.runtime.sequential():
    sequential = comp(*args)
  return vectorized, chunked, sequential


def assert_all_close(results, expected, rtol=1e-5, atol=1e-5):
  for result in results:
    jax.tree_util.tree_map(
        lambda r, e: np.testing.assert_allclose(np.asarray(r), np.asarray(e), rtol=rtol, atol=atol),
        result, expected)


def client_structs(rng, n):
  return [{"w": rng.normal(size=(3, 2)).astype(np.float32),
           "b": rng.integers(-50, 50, size=(2,)).astype(np.int32)} for _ in range(n)]


STRUCT = fx.to_type({"w": (np.float32, [3, 2]), "b": (np.int32, [2])})
AT_CLIENTS = fx.FederatedType(STRUCT, fx.CLIENTS)


@pytest.mark.parametrize("n", CLIENT_COUNTS)
def test_sum_min_max(n):
  rng = np.random.default_rng(n)
  values = client_structs(rng, n)

  @fx.federated_computation(AT_CLIENTS)
  def stats(x):
    return fx.federated_sum(x), fx.federated_min(x), fx.federated_max(x)

  stacked = {k: np.stack([v[k] for v in values]) for k in ("w", "b")}
  expected = ({k: a.sum(0) for k, a in stacked.items()}, {k: a.min(0) for k, a in stacked.items()},
              {k: a.max(0) for k, a in stacked.items()})
  results = run_everywhere(stats, values)
  assert_all_close(results, expected)
  for result in results:
    assert result[0]["b"].dtype == np.int32 and result[0]["w"].dtype == np.float32


@pytest.mark.parametrize("n", CLIENT_COUNTS)
def test_mean_weighted_and_unweighted(n):
  rng = np.random.default_rng(10 + n)
  x = [rng.normal(size=(4,)).astype(np.float32) for _ in range(n)]
  w = [float(v) for v in rng.uniform(0.5, 20.0, size=n)]  # Unequal weights.

  @fx.federated_computation(fx.FederatedType((np.float32, [4]), fx.CLIENTS),
                            fx.FederatedType(np.float32, fx.CLIENTS))
  def means(x, w):
    return fx.federated_mean(x), fx.federated_mean(x, w)

  xs, ws = np.stack(x), np.asarray(w)
  expected = (xs.mean(0), (ws[:, None] * xs).sum(0) / ws.sum())
  assert_all_close(run_everywhere(means, x, w), expected)


@pytest.mark.parametrize("n", CLIENT_COUNTS)
def test_aggregate_computes_a_mean_via_accumulate_merge_report(n):
  rng = np.random.default_rng(20 + n)
  x = [float(v) for v in rng.normal(size=n)]

  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
  def aggregate_mean(x):
    return fx.federated_aggregate(
        x, (0.0, 0),
        lambda acc, v: (acc[0] + v, acc[1] + 1),
        lambda a, b: (a[0] + b[0], a[1] + b[1]),
        lambda acc: acc[0] / acc[1].astype(np.float32))

  assert_all_close(run_everywhere(aggregate_mean, x), np.mean(np.float32(x)))

  @fx.federated_computation(fx.FederatedType(np.float32, fx.SERVER))
  def aggregate_broadcast(v):  # An all-equal value: every client holds v.
    return fx.federated_aggregate(
        fx.federated_broadcast(v), (0.0, 0),
        lambda acc, v: (acc[0] + v, acc[1] + 1),
        lambda a, b: (a[0] + b[0], a[1] + b[1]),
        lambda acc: (acc[0], acc[1]))

  with fx.runtime.vectorized(default_num_clients=n):
    total, count = aggregate_broadcast(1.5)
  assert (float(total), int(count)) == (1.5 * n, n)


@pytest.mark.parametrize("n", CLIENT_COUNTS)
def test_secure_sums(n):
  rng = np.random.default_rng(30 + n)
  bits = [rng.integers(0, 2**8, size=(3,)).astype(np.int32) for _ in range(n)]
  signed = [rng.integers(-2**30, 2**30, size=(3,)).astype(np.int32) for _ in range(n)]
  modulus = 2**31 - 1  # Large enough that a naive int32 sum would overflow.

  @fx.federated_computation(fx.FederatedType((np.int32, [3]), fx.CLIENTS),
                            fx.FederatedType((np.int32, [3]), fx.CLIENTS))
  def secure(a, b):
    return (fx.federated_secure_sum_bitwidth(a, 8),
            fx.federated_secure_modular_sum(b, modulus))

  expected_mod = np.mod(np.mod(np.stack(signed).astype(object), modulus).sum(0), modulus)
  expected = (np.stack(bits).sum(0), expected_mod.astype(np.int64))
  for result in run_everywhere(secure, bits, signed):
    np.testing.assert_array_equal(result[0], expected[0])
    np.testing.assert_array_equal(result[1].astype(np.int64), expected[1])


def test_secure_sum_bitwidth_rejects_values_out_of_range():
  @fx.federated_computation(fx.FederatedType(np.int32, fx.CLIENTS))
  def secure(a):
    return fx.federated_secure_sum_bitwidth(a, 4)

  with fx.runtime.sequential(), pytest.raises(ValueError, match=r"client 1 holds values \[16\] "
                                              r"outside \[0, 15\]"):
    secure([3, 16])
  with fx.runtime.vectorized(), pytest.raises(Exception, match=r"outside \[0, 15\]"):
    secure([3, 16])


@pytest.mark.parametrize("n", CLIENT_COUNTS)
def test_select(n):
  rng = np.random.default_rng(40 + n)
  table = rng.normal(size=(6, 2)).astype(np.float32)
  keys = [rng.integers(0, 6, size=(3,)).astype(np.int32) for _ in range(n)]

  @fx.federated_computation(fx.FederatedType((np.int32, [3]), fx.CLIENTS),
                            fx.FederatedType((np.float32, [6, 2]), fx.SERVER))
  def select(keys, table):
    slices = fx.federated_select(keys, 6, table, lambda t, k: t[k] * 2.0)
    return fx.sequence_sum(slices)

  expected = [2.0 * table[k].sum(0) for k in keys]
  assert_all_close(run_everywhere(select, keys, table), expected)


def ragged_sequences(rng, n, max_len=9):
  """Client datasets of different lengths (including empty ones) of struct elements."""
  return [[{"x": rng.normal(size=(2,)).astype(np.float32), "y": np.int32(rng.integers(0, 5))}
           for _ in range(rng.integers(0, max_len))] for _ in range(n)]


ELEMENT = fx.to_type({"x": (np.float32, [2]), "y": np.int32})


@pytest.mark.parametrize("n", CLIENT_COUNTS)
def test_sequence_map_reduce_sum_on_ragged_client_sequences(n):
  rng = np.random.default_rng(50 + n)
  data = ragged_sequences(rng, n)

  multiply = fx.computation(lambda a, b: a * b)

  @fx.federated_computation(fx.SequenceType(ELEMENT), np.float32)
  def local(seq, scale):
    # A nested federated computation that captures `scale` from the enclosing body, as in
    # TFF's "custom federated algorithms, part 2".
    @fx.federated_computation(ELEMENT)
    def scale_x(element):
      return multiply(element.x, scale)

    total = fx.sequence_sum(fx.sequence_map(scale_x, seq))
    # A non-commutative fold: order matters, so padding or reordering would show.
    folded = fx.sequence_reduce(seq, 0.0, lambda acc, e: acc * 0.5 + e["x"][0] + e["y"])
    return total, folded

  @fx.federated_computation(fx.FederatedType(fx.SequenceType(ELEMENT), fx.CLIENTS))
  def per_client(data):
    return fx.federated_map(local, (data, fx.federated_value(np.float32(3.0), fx.CLIENTS)))

  expected = []
  for client in data:
    total = sum((3.0 * e["x"] for e in client), np.zeros(2, np.float32))
    folded = np.float32(0.0)
    for e in client:
      folded = np.float32(folded * 0.5 + e["x"][0] + e["y"])
    expected.append((total, folded))
  assert_all_close(run_everywhere(per_client, data), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", CLIENT_COUNTS)
def test_sequence_intrinsics_apply_directly_to_client_sequences(n):
  rng = np.random.default_rng(60 + n)
  data = [[np.float32(v) for v in rng.normal(size=rng.integers(0, 6))] for _ in range(n)]

  @fx.federated_computation(fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS))
  def sums(data):
    return fx.sequence_sum(data), fx.sequence_reduce(data, 0.0, lambda a, x: a + x * x)

  expected = ([np.float32(sum(c)) for c in data], [np.float32(sum(x * x for x in c)) for c in data])
  assert_all_close(run_everywhere(sums, data), expected)


@pytest.mark.parametrize("n", CLIENT_COUNTS)
def test_broadcast_map_zip_and_value(n):
  rng = np.random.default_rng(70 + n)
  x = [rng.normal(size=(2,)).astype(np.float32) for _ in range(n)]
  scale = np.float32(1.5)

  @fx.federated_computation(fx.FederatedType((np.float32, [2]), fx.CLIENTS),
                            fx.FederatedType(np.float32, fx.SERVER))
  def scaled(x, s):
    pairs = fx.federated_zip({"x": x, "s": fx.federated_broadcast(s)})
    return (fx.federated_map(lambda p: p["x"] * p["s"], pairs),
            fx.federated_map(lambda v: v + 1.0, s),
            pairs.x)

  results = run_everywhere(scaled, x, scale)
  assert_all_close(results, ([v * scale for v in x], scale + 1.0, x))
  for result in results:
    assert isinstance(result[0], list) and len(result[0]) == n


@pytest.mark.parametrize("n", CLIENT_COUNTS)
def test_randomness_is_the_same_on_both_runtimes(n):
  @fx.federated_computation(fx.FederatedType((np.uint32, [2]), fx.SERVER),
                            fx.FederatedType(np.int32, fx.CLIENTS))
  def draws(key, client_ids):
    at_clients = fx.federated_eval(lambda k: jax.random.normal(k, (3,)), fx.CLIENTS)
    from_key = fx.federated_map(lambda k: jax.random.uniform(k, ()),
                                fx.federated_client_keys(key))
    return at_clients, from_key

  key = np.asarray(jax.random.PRNGKey(3))
  base = jax.random.fold_in(jax.random.PRNGKey(0), 0)  # Runtime seed 0, first federated_eval.
  expected = ([jax.random.normal(jax.random.fold_in(base, i), (3,)) for i in range(n)],
              [jax.random.uniform(jax.random.fold_in(key, i), ()) for i in range(n)])
  assert_all_close(run_everywhere(draws, key, list(range(n))), expected, rtol=0, atol=0)


def test_default_num_clients_for_computations_without_client_arguments():
  @fx.federated_computation
  def count():
    return fx.federated_sum(fx.federated_value(np.int32(1), fx.CLIENTS))

  for make in (fx.runtime.vectorized, fx.runtime.sequential):
    with make(default_num_clients=5):
      assert count() == 5
    with make():
      assert count() == 0
