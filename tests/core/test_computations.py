"""Local computations: results come back in the user's containers, on both runtimes."""

import collections
import dataclasses
import random
from typing import NamedTuple

import jax
import numpy as np
import pytest

import federax as fx


@dataclasses.dataclass
class Scaled:
  value: np.ndarray
  double: np.ndarray


class Pair(NamedTuple):
  low: np.ndarray
  high: np.ndarray


@pytest.mark.parametrize("make", [fx.runtime.vectorized, fx.runtime.sequential])
def test_results_keep_dataclass_namedtuple_and_ordered_dict_containers(make):
  @fx.computation(np.float32)
  def scaled(x):
    return Scaled(value=x, double=x * 2)

  @fx.computation(np.float32)
  def pair(x):
    return Pair(x - 1, x + 1)

  @fx.computation(np.float32)
  def ordered(x):
    return collections.OrderedDict(z=x, a=x * 3)

  assert str(scaled.type_signature) == "(float32 -> <value=float32,double=float32>)"
  assert str(ordered.type_signature) == "(float32 -> <z=float32,a=float32>)"
  with make():
    result = scaled(2.0)
    assert isinstance(result, Scaled) and (result.value, result.double) == (2.0, 4.0)
    assert pair(2.0) == Pair(1.0, 3.0) and isinstance(pair(2.0), Pair)
    assert list(ordered(1.0).items()) == [("z", 1.0), ("a", 3.0)]


def test_unknown_dimensions_that_follow_the_input_stay_unknown():
  @fx.computation((np.float32, [None, 3]))
  def column_sums_and_rows(x):
    return x.sum(axis=0), x * 2

  assert str(column_sums_and_rows.type_signature) == (
      "(float32[?,3] -> <float32[3],float32[?,3]>)")


@pytest.mark.parametrize("draw", [
    lambda: random.random(),
    lambda: np.random.normal(),
])
def test_federated_eval_at_clients_refuses_host_randomness_drawn_when_traced(draw):
  @fx.computation
  def noise():
    return np.float32(draw())

  with pytest.raises(fx.FederatedTypeError, match="drew random numbers from Python's"):
    @fx.federated_computation
    def at_clients():
      return fx.federated_eval(noise, fx.CLIENTS)

  @fx.federated_computation
  def at_server():  # One value at the server: drawn once, as the user wrote it.
    return fx.federated_eval(noise, fx.SERVER)


def test_federated_eval_at_clients_accepts_functions_that_draw_nothing_on_the_host():
  @fx.computation
  def zeros():
    return np.zeros(2, np.float32)

  @fx.computation
  def noise(key):
    return jax.random.normal(key, [2])

  @fx.federated_computation
  def at_clients():
    return fx.federated_eval(zeros, fx.CLIENTS), fx.federated_eval(noise, fx.CLIENTS)

  with fx.runtime.vectorized(default_num_clients=2):
    zero, drawn = at_clients()
  assert np.all(np.asarray(zero) == 0) and not np.allclose(drawn[0], drawn[1])


def test_computations_take_the_function_then_its_types_as_tff_does():
  """TFF's `tff.tensorflow.computation(fn, T)` / `tff.federated_computation(fn, T)`."""
  import federax as fx
  double = fx.computation(lambda x: x * 2, np.float32)
  assert str(double.type_signature) == "(float32 -> float32)"
  total = fx.federated_computation(lambda v: fx.federated_sum(v),
                                   fx.FederatedType(np.float32, fx.CLIENTS))
  assert str(total.type_signature) == "({float32}@CLIENTS -> float32@SERVER)"
  assert float(total([1.0, 2.5])) == 3.5
  add = fx.computation(lambda a, b: a + b, np.int32, np.int32)
  assert int(add(2, 3)) == 5
