"""Misuse is reported when a computation is defined: operator, expected, actual, user's line."""

import os
import re

import numpy as np
import pytest

import federax as fx
from federax.core import errors
from federax.core.errors import format_message

THIS_FILE = __file__
F32_CLIENTS = fx.FederatedType(np.float32, fx.CLIENTS)
F32_SERVER = fx.FederatedType(np.float32, fx.SERVER)


def _assert_points_here(error: fx.FederatedTypeError, code: str):
  """The message names this test file, and the offending line of user code."""
  message = str(error)
  assert f"{THIS_FILE}:" in message
  assert code in message
  assert error.location.startswith(THIS_FILE)


def _whole_message(*lines: str, code: str) -> str:
  """A regex for the whole message: `lines` verbatim, then `at <this file>:<line>: <code>`."""
  return ("\n".join(re.escape(line) for line in lines)
          + rf"\n  at {re.escape(THIS_FILE)}:\d+: {re.escape(code)}")


def test_format_message_writes_every_part_of_the_template():
  assert format_message(
      "federated_sum", "argument `value` must be placed at CLIENTS.", expected="{T}@CLIENTS",
      actual="float32@SERVER", details=["one more line"], hint="broadcast it first",
      location="train.py:12: return fx.federated_sum(x)") == (
          "federated_sum: argument `value` must be placed at CLIENTS.\n"
          "  expected: {T}@CLIENTS\n"
          "  actual:   float32@SERVER\n"
          "  one more line\n"
          "  hint: broadcast it first\n"
          "  at train.py:12: return fx.federated_sum(x)")


def test_format_message_prints_no_line_for_an_unknown_expected_or_actual():
  assert format_message("op", "it failed.", actual="x") == "op: it failed.\n  actual:   x"
  assert format_message("op", "it failed.", expected="y") == "op: it failed.\n  expected: y"
  assert format_message("op", "it failed.") == "op: it failed."


def test_format_message_lists_the_differing_paths_and_cuts_them_short():
  differences = [(f"['w{i}']", "float32[2]", "nothing") for i in range(10)]
  assert format_message("op", "the structures differ.", expected="unused",
                        differences=differences) == "\n".join(
      ["op: the structures differ.",
       *(f"  at ['w{i}']: expected float32[2], got nothing" for i in range(8)),
       "  ... and 2 more differences"])


def test_an_error_with_no_expected_value_prints_no_expected_line():
  # It used to print `expected: None`.
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(F32_SERVER)
    def bad(x):
      return fx.federated_value(1.0, "clients")
  assert re.fullmatch(_whole_message(
      "federated_value: `placement` must be fx.CLIENTS or fx.SERVER.",
      "  actual:   'clients'", code='return fx.federated_value(1.0, "clients")'),
      str(info.value))


def test_the_errors_module_finds_the_library_without_importing_it():
  # The core imports nothing above it; the library's directory comes from errors.py's own path.
  assert "federax" not in vars(errors)
  assert errors._PACKAGE_DIR == os.path.dirname(os.path.abspath(fx.__file__))


def test_ragged_values_raise_one_error_class_under_both_names():
  from federax.runtime import padding
  from federax.data import _elements
  assert padding.RaggedError is errors.RaggedError
  assert fx.simulation.RaggedElementsError is errors.RaggedError
  assert _elements.RaggedElementsError is errors.RaggedError
  assert issubclass(errors.RaggedError, ValueError)
  dataset = fx.simulation.Dataset.from_tensor_slices({"x": np.arange(5.0)}).batch(2)
  with pytest.raises(padding.RaggedError) as info:  # What the vectorized runtime catches.
    dataset.to_stacked()
  assert isinstance(info.value, fx.simulation.RaggedElementsError)


def test_sum_of_server_value():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(F32_SERVER)
    def bad(x):
      return fx.federated_sum(x)
  message = str(info.value)
  assert message.startswith("federated_sum: argument `value` must be placed at CLIENTS.")
  assert "expected: {T}@CLIENTS" in message and "actual:   float32@SERVER" in message
  _assert_points_here(info.value, "return fx.federated_sum(x)")


def test_sum_of_strings_is_not_numeric():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(fx.FederatedType(str, fx.CLIENTS))
    def bad(x):
      return fx.federated_sum(x)
  assert "federated_sum: the value must hold only numeric tensors." in str(info.value)
  assert "actual:   {str}@CLIENTS" in str(info.value)
  _assert_points_here(info.value, "return fx.federated_sum(x)")


def test_map_with_function_that_does_not_accept_the_member_type():
  @fx.computation(np.int32)
  def double(x):
    return x * 2

  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(F32_CLIENTS)
    def bad(x):
      return fx.federated_map(double, x)
  message = str(info.value)
  assert "federated_map: `fn` (test_map_with_function_that_does_not_accept_the_member_type." in message
  assert "expected int32, got float32" in message
  _assert_points_here(info.value, "return fx.federated_map(double, x)")


def test_zip_of_mismatched_placements():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(F32_CLIENTS, F32_SERVER)
    def bad(a, b):
      return fx.federated_zip((a, b))
  # It used to say `expected: {T}@CLIENTS and {T}@CLIENTS`.
  assert re.fullmatch(_whole_message(
      "federated_zip: all elements must be placed at the same placement.",
      "  expected: every element at one placement (all at CLIENTS, or all at SERVER)",
      "  actual:   element 0 at CLIENTS, element 1 at SERVER "
      "(<{float32}@CLIENTS,float32@SERVER>)",
      "  hint: broadcast server values to the clients (fx.federated_broadcast) before zipping",
      code="return fx.federated_zip((a, b))"), str(info.value))
  _assert_points_here(info.value, "return fx.federated_zip((a, b))")


def test_broadcast_of_client_value():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(F32_CLIENTS)
    def bad(x):
      return fx.federated_broadcast(x)
  assert "federated_broadcast: argument `value` must be placed at SERVER." in str(info.value)
  assert "actual:   {float32}@CLIENTS" in str(info.value)
  _assert_points_here(info.value, "return fx.federated_broadcast(x)")


def test_mean_of_integers():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(fx.FederatedType(np.int32, fx.CLIENTS))
    def bad(x):
      return fx.federated_mean(x)
  assert "federated_mean: the value must hold only floating-point tensors." in str(info.value)
  _assert_points_here(info.value, "return fx.federated_mean(x)")


def test_mean_weight_at_server():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(F32_CLIENTS, F32_SERVER)
    def bad(x, w):
      return fx.federated_mean(x, w)
  assert "federated_mean: argument `weight` must be placed at CLIENTS." in str(info.value)
  _assert_points_here(info.value, "return fx.federated_mean(x, w)")


def test_sequence_reduce_op_changes_the_accumulator_type():
  @fx.computation(np.float32, np.float32)
  def to_int(acc, x):
    return (acc + x).astype(np.int32)

  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(fx.SequenceType(np.float32))
    def bad(values):
      return fx.sequence_reduce(values, 0.0, to_int)
  message = str(info.value)
  assert "sequence_reduce: `op` must return the accumulator's type" in message
  assert "expected float32, got int32" in message
  _assert_points_here(info.value, "return fx.sequence_reduce(values, 0.0, to_int)")


def test_aggregate_merge_with_wrong_structure():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(F32_CLIENTS)
    def bad(x):
      return fx.federated_aggregate(x, 0.0, lambda a, v: a + v, lambda a, b: (a, b), lambda a: a)
  assert "federated_aggregate: `merge` must return the accumulator's type" in str(info.value)
  _assert_points_here(info.value, "return fx.federated_aggregate(")


def test_secure_sum_of_floats():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(F32_CLIENTS)
    def bad(x):
      return fx.federated_secure_sum_bitwidth(x, 8)
  assert "federated_secure_sum_bitwidth: the value must hold only integer tensors." in str(info.value)
  _assert_points_here(info.value, "fx.federated_secure_sum_bitwidth(x, 8)")


def test_secure_modular_sum_with_bad_modulus():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(fx.FederatedType(np.int32, fx.CLIENTS))
    def bad(x):
      return fx.federated_secure_modular_sum(x, 1)
  assert "`modulus` must lie in [2, 2147483647]." in str(info.value)
  _assert_points_here(info.value, "fx.federated_secure_modular_sum(x, 1)")


def test_select_with_float_keys():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(fx.FederatedType((np.float32, [2]), fx.CLIENTS), F32_SERVER)
    def bad(keys, table):
      return fx.federated_select(keys, 3, table, lambda t, k: t)
  assert "federated_select: `client_keys` must be a vector of int32 keys per client." in str(info.value)
  assert "expected: {int32[k]}@CLIENTS" in str(info.value)


def test_local_computation_called_with_a_federated_value():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(F32_CLIENTS)
    def bad(x):
      return add_one(x)
  message = str(info.value)
  assert "add_one: a local computation was called with a federated value." in message
  assert "hint: apply it to each member with fx.federated_map(fn, value)" in message
  _assert_points_here(info.value, "return add_one(x)")


@fx.computation(np.float32)
def add_one(x):
  return x + 1


def test_arithmetic_on_a_federated_value():
  with pytest.raises(TypeError, match="federated values have no arithmetic"):
    @fx.federated_computation(F32_SERVER)
    def bad(x):
      return x + 1


def test_calling_with_a_value_of_the_wrong_type():
  @fx.federated_computation(fx.FederatedType((np.int32, [2]), fx.CLIENTS))
  def total(x):
    return fx.federated_sum(x)

  with pytest.raises(fx.FederatedTypeError) as info:
    total([[1, 2], [1.5, 2.0]])
  message = str(info.value)
  assert "total: argument[client 1]: the dtype does not convert to int32." in message
  assert "floats do not convert to integers" in message
  with pytest.raises(fx.FederatedTypeError, match=r"argument\[client 0\]: the shape does not fit"):
    total([[1, 2, 3]])
  with pytest.raises(fx.FederatedTypeError, match="a value at CLIENTS is a list with one entry per"):
    total(np.int32(3))


def test_client_counts_must_agree():
  @fx.federated_computation(F32_CLIENTS, F32_CLIENTS)
  def pair(a, b):
    return fx.federated_sum(a)

  with pytest.raises(fx.FederatedTypeError, match="disagree on the number of clients: "
                     "arguments.a has 2, arguments.b has 3"):
    pair([1.0, 2.0], [1.0, 2.0, 3.0])


def test_nested_computation_type_mismatch_names_the_callee():
  @fx.federated_computation(fx.FederatedType(np.int32, fx.SERVER))
  def inner(x):
    return x

  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(F32_SERVER)
    def outer(x):
      return inner(x)
  assert "inner: argument has the wrong type." in str(info.value)
  assert "expected int32, got float32" in str(info.value)


def test_traceback_hides_library_frames():
  with pytest.raises(fx.FederatedTypeError) as info:
    @fx.federated_computation(F32_SERVER)
    def bad(x):
      return fx.federated_sum(x)
  innermost = info.traceback[-1]
  assert str(innermost.path) == THIS_FILE
  assert "return fx.federated_sum(x)" in str(innermost.statement)
  assert not any("federax/core/intrinsics" in str(e.path) for e in info.traceback)


def test_polymorphic_type_signature_explains():
  @fx.computation
  def identity(x):
    return x
  with pytest.raises(AttributeError, match="is polymorphic"):
    _ = identity.type_signature


def test_errors_pickle_as_raised():
  # A Ray worker's error reaches the driver pickled: pickle's default re-called `__init__` with
  # the message alone (a FederatedTypeError could not be rebuilt, a RowMaskNotHonoured doubled
  # its reason).
  import pickle
  from federax.core.rows import RowMaskNotHonoured
  from federax.core.sequences import SequenceIterationError

  error = SequenceIterationError("Sequence", "iterating it is not exact.", actual="int32*",
                                 hint="fold it with reduce")
  copy = pickle.loads(pickle.dumps(error))
  assert type(copy) is SequenceIterationError and str(copy) == str(error)
  assert (copy.operator, copy.location) == (error.operator, error.location)
  masked = pickle.loads(pickle.dumps(RowMaskNotHonoured("add_batch", fix="mask it")))
  assert str(masked) == "add_batch reduces over the rows of a batch and does not mask padded rows"
  assert (masked.consumer, masked.fix) == ("add_batch", "mask it")
