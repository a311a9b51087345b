"""Local computations: the callables they are made of (a `functools.partial`, a callable object)."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx


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
