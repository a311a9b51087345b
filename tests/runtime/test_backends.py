"""`fx.backends`: TFF's setters of the default execution context, mapped to federax runtimes."""

import numpy as np
import pytest

import federax as fx


@fx.computation
def one():
  return np.float32(1.0)


@fx.federated_computation
def count_clients():
  """No argument at CLIENTS: the number of clients is the runtime's `default_num_clients`."""
  return fx.federated_sum(fx.federated_eval(one, fx.CLIENTS))


@fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
def count_given_clients(values):
  return fx.federated_sum(fx.federated_eval(one, fx.CLIENTS))


@pytest.fixture
def restore_default():
  before = fx.runtime.get_default()
  yield
  fx.runtime.set_default(before)


@pytest.mark.parametrize("set_context", [
    fx.backends.native.set_sync_local_cpp_execution_context,
    fx.backends.test.set_sync_test_cpp_execution_context,
])
def test_tff_setters_make_a_vectorized_default_with_default_num_clients(set_context,
                                                                        restore_default):
  set_context(default_num_clients=3)
  runtime = fx.runtime.get_default()
  assert isinstance(runtime, fx.runtime.VectorizedRuntime)
  assert runtime.options.default_num_clients == 3
  assert count_clients() == 3.0
  # A CLIENTS-placed argument decides the number of clients, as in TFF.
  assert count_given_clients([1.0, 2.0]) == 2.0
  set_context()  # TFF's default: 0 clients when none can be inferred.
  assert count_clients() == 0.0


def test_create_returns_a_runtime_to_use_in_a_with_block():
  with fx.backends.native.create_sync_local_cpp_execution_context(default_num_clients=4):
    assert count_clients() == 4.0
  with fx.backends.test.create_sync_test_cpp_execution_context(default_num_clients=2):
    assert count_clients() == 2.0


@pytest.mark.parametrize("make", [fx.runtime.vectorized, fx.runtime.sequential])
def test_both_runtimes_honour_default_num_clients(make):
  @fx.federated_computation
  def broadcast_values():
    return fx.federated_value(np.float32(2.0), fx.CLIENTS)

  with make(default_num_clients=5):
    assert count_clients() == 5.0
    assert count_given_clients([1.0]) == 1.0
    assert broadcast_values() == 2.0  # An all-equal value comes back as its one member.


@pytest.mark.parametrize("bad", [-1, 1.5, "3"])
def test_default_num_clients_must_be_a_count(bad):
  with pytest.raises((TypeError, ValueError)) as info:
    fx.backends.native.set_sync_local_cpp_execution_context(default_num_clients=bad)
  assert str(info.value).startswith(
      "set_sync_local_cpp_execution_context: default_num_clients must be an int >= 0.\n"
      f"  expected: an int >= 0\n  actual:   {bad!r}")


@pytest.mark.parametrize("make", [fx.runtime.vectorized, fx.runtime.sequential])
def test_every_runtime_refuses_a_negative_client_count(make):
  # -1 used to be kept, and a no-argument computation then ran with -1 clients.
  with pytest.raises(ValueError, match=r"fx.runtime: default_num_clients must be an int >= 0"):
    make(default_num_clients=-1)
