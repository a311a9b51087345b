"""`for x in sequence:` in local computations, compiled on the vectorized runtime (core/loops.py).

Each loop runs on the vectorized runtime (where a FallbackWarning is an error unless the test
expects one), on the sequential runtime, and in NumPy, on clients of different lengths (0 too).
"""

import collections
import functools
import linecache
import traceback
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.core import loops

F32_SEQ = fx.SequenceType(np.float32)
DATA = [[1.0, -2.0, 3.5], [], [0.5], [4.0, 1.0, -1.0, 2.0, 0.25]]
Stats = collections.namedtuple("Stats", ["total", "squares"])


def on_clients(comp):
  @fx.federated_computation(fx.FederatedType(F32_SEQ, fx.CLIENTS))
  def mapped(data):
    return fx.federated_map(comp, data)
  return mapped


def compiled(comp, data=DATA, sequence_loop="auto"):
  """`comp` mapped over the clients on the vectorized runtime, which must not fall back."""
  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    with fx.runtime.vectorized(sequence_loop=sequence_loop):
      return on_clients(comp)(data)


def sequential(comp, data=DATA):
  with fx.runtime.sequential():
    return on_clients(comp)(data)


def falls_back(comp, why: str, data=DATA):
  """The vectorized runtime's result, checking it warns that it fell back, and why."""
  with fx.runtime.vectorized():
    with pytest.warns(fx.runtime.FallbackWarning, match="iterates a sequence") as record:
      result = on_clients(comp)(data)
  assert f"(the loop is not compiled: {why}" in str(record[0].message), str(record[0].message)
  return result


def assert_close(actual, expected):
  for a, e in zip(actual, expected, strict=True):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(e, np.float64), rtol=1e-6)


# --- Loops that compile ---------------------------------------------------------------------------


@fx.computation(F32_SEQ)
def moments(xs):
  n, stats = 0, Stats(0.0, jnp.zeros([2]))  # Python numbers: int32 and float32 arrays.
  largest = jnp.float32(-np.inf)
  for x in xs:
    n += 1
    square = x * x
    stats = Stats(stats.total + x, stats.squares + jnp.stack([square, square * n]))
    largest = jnp.maximum(largest, x)
  return n, stats.total, stats.squares, largest


def moments_in_numpy(xs):
  xs = np.asarray(xs, np.float32)
  squares = [np.sum(xs * xs), np.sum(xs * xs * np.arange(1, len(xs) + 1))]
  return len(xs), np.sum(xs), squares, np.max(xs, initial=-np.inf)


@pytest.mark.parametrize("sequence_loop", ["auto", "scan"])
def test_a_loop_compiles_and_matches_the_sequential_runtime_and_numpy(sequence_loop):
  got, reference = compiled(moments, sequence_loop=sequence_loop), sequential(moments)
  for client, vectorized, python in zip(DATA, got, reference):
    assert_close(vectorized, moments_in_numpy(client))
    assert_close(python, moments_in_numpy(client))
    assert vectorized[0].dtype == np.int32  # `n = 0` became an int32 array, as in tf.function.


def scaled_sum(dataset, scale):
  """A helper with the loop, called from a computation (the loop is not in the decorated
  function), iterating `iter(dataset)` as TFF tutorials do."""
  total = jnp.zeros([])
  for batch in iter(dataset):
    total = total + _times(batch, scale)
  return total


def _times(x, scale):
  return x * scale * OFFSET


OFFSET = 1.0


@fx.computation(F32_SEQ)
def helper_loops(xs):
  weights = {"a": jnp.float32(0.0), "b": jnp.ones([3])}
  for x in xs:  # Loops nested in a loop, the inner one over a Python range.
    for k in range(3):
      weights = {"a": weights["a"] + x, "b": weights["b"].at[k].add(x * k)}
  return scaled_sum(xs, 2.0), weights["a"], weights["b"]


def test_loops_in_a_helper_function_and_nested_loops_compile():
  global OFFSET
  got = compiled(helper_loops)
  OFFSET = 10.0  # The converted helper reads the module's globals, as the original does.
  try:
    offset_ten = compiled(helper_loops)
  finally:
    OFFSET = 1.0
  for client, vectorized, ten in zip(DATA, got, offset_ten):
    xs = np.asarray(client, np.float32)
    expected = (2 * np.sum(xs), 3 * np.sum(xs), 1 + np.sum(xs) * np.arange(3))
    assert_close(vectorized, expected)
    assert_close(ten, (20 * np.sum(xs),) + expected[1:])
  assert_close(sequential(helper_loops)[3], got[3])


class Trainer:
  def __init__(self, rate):
    self.rate = rate

  def run(self, dataset):
    total = 0.0
    for x in dataset.map(lambda v: v * 2.0):
      total = total + self.rate * x
    return total


def logged(fn):
  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    return fn(*args, **kwargs)
  return wrapper


def make_helper():
  factor = 1.0

  @logged
  def helper(dataset):
    acc = 0.0
    for x in dataset:
      acc = acc + factor * x
    return acc

  def set_factor(value):
    nonlocal factor
    factor = value
  return helper, set_factor


def test_methods_decorated_helpers_and_closures_compile():
  helper, set_factor = make_helper()

  @fx.computation(F32_SEQ)
  def both(xs):
    return Trainer(0.5).run(xs), helper(xs)

  assert_close(compiled(both)[0], (np.sum(DATA[0]), np.sum(DATA[0])))
  set_factor(3.0)  # The converted helper shares the original's closure cell.
  for client, (by_method, by_helper) in zip(DATA, compiled(both)):
    assert_close((by_method, by_helper), (np.sum(client), 3 * np.sum(client)))


def test_a_standalone_call_compiles_and_a_converted_function_keeps_python_semantics():
  @fx.computation(F32_SEQ)
  def count_above_one(xs):
    n = jnp.int32(0)
    for x in xs:
      n = n + (x > 1.0).astype(jnp.int32)
    return n

  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    with fx.runtime.vectorized():
      assert count_above_one([0.5, 2.0, 3.0]) == 2
      assert count_above_one([]) == 0
  # On anything but a padded sequence the converted function runs the loop as written.
  converted = loops.convert(scaled_sum)
  assert converted is not None and converted.__name__ == "scaled_sum"
  assert converted([1.0, 2.0], 3.0) == scaled_sum([1.0, 2.0], 3.0) == 9.0
  assert loops.convert(np.sum) is None and loops.convert(lambda x: x) is None


def test_an_error_in_a_compiled_loop_points_at_the_users_line():
  fail = [False]

  @fx.computation(F32_SEQ)
  def checked(xs):
    total = jnp.float32(0.0)
    for x in xs:
      total = total + x
      if fail[0]:
        raise ValueError("a bad batch")  # The line the traceback must show.
    return total

  fail[0] = True
  with fx.runtime.vectorized(), pytest.raises(ValueError, match="a bad batch") as info:
    checked([1.0])
  frames = traceback.extract_tb(info.value.__traceback__)
  assert any(f.filename == __file__ and f.line == 'raise ValueError("a bad batch")  # The line '
             "the traceback must show." for f in frames), frames


# --- Loops that do not compile: the call runs in Python, as before --------------------------------


@fx.computation(F32_SEQ)
def first_two(xs):
  n, total = 0, jnp.float32(0.0)
  for x in xs:
    if n == 2:
      break
    n, total = n + 1, total + x
  return total


@fx.computation(F32_SEQ)
def largest_gap(xs):
  previous, gap = None, jnp.float32(0.0)
  for x in xs:
    if previous is not None:
      gap = jnp.maximum(gap, jnp.abs(x - previous))
    previous = x
  return gap


@fx.computation(F32_SEQ)
def last_times_count(xs):
  n = 0
  last = jnp.float32(0.0)
  for x in xs:
    n += 1
    latest = x
  return latest * n if n else last


@fx.computation(F32_SEQ)
def mean_or_zero(xs):
  n, total = 0, jnp.float32(0.0)
  for x in xs:
    n += 1
    total = total + x
  if n == 0:  # A Python `if` on the count: a Python int in Python, an array compiled.
    return total
  return total / n


@fx.computation(F32_SEQ)
def int_then_float(xs):
  total = 0
  for x in xs:
    total = total + x
  return jnp.asarray(total, jnp.float32)


@fx.computation(F32_SEQ)
def last_element(xs):
  x = jnp.float32(-1.0)
  for x in xs:
    pass
  return x


@pytest.mark.parametrize("comp,why,numpy_fn", [
    (first_two, "it has a `break`", lambda xs: sum(xs[:2])),
    (largest_gap, "the loop changes the structure of `previous`",
     lambda xs: max(np.abs(np.diff(xs)), default=0.0)),
    (last_times_count, "`latest` is first bound in the loop and read after it",
     lambda xs: xs[-1] * len(xs) if xs else 0.0),
    (mean_or_zero, "with the loop at ", lambda xs: np.mean(xs) if xs else 0.0),
    (int_then_float, "the loop changes `total` from int32[] to float32[]", sum),
    (last_element, "the loop variable `x` is read after the loop",
     lambda xs: xs[-1] if xs else -1.0),
], ids=["break", "non-array state", "read after", "python if after", "type change",
        "loop variable after"])
def test_a_loop_that_cannot_compile_falls_back_with_the_reason(comp, why, numpy_fn):
  got = falls_back(comp, why)
  assert_close(got, [numpy_fn(xs) for xs in DATA])
  assert_close(sequential(comp), got)


# --- The TFF tutorials' client update -------------------------------------------------------------

BATCH = fx.to_type(collections.OrderedDict(x=(np.float32, [2, 3]), y=(np.float32, [2])))


def client_update(dataset, initial_weights, client_optimizer):
  """The loop of TFF's "Building your own FL algorithm", in a helper: a nested loss function,
  `jax.grad`, an optimizer whose state the loop carries."""
  weights = initial_weights
  optimizer_state = client_optimizer.initialize(weights)
  num_examples = 0.0
  for batch in dataset:
    x, y = batch["x"], batch["y"]

    def batch_loss(w):
      return jnp.mean((x @ w["kernel"] + w["bias"] - y) ** 2)

    grads = jax.grad(batch_loss)(weights)
    num_examples += jnp.asarray(jnp.shape(y)[0], jnp.float32)
    optimizer_state, weights = client_optimizer.next(optimizer_state, weights, grads)
  return weights, num_examples


@fx.computation(fx.SequenceType(BATCH), {"kernel": (np.float32, [3]), "bias": np.float32})
def train(dataset, weights):
  return client_update(dataset, weights, fx.learning.optimizers.build_sgdm(0.1, momentum=0.9))


def test_the_tutorials_client_update_compiles():
  rng = np.random.default_rng(0)
  data = [[collections.OrderedDict(x=rng.normal(size=(2, 3)).astype(np.float32),
                                   y=rng.normal(size=2).astype(np.float32)) for _ in range(n)]
          for n in (3, 0, 1)]
  weights = {"kernel": np.float32([0.5, -1.0, 2.0]), "bias": np.float32(0.25)}

  @fx.federated_computation(fx.FederatedType(fx.SequenceType(BATCH), fx.CLIENTS),
                            fx.FederatedType(train.type_signature.parameter[1], fx.SERVER))
  def round_(data, weights):
    return fx.federated_map(train, (data, fx.federated_broadcast(weights)))

  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    with fx.runtime.vectorized():
      got = round_(data, weights)
  with fx.runtime.sequential():
    expected = round_(data, weights)
  for (w, n), (w_ref, n_ref), client in zip(got, expected, data):
    assert n == n_ref == 2 * len(client)
    np.testing.assert_allclose(w["kernel"], w_ref["kernel"], rtol=1e-5)
    np.testing.assert_allclose(w["bias"], w_ref["bias"], rtol=1e-5)
  np.testing.assert_array_equal(got[1][0]["kernel"], weights["kernel"])  # No batch: unchanged.


def test_an_unconvertible_loop_after_a_compiled_one_names_its_own_reason():
  @fx.computation(F32_SEQ)
  def two_loops(xs):
    total = jnp.float32(0.0)
    for x in xs:
      total = total + x
    for x in xs:
      if x is None:
        break
      total = total - 0.5 * x
    return total

  got = falls_back(two_loops, "it has a `break`")
  assert_close(got, [0.5 * np.sum(xs) for xs in DATA])


def test_two_loops_with_the_same_target_both_compile():
  @fx.computation(F32_SEQ)
  def mean_and_variance(xs):
    n, total = 0, jnp.float32(0.0)
    for x in xs:
      n, total = n + 1, total + x
    mean = total / jnp.maximum(n, 1)
    squares = jnp.float32(0.0)
    for x in xs:
      squares = squares + (x - mean) ** 2
    return mean, squares / jnp.maximum(n, 1)

  for client, got in zip(DATA, compiled(mean_and_variance)):
    assert_close(got, (np.mean(client) if client else 0.0, np.var(client) if client else 0.0))


def test_a_function_from_an_ipython_cell_compiles():
  # IPython keeps each cell's source in linecache under a name like this one.
  filename, source = "<ipython-input-7-loops>", (
      "def cell_sum(xs):\n"
      "  total = 0.0\n"
      "  for x in xs:\n"
      "    total = total + x\n"
      "  return total\n")
  linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
  namespace = {}
  exec(compile(source, filename, "exec"), namespace)
  comp = fx.computation(F32_SEQ)(namespace["cell_sum"])
  assert_close(compiled(comp), [np.sum(xs) for xs in DATA])
