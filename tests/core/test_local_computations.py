"""Local computations calling one another, made of any callable, and taking sequences."""

import collections
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx

F32_SEQ = fx.SequenceType(np.float32)


@pytest.fixture(params=["auto", "scan"])
def compiled(request):
  """The vectorized runtime, where a FallbackWarning (leaving the compiled path) is an error;
  its sequence loops over the real elements only ("while" on CPU), or masked over all ("scan")."""
  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    with fx.runtime.vectorized(sequence_loop=request.param) as rt:
      yield rt


# --- A local computation calling another -----------------------------------------------------


@fx.computation(np.float32, np.float32)
def scale(x, factor):
  return x * factor


@fx.computation(np.float32)
def scale_then_add_one(x):
  return scale(x, 3.0) + 1.0


def test_local_calls_local_at_top_level(runtime):
  assert str(scale_then_add_one.type_signature) == "(float32 -> float32)"
  assert scale_then_add_one(2.0) == pytest.approx(7.0)


def test_local_calls_local_under_grad_and_returns_the_callees_container(runtime):
  @fx.computation(collections.OrderedDict(w=np.float32, b=np.float32), np.float32)
  def loss(model, x):
    return (model["w"] * x + model["b"] - 1.0) ** 2

  @fx.computation(collections.OrderedDict(w=np.float32, b=np.float32), np.float32)
  def step(model, x):
    grads = jax.grad(lambda m: loss(m, x))(model)
    assert isinstance(grads, collections.OrderedDict)  # loss's parameter container.
    return collections.OrderedDict((k, model[k] - 0.1 * grads[k]) for k in model)

  @fx.computation(collections.OrderedDict(w=np.float32, b=np.float32), np.float32)
  def stepped(model, x):
    new = step(model, x)  # The callee's result comes back in its own container.
    return new["w"], new["b"]

  w, b, x = 0.5, 0.25, 2.0
  residual = w * x + b - 1.0
  expected = (w - 0.1 * 2 * residual * x, b - 0.1 * 2 * residual)
  np.testing.assert_allclose(stepped(collections.OrderedDict(w=w, b=b), x), expected, rtol=1e-6)


def test_local_defined_in_a_federated_body_calls_local(runtime):
  # The shape of FC part 2's local_eval: accumulate_evaluation calls batch_loss.
  @fx.computation(np.float32, np.float32)
  def loss(w, x):
    return (w * x - 1.0) ** 2

  @fx.federated_computation(np.float32, F32_SEQ)
  def total_loss(w, xs):
    @fx.computation((np.float32, np.float32), np.float32)
    def accumulate(w_and_total, x):
      w, total = w_and_total
      return w, total + loss(w, x)

    _, total = fx.sequence_reduce(xs, (w, 0.0), accumulate)
    return total

  assert str(total_loss.type_signature) == "(<w=float32,xs=float32*> -> float32)"
  xs = np.array([0.5, 1.0, 3.0], np.float32)
  assert total_loss(0.75, list(xs)) == pytest.approx(np.sum((0.75 * xs - 1.0) ** 2), rel=1e-6)


def test_federated_op_calling_local_computations_reduces_a_sequence(runtime):
  # The shape of FC part 2's local_train: the reduction's op is a federated computation of
  # unplaced values whose body calls a local computation (which calls another under grad).
  @fx.computation(np.float32, np.float32)
  def loss(w, x):
    return (w * x - 1.0) ** 2

  @fx.computation(np.float32, np.float32, np.float32)
  def train(w, x, lr):
    return w - lr * jax.grad(loss)(w, x)

  @fx.federated_computation(np.float32, np.float32, F32_SEQ)
  def local_train(w, lr, xs):
    @fx.federated_computation((np.float32, np.float32), np.float32)
    def step(w_with_lr, x):
      w, lr = w_with_lr
      return train(w, x, lr), lr

    trained, _ = fx.sequence_reduce(xs, (w, lr), step)
    return trained

  assert str(local_train.type_signature) == "(<w=float32,lr=float32,xs=float32*> -> float32)"
  w, lr, xs = np.float32(0.0), np.float32(0.1), np.array([0.5, 1.0, 2.0], np.float32)
  for x in xs:
    w = w - lr * 2 * (w * x - 1.0) * x
  assert local_train(0.0, 0.1, list(xs)) == pytest.approx(w, rel=1e-6)


def test_inline_call_checks_the_callees_types():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.computation(np.float32)
    def bad(x):
      return scale(x, jnp.ones(3, jnp.float32))
  message = str(info.value)
  assert "scale: argument has the wrong type." in message
  assert "at .factor: expected float32, got float32[3]" in message
  assert "return scale(x, jnp.ones(3, jnp.float32))" in message


def test_inline_call_converts_python_numbers_as_a_top_level_call_does(runtime):
  @fx.computation(np.float32)
  def times_two(x):
    return scale(x, 2)  # An int literal for a float32 parameter, as `scale(1.0, 2)` accepts.

  assert str(times_two.type_signature) == "(float32 -> float32)"
  assert times_two(1.5) == 3.0


def test_federated_computation_inside_a_local_computation_is_an_error():
  @fx.federated_computation(np.float32)
  def identity(x):
    return x

  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.computation(np.float32)
    def bad(x):
      return identity(x)
  message = str(info.value)
  assert "cannot be called inside a local computation" in message
  assert "return identity(x)" in message


def test_intrinsic_inside_a_local_computation_is_an_error():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.computation(np.float32)
    def bad(x):
      return fx.federated_value(x, fx.SERVER)
  assert "federated_value: federated intrinsics cannot be called inside a local" in str(info.value)


# --- functools.partial and other callables without a name ------------------------------------


def test_partial_in_federated_map(runtime):
  def affine(x, a, b):
    return a * x + b

  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
  def mapped(x):
    return fx.federated_map(functools.partial(affine, a=2.0, b=1.0), x)

  assert str(mapped.type_signature) == "({float32}@CLIENTS -> {float32}@CLIENTS)"
  assert mapped([1.0, 2.0]) == [3.0, 5.0]


def test_callable_object_in_federated_map_and_its_name_in_errors():
  class Doubler:
    def __call__(self, x):
      return x * 2

  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
  def doubled(x):
    return fx.federated_map(Doubler(), x)

  assert doubled([1.0, 2.0]) == [2.0, 4.0]
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
    def bad(x):
      return fx.federated_map(functools.partial(jnp.reshape, shape=(2,)), x)
  assert str(info.value).startswith("partial(reshape): the function fails on arguments")


@pytest.mark.parametrize("make", [fx.runtime.vectorized, fx.runtime.sequential])
def test_partial_in_federated_eval_at_clients(make):
  @fx.federated_computation
  def draws():
    return fx.federated_eval(functools.partial(jax.random.uniform, shape=(2,)), fx.CLIENTS)

  base = jax.random.fold_in(jax.random.PRNGKey(0), 0)  # The runtime's seed 0, first eval.
  expected = [jax.random.uniform(jax.random.fold_in(base, i), (2,)) for i in range(3)]
  with make(default_num_clients=3):
    np.testing.assert_allclose(draws(), expected, rtol=1e-6)


def test_partial_drawing_host_randomness_is_named_in_the_error():
  def noisy(key, scale):
    return jnp.asarray(np.random.rand(), jnp.float32) * scale

  with pytest.raises(fx.FederatedTypeError, match=r"`fn` \(partial\(.*noisy\)\) drew random"):
    @fx.federated_computation
    def bad():
      return fx.federated_eval(functools.partial(noisy, scale=2.0), fx.CLIENTS)


def test_partial_as_a_computation_has_a_name():
  def times(x, y):
    return x * y

  comp = fx.computation(np.float32)(functools.partial(times, y=2.0))
  assert repr(comp) == (
      "<fx.computation partial(test_partial_as_a_computation_has_a_name.<locals>.times): "
      "(float32 -> float32)>")
  assert comp(2.0) == 4.0


def test_reduce_of_empty_client_sequences(runtime):
  # The vectorized runtime's loop indexed an element of a sequence padded to length 0.
  @fx.federated_computation(fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS))
  def totals(data):
    return fx.sequence_reduce(data, 0.0, lambda acc, x: acc + x)

  assert totals([[], []]) == [0.0, 0.0]
  assert totals([[], [1.5, 2.0]]) == [0.0, 3.5]


# --- Local computations of sequences ---------------------------------------------------------


@fx.computation(fx.SequenceType(np.float32))
def get_local_temperature_average(local_temperatures):
  sum_and_count = (
      local_temperatures.reduce((0.0, 0), lambda x, y: (x[0] + y, x[1] + 1)))
  return sum_and_count[0] / jnp.asarray(sum_and_count[1], jnp.float32)


@fx.federated_computation(fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS))
def get_global_temperature_average(sensor_readings):
  return fx.federated_mean(fx.federated_map(get_local_temperature_average, sensor_readings))


def test_local_temperature_average_as_tff_prints_and_computes(runtime):
  assert str(get_local_temperature_average.type_signature) == "(float32* -> float32)"
  readings = [68.5, 70.3, 69.8]
  assert get_local_temperature_average(readings) == pytest.approx(np.mean(readings), rel=1e-6)


def test_local_temperature_average_stays_compiled(compiled):
  readings = np.arange(17, dtype=np.float32) * 0.5  # 17 elements padded to 18: padding skipped.
  assert get_local_temperature_average(list(readings)) == pytest.approx(np.mean(readings))


def test_global_temperature_average_maps_a_local_computation_over_client_sequences(runtime):
  assert str(get_global_temperature_average.type_signature) == (
      "({float32*}@CLIENTS -> float32@SERVER)")
  clients = [[68.0, 70.0], [71.0], [68.0, 72.0, 70.0]]
  assert get_global_temperature_average(clients) == pytest.approx(70.0)
  rng = np.random.default_rng(0)
  ragged = [list(rng.normal(20, 5, n).astype(np.float32)) for n in (1, 9, 4, 17, 2)]
  expected = np.mean([np.mean(c) for c in ragged])
  assert get_global_temperature_average(ragged) == pytest.approx(expected, rel=1e-5)


def test_global_temperature_average_stays_compiled(compiled):
  clients = [[68.0, 70.0], [71.0], [68.0, 72.0, 70.0], [60.0] * 9]
  expected = np.mean([np.mean(c) for c in clients])
  assert get_global_temperature_average(clients) == pytest.approx(expected)


def test_reduce_of_struct_elements_and_element_spec(runtime, capsys):
  @fx.computation(fx.SequenceType(collections.OrderedDict([("A", np.int32), ("B", np.int32)])))
  def foo(ds):
    assert isinstance(ds, fx.Sequence) and repr(ds) == "<fx.Sequence <A=int32,B=int32>*>"
    print(f"element_structure = {ds.element_spec}")
    return ds.reduce(np.int32(0), lambda total, x: total + x["A"] * x["B"])

  assert capsys.readouterr().out == (
      "element_structure = OrderedDict([('A', TensorType(np.int32)), ('B', TensorType(np.int32))])\n")
  assert str(foo.type_signature) == "(<A=int32,B=int32>* -> int32)"
  assert foo([{"A": 2, "B": 3}, {"A": 4, "B": 5}]) == 26


def test_sequence_of_integers(runtime):
  @fx.computation(fx.SequenceType(np.int32))
  def foo(x):
    return x.reduce(np.int32(0), lambda x, y: x + y)

  assert foo([1, 2, 3]) == 6
  assert foo([]) == 0


def test_sequence_inside_a_struct_parameter_over_clients(runtime):
  # A broadcast model and each client's dataset of batches: FC part 2's local_eval, local.
  @fx.computation(np.float32, fx.SequenceType((np.float32, [None])))
  def squared_error(w, batches):
    return batches.reduce(0.0, lambda total, xs: total + jnp.sum((w * xs - 1.0) ** 2))

  @fx.federated_computation(fx.FederatedType(np.float32, fx.SERVER),
                            fx.FederatedType(fx.SequenceType((np.float32, [None])), fx.CLIENTS))
  def mean_error(w, data):
    return fx.federated_mean(fx.federated_map(squared_error, (fx.federated_broadcast(w), data)))

  assert str(squared_error.type_signature) == "(<w=float32,batches=float32[?]*> -> float32)"
  rng = np.random.default_rng(1)
  data = [[rng.normal(size=3).astype(np.float32) for _ in range(n)] for n in (2, 5, 1)]
  expected = np.mean([sum(np.sum((0.5 * b - 1.0) ** 2) for b in c) for c in data])
  assert mean_error(0.5, data) == pytest.approx(expected, rel=1e-5)


def test_sequence_passed_to_a_local_computation_inside_another(runtime):
  @fx.computation(F32_SEQ)
  def total(xs):
    return xs.reduce(0.0, lambda acc, x: acc + x)

  @fx.computation(F32_SEQ)
  def mean(xs):
    count = xs.reduce(np.int32(0), lambda n, _: n + 1)
    return total(xs) / count.astype(jnp.float32)

  assert str(mean.type_signature) == "(float32* -> float32)"
  values = [1.0, 2.0, 6.0, 7.5]
  assert mean(values) == pytest.approx(np.mean(values))

  @fx.federated_computation(fx.FederatedType(F32_SEQ, fx.CLIENTS))
  def means(data):
    return fx.federated_map(mean, data)

  assert means([[1.0, 2.0], [4.0]]) == [1.5, 4.0]


def test_local_sequence_computation_on_an_unplaced_sequence_in_a_federated_body(runtime):
  @fx.federated_computation(F32_SEQ)
  def average(xs):
    return get_local_temperature_average(xs)

  assert str(average.type_signature) == "(float32* -> float32)"
  assert average([1.0, 2.0, 4.5]) == pytest.approx(2.5)


def test_map_then_return_a_sequence(runtime):
  @fx.computation(F32_SEQ)
  def doubled(xs):
    return xs.map(lambda x: x * 2.0)

  @fx.computation(fx.SequenceType((np.int32, np.float32)))
  def products(pairs):
    return pairs.map(lambda i, x: x * i.astype(jnp.float32))  # A tuple is unpacked, as tf.data.

  assert str(doubled.type_signature) == "(float32* -> float32*)"
  assert str(products.type_signature) == "(<int32,float32>* -> float32*)"
  assert doubled([1.0, 2.5, 3.0]) == [2.0, 5.0, 6.0]
  assert products([(2, 1.5), (3, 2.0)]) == [3.0, 6.0]

  @fx.federated_computation(fx.FederatedType(F32_SEQ, fx.CLIENTS))
  def doubled_on_clients(data):
    return fx.federated_map(doubled, data)

  assert str(doubled_on_clients.type_signature) == "({float32*}@CLIENTS -> {float32*}@CLIENTS)"
  assert doubled_on_clients([[1.0], [2.0, 3.0]]) == [[2.0], [4.0, 6.0]]


def test_reduce_of_an_empty_sequence(runtime):
  @fx.computation(F32_SEQ)
  def count(xs):
    return xs.reduce(np.int32(0), lambda n, _: n + 1)

  assert count([]) == 0


def test_iteration_is_exact_on_the_sequential_runtime():
  @fx.computation(F32_SEQ)
  def largest_gap(xs):
    previous, gap = None, jnp.float32(0.0)
    for x in xs:
      if previous is not None:
        gap = jnp.maximum(gap, jnp.abs(x - previous))
      previous = x
    return gap

  assert str(largest_gap.type_signature) == "(float32* -> float32)"
  values = [1.0, 4.0, 3.5, 9.0, 8.0]
  with fx.runtime.sequential():
    assert largest_gap(values) == pytest.approx(np.max(np.abs(np.diff(values))))


def test_iteration_on_the_vectorized_runtime_falls_back_with_a_warning():
  @fx.computation(F32_SEQ)
  def count_above_one(xs):  # A `break` keeps the loop in Python (tests/core/test_loops.py).
    n = jnp.int32(0)
    for x in xs:
      if x is None:
        break
      n = n + (x > 1.0).astype(jnp.int32)
    return n

  @fx.federated_computation(fx.FederatedType(F32_SEQ, fx.CLIENTS))
  def counts(data):
    return fx.federated_map(count_above_one, data)

  with fx.runtime.vectorized():
    with pytest.warns(fx.runtime.FallbackWarning, match="iterates a sequence"):
      assert counts([[0.5, 2.0, 3.0], [4.0]]) == [2, 1]
    with pytest.warns(fx.runtime.FallbackWarning, match="iterates a sequence"):
      assert count_above_one([0.5, 2.0]) == 1


def test_reduce_that_changes_the_state_type_is_an_error():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.computation(F32_SEQ)
    def bad(xs):
      return xs.reduce(0, lambda acc, x: acc + x)
  message = str(info.value)
  assert "reduce: `reduce_func` must return the state's type (the type of `initial_state`)." in message
  assert "at (value): expected int32, got float32" in message
  assert "return xs.reduce(0, lambda acc, x: acc + x)" in message


def test_unsupported_dataset_method_says_what_is_supported():
  with pytest.raises(fx.FederatedTypeError,
                     match=r"AttributeError: fx.Sequence has no 'batch'; .* supports reduce\("):
    @fx.computation(F32_SEQ)
    def bad(xs):
      return xs.batch(2)


def test_sequence_returned_by_a_local_computation_inside_another(runtime):
  @fx.computation(F32_SEQ)
  def doubled(xs):
    return xs.map(lambda x: x * 2.0)

  @fx.computation(F32_SEQ)
  def doubled_total(xs):
    return doubled(xs).reduce(0.0, lambda acc, x: acc + x)

  @fx.federated_computation(fx.FederatedType(F32_SEQ, fx.CLIENTS))
  def totals(data):
    return fx.federated_map(doubled_total, data)

  assert doubled_total([1.0, 2.5]) == 7.0
  assert totals([[1.0], [2.0, 3.0, 0.5]]) == [2.0, 11.0]


def test_local_sequence_computation_over_a_streamed_cohort(monkeypatch):
  # Cohorts over STREAM_BYTES are read by the program a chunk at a time: the local
  # computation's reduce runs inside that loop.
  import sys
  monkeypatch.setattr(sys.modules["federax.runtime.vectorized.stacking"], "STREAM_BYTES", 0)
  rng = np.random.default_rng(3)
  sizes = [5, 0, 9, 1, 13, 4, 7]
  columns = [rng.normal(20, 5, k).astype(np.float32) for k in sizes]
  datasets = [fx.data.Dataset.from_tensor_slices(c) for c in columns]

  @fx.computation(F32_SEQ)
  def sum_and_count(xs):
    return xs.reduce((0.0, np.int32(0)), lambda acc, x: (acc[0] + x, acc[1] + 1))

  @fx.federated_computation(fx.FederatedType(F32_SEQ, fx.CLIENTS))
  def totals(data):
    return fx.federated_map(sum_and_count, data)

  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    with fx.runtime.vectorized(chunk_size=3, shard=False):
      assert "streamed" in fx.runtime.explain(totals, datasets)
      result = totals(datasets)
  for (total, count), column in zip(result, columns):
    assert count == len(column)
    assert total == pytest.approx(column.sum(), rel=1e-5)
