"""The vectorized runtime's own behaviour: caching, padding, fallback, sharding, loops."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.runtime import padding
from federax.runtime.vectorized import VectorizedExecution, plan as plans
from federax.runtime.vectorized.plan import step_cost as _step_cost


def test_second_call_with_same_shapes_does_not_retrace():
  traces = []

  @fx.computation(np.float32)
  def double(x):
    traces.append(1)  # Runs only while JAX traces.
    return 2.0 * x

  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
  def doubled_sum(x):
    return fx.federated_sum(fx.federated_map(double, x))

  runtime = fx.runtime.vectorized()
  with runtime:
    doubled_sum([1.0, 2.0, 3.0])
    count = len(traces)
    assert doubled_sum([4.0, 5.0, 6.0]) == 30.0
    assert len(traces) == count
    doubled_sum([1.0, 2.0])  # A new client count is a new program.
    assert len(traces) > count


def test_sequence_lengths_are_bucketed():
  assert [padding.bucket(n) for n in (0, 1, 8, 9, 17, 25, 100, 1000)] == [
      0, 1, 8, 9, 18, 26, 104, 1024]
  for n in range(1, 3000):
    assert n <= padding.bucket(n) <= n * 1.125 + 1
  assert [padding.bucket(n, 1) for n in (0, 1, 2, 3, 5, 9, 17, 100)] == [0, 1, 2, 4, 8, 16, 32, 128]
  assert [padding.bucket(n, 2) for n in (3, 5, 7, 9, 13)] == [3, 6, 8, 12, 16]


def test_empty_client_sequence_with_unknown_element_dims_stays_compiled():
  element = fx.TensorType(np.float32, [None])

  @fx.federated_computation(fx.FederatedType(fx.SequenceType(element), fx.CLIENTS))
  def totals(data):
    return fx.sequence_sum(data)

  with warnings.catch_warnings():
    warnings.simplefilter("error")
    result = totals([[], [np.ones(3, np.float32), np.ones(3, np.float32)]])
  np.testing.assert_array_equal(result[1], [2.0, 2.0, 2.0])
  np.testing.assert_array_equal(result[0], [0.0, 0.0, 0.0])


def test_ragged_batches_fall_back_to_the_sequential_runtime_with_a_warning():
  batch = fx.TensorType(np.float32, [None])

  @fx.federated_computation(fx.FederatedType(fx.SequenceType(batch), fx.CLIENTS))
  def mean_of_batch_means(data):
    return fx.federated_mean(fx.sequence_reduce(data, 0.0, lambda acc, b: acc + jnp.mean(b)))

  data = [[np.ones(4, np.float32), 3 * np.ones(2, np.float32)], [np.ones(4, np.float32)]]
  with pytest.warns(fx.runtime.FallbackWarning, match="(?s)mean_of_batch_means: running on the "
                    "sequential runtime because <lambda> reduces over the rows of a batch.*"
                    r"masked_batch\(4\)"):
    result = mean_of_batch_means(data)
  assert result == pytest.approx((4.0 + 1.0) / 2)


def test_string_values_pass_through_on_the_host_without_falling_back():
  @fx.federated_computation(fx.FederatedType(str, fx.SERVER))
  def to_clients(text):
    return fx.federated_broadcast(text)

  assert str(to_clients.type_signature) == "(str@SERVER -> str@CLIENTS)"
  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    assert to_clients("hello") == b"hello"


def test_datasets_are_stacked_through_their_to_stacked_hook():
  class ArrayDataset:  # The protocol fx datasets implement.
    def __init__(self, x):
      self.x = x
      self.element_spec = {"x": fx.TensorType(np.float32, [2])}

    def to_stacked(self):
      return {"x": self.x}

    def __iter__(self):
      return iter({"x": row} for row in self.x)

  @fx.federated_computation(fx.FederatedType(fx.SequenceType({"x": (np.float32, [2])}),
                                             fx.CLIENTS))
  def totals(data):
    return fx.sequence_sum(data)

  datasets = [ArrayDataset(np.arange(6, dtype=np.float32).reshape(3, 2)),
              ArrayDataset(np.ones((1, 2), np.float32))]
  for runtime in (fx.runtime.vectorized(), fx.runtime.sequential()):
    with runtime:
      result = totals(datasets)
    np.testing.assert_array_equal(result[0]["x"], [6.0, 9.0])
    np.testing.assert_array_equal(result[1]["x"], [1.0, 1.0])


def test_client_axis_is_sharded_over_devices_when_it_divides():
  assert jax.device_count() == 4, "tests/conftest.py asks for four CPU devices"
  runtime = fx.runtime.vectorized()
  client_type = fx.FederatedType(np.float32, fx.CLIENTS)
  server_type = fx.FederatedType(np.float32, fx.SERVER)
  param = fx.StructType([client_type, server_type])
  signature = fx.FunctionType(param, fx.FederatedType(np.float32, fx.SERVER))
  placed = plans.place((np.arange(8, dtype=np.float32), np.float32(1)), param,
                         runtime._plan(signature, 8, traced=False))
  assert len(placed[0].sharding.device_set) == 4
  assert placed[0].sharding.spec == jax.sharding.PartitionSpec("clients")
  assert placed[1].sharding.is_fully_replicated
  unchanged = plans.place((np.arange(6, dtype=np.float32), np.float32(1)), param,
                            runtime._plan(signature, 6, traced=False))
  assert isinstance(unchanged[0], np.ndarray)  # 6 clients do not divide over 4 devices.


def test_loop_strategies_agree_with_a_python_fold():
  @fx.federated_computation(fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS))
  def folds(data):
    return fx.sequence_reduce(data, 1.0, lambda acc, x: acc * 0.9 + x)

  data = [[1.0, 2.0, 3.0], [4.0], [], [5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0]]
  expected = []
  for client in data:
    acc = 1.0
    for x in client:
      acc = acc * 0.9 + x
    expected.append(acc)
  for sequence_loop in ("auto", "while", "scan", "unroll"):
    for client_loop in ("auto", "vmap", "map"):
      with fx.runtime.vectorized(sequence_loop=sequence_loop, client_loop=client_loop):
        np.testing.assert_allclose(folds(data), expected, rtol=1e-6,
                                   err_msg=f"{sequence_loop}, {client_loop}")


def test_bad_loop_options_are_named():
  with pytest.raises(ValueError, match="sequence_loop must be one of 'auto', 'while', 'scan', "
                     "'unroll'; got 'fast'"):
    fx.runtime.vectorized(sequence_loop="fast")
  with pytest.raises(ValueError, match="client_loop must be one of 'auto', 'vmap', 'map'; "
                     "got 'pmap'"):
    fx.runtime.vectorized(client_loop="pmap")
  with pytest.raises(ValueError, match="chunk_size must be a positive int or None"):
    fx.runtime.vectorized(chunk_size=0)


def test_step_cost_counts_matmul_and_convolution_flops_once_per_loop_body():
  kernel = jnp.ones((3, 3, 2, 4))
  conv = lambda x: jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))
  cost = _step_cost(jax.make_jaxpr(conv)(jnp.ones((5, 8, 8, 2))).jaxpr)
  assert cost.convolves
  assert cost.flops == 2 * (5 * 6 * 6 * 4) * (3 * 3 * 2)  # Each output: 18 multiply-adds.

  matmul = lambda a: a @ jnp.ones((7, 3))
  assert _step_cost(jax.make_jaxpr(matmul)(jnp.ones((4, 7))).jaxpr) == (2 * 4 * 3 * 7, False)
  looped = lambda a: jax.lax.fori_loop(0, 10, lambda i, b: b + matmul(a), jnp.zeros((4, 3)))
  assert _step_cost(jax.make_jaxpr(looped)(jnp.ones((4, 7))).jaxpr) == (2 * 4 * 3 * 7, False)


def _plan(**options):
  from federax.runtime.vectorized import plan
  return plan.decide(fx.runtime.vectorized(**options), clients=3, streams_possible=True,
                     differentiable=False)


def test_auto_client_loop_maps_heavy_or_convolving_clients_on_cpu():
  def mapped(execution, fn, payload):  # A rolled lax.map over the clients, or None (vmap).
    each_client, _ = execution._client_loop(fn, payload)
    return None if each_client is None else each_client(payload)

  execution = VectorizedExecution(_plan(), 3)
  assert mapped(execution, lambda a: a @ jnp.ones((7, 3)), jnp.ones((3, 4, 7))) is None
  big = jnp.ones((3, 256, 512))
  out = mapped(execution, lambda a: a @ jnp.ones((512, 8)), big)  # 2 MFLOP a client.
  np.testing.assert_array_equal(out, np.full((3, 256, 8), 512.0))
  kernel = jnp.ones((3, 3, 1, 2))
  images = jnp.ones((3, 1, 8, 8, 1))
  conv = lambda x: jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_array_equal(mapped(execution, conv, images), jax.vmap(conv)(images))
  forced = VectorizedExecution(_plan(client_loop="vmap"), 3)
  assert mapped(forced, conv, images) is None


def test_runtime_selection_and_default():
  default = fx.runtime.get_default()
  assert isinstance(default, fx.runtime.VectorizedRuntime)
  with fx.runtime.sequential() as rt:
    assert fx.runtime.current() is rt
  assert fx.runtime.current() is default
  with pytest.raises(TypeError, match="expected a runtime"):
    fx.runtime.set_default("fast")


def test_cached_datasets_reuse_the_stacked_cohort_and_give_the_same_results():
  from federax.simulation.dataset import Dataset
  element = fx.TensorType(np.float32, [2])

  @fx.federated_computation(fx.FederatedType(fx.SequenceType(element), fx.CLIENTS))
  def totals(data):
    return fx.sequence_sum(data)

  arrays = [np.arange(2 * n, dtype=np.float32).reshape(n, 2) for n in (3, 1, 5)]
  cached = [Dataset.from_tensor_slices(a).cache() for a in arrays]
  runtime = fx.runtime.vectorized()
  with runtime:
    first = totals(cached)
    entries = list(runtime._cohorts._entries)
    second = totals(cached)
    assert len(entries) == 1 and runtime._cohorts._entries[0][2] is entries[0][2]  # A hit.
    totals([Dataset.from_tensor_slices(a) for a in arrays])  # Writable arrays: never cached.
    assert len(runtime._cohorts._entries) == 1
  with fx.runtime.sequential():
    expected = totals(cached)
  for result in (first, second):
    for r, e, a in zip(result, expected, arrays):
      np.testing.assert_array_equal(r, e)
      np.testing.assert_array_equal(r, a.sum(0))


def test_a_broadcast_value_reaches_each_client_without_a_copy_per_client():
  dim, n = 1000, 8
  vector = fx.TensorType(np.float32, [dim])

  @fx.computation(vector, vector)
  def add(w, x):
    return w + x

  @fx.federated_computation(fx.FederatedType(vector, fx.SERVER),
                            fx.FederatedType(vector, fx.CLIENTS))
  def mean_of_sums(w, x):
    return (fx.federated_mean(fx.federated_map(add, (fx.federated_broadcast(w), x))),
            fx.federated_map(add, (fx.federated_broadcast(w), fx.federated_broadcast(w))))

  rng = np.random.default_rng(0)
  w, x = rng.normal(size=dim).astype(np.float32), rng.normal(size=(n, dim)).astype(np.float32)
  runtime = fx.runtime.vectorized(shard=False)
  plan = runtime._plan(mean_of_sums.type_signature, n, traced=False)
  jaxpr = jax.make_jaxpr(lambda p: runtime._run(mean_of_sums, plan, p)[0])((w, x))
  broadcasts = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "broadcast_in_dim"
                and e.outvars[0].aval.shape == (n, dim)]
  assert len(broadcasts) == 1  # Only the result at CLIENTS, which the caller receives per client.
  with runtime:
    mean, doubled = mean_of_sums(w, list(x))
  np.testing.assert_allclose(mean, w + x.mean(0), rtol=1e-5, atol=1e-6)
  assert len(doubled) == n and all(np.array_equal(d, 2 * w) for d in doubled)


def test_a_run_compiles_one_program_per_doubling_of_its_longest_client():
  @fx.federated_computation(fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS))
  def totals(data):
    return fx.federated_sum(fx.sequence_sum(data))

  runtime = fx.runtime.vectorized(sequence_loop="while")
  cohorts = [[3, 2], [9, 1], [5, 4], [16, 2], [4, 4], [7, 15], [2]]
  with runtime:
    for lengths in cohorts:
      data = [list(np.arange(k, dtype=np.float32)) for k in lengths]
      assert totals(data) == sum(k * (k - 1) / 2 for k in lengths)
  # Padded to the longest so far, in powers of two: 4, 16, 16, 16, 16, 16, 16. The cohort of
  # one client is another program (another client count).
  assert runtime.programs_traced == 3
  with runtime:
    text = fx.runtime.explain(totals, [list(np.ones(3, np.float32))] * 2)
  assert "padded sequence lengths: 16" in text and "grow_only: True" in text


def test_a_scan_plan_pads_each_cohort_to_its_own_bucket():
  @fx.federated_computation(fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS))
  def totals(data):
    return fx.federated_sum(fx.sequence_sum(data))

  runtime = fx.runtime.vectorized(sequence_loop="scan")
  with runtime:
    for lengths in ([3, 2], [40, 1], [3, 2]):
      totals([list(np.ones(k, np.float32)) for k in lengths])
    text = fx.runtime.explain(totals, [list(np.ones(3, np.float32))] * 2)
  assert runtime.programs_traced == 2  # 3 and 40 (bucketed to 40): the third reuses the first.
  assert "padded sequence lengths: 3" in text and "grow_only: False" in text


def test_step_reductions_counts_the_wide_reductions_of_each_argument():
  def norms(a, b):  # a: two reductions (of |a| and a**2), b: one, narrow results.
    return jnp.max(jnp.abs(a)), jnp.sqrt(jnp.sum(jnp.square(a)) + jnp.sum(jnp.square(b)))

  traced = jax.make_jaxpr(norms, return_shape=True)(jnp.ones(5000), jnp.ones(6000))
  assert plans.step_reductions(traced[0].jaxpr, traced[1]) == (2, 1)
  one_each = lambda a, b: (jnp.max(a), jnp.max(b))  # noqa: E731
  traced = jax.make_jaxpr(one_each, return_shape=True)(jnp.ones(5000), jnp.ones(6000))
  assert plans.step_reductions(traced[0].jaxpr, traced[1]) == (1, 1)
  narrow = lambda a: (jnp.max(a), jnp.min(a), a * 2)  # noqa: E731
  traced = jax.make_jaxpr(narrow, return_shape=True)(jnp.ones(100))
  assert plans.step_reductions(traced[0].jaxpr, traced[1]) == (0, 100)


def test_a_map_reducing_one_wide_argument_twice_runs_client_after_client_on_cpu():
  # Each client's row is read once by both reductions (vmapped, each would be a pass over all
  # the clients); rows reduce as the sequential runtime reduces them, bit for bit.
  row = fx.TensorType(np.float32, [5000])
  extremes = fx.computation(lambda x: (jnp.sum(jnp.square(x)), jnp.max(jnp.abs(x))), row)
  both = fx.federated_computation(lambda v: fx.federated_map(extremes, v),
                                  fx.FederatedType(row, fx.CLIENTS))
  data = [np.random.default_rng(i).normal(size=5000).astype(np.float32) for i in range(4)]
  with fx.runtime.vectorized(shard=False):
    assert "map with CPU rewrites (2 reductions of >= 4096 elements read one argument" in (
        fx.runtime.explain(both, data))
    squares, largest = np.asarray(both(data)).T  # One (squares, largest) per client.
  with fx.runtime.sequential():
    want_squares, want_largest = np.asarray(both(data)).T
  np.testing.assert_array_equal(squares, want_squares)
  np.testing.assert_array_equal(largest, want_largest)
  np.testing.assert_allclose(squares, [np.sum(np.float64(x)**2) for x in data], rtol=1e-5)
  np.testing.assert_array_equal(largest, [np.abs(x).max() for x in data])
  single = fx.computation(lambda x: jnp.sum(jnp.square(x)), row)  # One reduction: vmapped.
  one = fx.federated_computation(lambda v: fx.federated_map(single, v),
                                 fx.FederatedType(row, fx.CLIENTS))
  with fx.runtime.vectorized(shard=False):
    assert "federated_map over 4 clients: vmap" in fx.runtime.explain(one, data)
