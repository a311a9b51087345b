"""The Execution protocol: every runtime implements every hook, explicitly."""

import numpy as np
import pytest

import federax as fx
from federax.core.computations import TypingExecution
from federax.core.execution import Execution
from federax.runtime.sequential import SequentialExecution
from federax.runtime.vectorized import VectorizedExecution
from federax.runtime.vectorized.host_execution import HostExecution

HOOKS = ("broadcast", "call_federated", "call_local", "client_keys", "constant", "federated_aggregate",
         "federated_eval", "federated_max", "federated_mean", "federated_min",
         "federated_secure_modular_sum", "federated_secure_sum_bitwidth", "federated_select",
         "federated_stack", "federated_sum", "map_clients", "project", "sequence_map",
         "sequence_reduce", "sequence_sum", "zip_clients")


def test_the_protocol_lists_one_hook_per_intrinsic_payload():
  assert Execution.HOOKS == HOOKS


@pytest.mark.parametrize("execution", [TypingExecution, SequentialExecution, VectorizedExecution])
def test_every_execution_implements_every_hook_itself(execution):
  assert issubclass(execution, Execution)
  for hook in HOOKS:
    assert getattr(execution, hook) is not getattr(Execution, hook), hook


def test_a_missing_hook_fails_when_the_class_is_defined():
  with pytest.raises(TypeError) as raised:
    class Partial(TypingExecution.__base__):  # noqa: F841
      def constant(self, obj, value_type):
        return None
  message = str(raised.value)
  assert message.startswith("test_a_missing_hook_fails_when_the_class_is_defined.<locals>.Partial "
                            "does not implement the Execution protocol: missing hooks ['broadcast'")
  assert "The hooks are: broadcast, call_federated, call_local," in message


def test_the_host_execution_is_the_sequential_one_with_its_string_free_parts_compiled():
  assert issubclass(HostExecution, SequentialExecution)
  overridden = {h for h in HOOKS if getattr(HostExecution, h) is not getattr(SequentialExecution, h)}
  assert overridden == {"call_local", "call_federated", "map_clients", "federated_sum",
                        "federated_mean", "federated_min", "federated_max", "federated_stack"}


def test_a_misspelled_hook_fails_when_the_class_is_defined():
  with pytest.raises(TypeError, match=r"public methods that are not hooks \['federated_summ'\] "
                                      r"\(misspelled\? make helpers private\)"):
    class Misspelled(TypingExecution):  # noqa: F841
      def federated_summ(self, payload, ts):
        return None


def test_runtimes_are_entered_through_the_context_api():
  from federax.core import context
  outer, inner = fx.runtime.sequential(), fx.runtime.vectorized()
  with outer:
    assert context.current_runtime() is outer
    with inner:
      assert context.current_runtime() is inner
      with outer:  # Re-entrant.
        assert context.current_runtime() is outer
      assert context.current_runtime() is inner
    assert context.current_runtime() is outer
  assert context.current_runtime() is fx.runtime.get_default()


def test_both_runtimes_derive_the_same_client_keys():
  import jax
  import numpy as np

  @fx.federated_computation
  def draws():
    return fx.federated_eval(lambda key: jax.random.uniform(key, (2,)), fx.CLIENTS)

  with fx.runtime.vectorized(default_num_clients=3):
    fast = draws()
  with fx.runtime.sequential(default_num_clients=3):
    reference = draws()
  np.testing.assert_array_equal(np.stack(fast), np.stack(reference))
  assert not np.array_equal(fast[0], fast[1])


@pytest.mark.parametrize("op", ["federated_min", "federated_max"])
def test_min_max_of_no_clients_names_default_num_clients(runtime, op):
  # A no-argument computation has no clients unless default_num_clients is set (as in TFF);
  # the minimum of nothing used to fail inside NumPy ("zero-size array to reduction operation").
  @fx.federated_computation
  def extreme_of_nothing():
    return getattr(fx, op)(fx.federated_value(np.float32(1.0), fx.CLIENTS))

  with pytest.raises(ValueError, match=rf"(?s){op}: there are no clients.*default_num_clients"):
    extreme_of_nothing()
