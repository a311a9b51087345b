"""No error message prints `None` for "unknown": a scan over the errors of many bad inputs.

`format_message` drops an `expected:` or `actual:` line given None; these inputs exercise the
callers, where None can also mean "no argument" or be a value the user gave.
"""

import functools
import re

import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx

C, S = fx.CLIENTS, fx.SERVER
F32_CLIENTS = fx.FederatedType(np.float32, C)
F32_SERVER = fx.FederatedType(np.float32, S)
F32_SEQ = fx.SequenceType(np.float32)
KEYS = fx.FederatedType((np.int32, [2]), C)


@fx.federated_computation
def no_arg_federated():
  return fx.federated_value(1.0, S)


@fx.federated_computation(np.float32, np.float32)
def two_args_federated(a, b):
  return a


@fx.computation
def no_arg_local():
  return 1.0


@fx.computation(np.float32)
def typed_local(x):
  return x


def _defined(*types):
  """A thunk that defines a federated computation of `types` with the given body."""
  return lambda body: lambda: fx.federated_computation(*types)(body)


BAD_INPUTS = {
    "map a no-argument local": _defined(F32_CLIENTS)(lambda x: fx.federated_map(no_arg_local, x)),
    "map a no-argument federated": _defined(F32_CLIENTS)(
        lambda x: fx.federated_map(no_arg_federated, x)),
    "eval a two-argument federated": _defined()(lambda: fx.federated_eval(two_args_federated, S)),
    "eval a typed local": _defined()(lambda: fx.federated_eval(typed_local, S)),
    "reduce with a no-argument op": _defined(F32_SEQ)(
        lambda x: fx.sequence_reduce(x, 0.0, no_arg_local)),
    "sequence_map with a no-argument fn": _defined(F32_SEQ)(
        lambda x: fx.sequence_map(no_arg_local, x)),
    "aggregate with no-argument functions": _defined(F32_CLIENTS)(
        lambda x: fx.federated_aggregate(x, 0.0, no_arg_local, no_arg_local, no_arg_local)),
    "select with a no-argument fn": _defined(KEYS, F32_SERVER)(
        lambda k, t: fx.federated_select(k, 3, t, no_arg_local)),
    "sum of None": _defined(F32_CLIENTS)(lambda x: fx.federated_sum(None)),
    "value at placement None": _defined(F32_SERVER)(lambda x: fx.federated_value(1.0, None)),
    "eval at placement None": _defined()(lambda: fx.federated_eval(no_arg_local, None)),
    "zip of None": _defined()(lambda: fx.federated_zip(None)),
    "bitwidth None": _defined(fx.FederatedType(np.int32, C))(
        lambda x: fx.federated_secure_sum_bitwidth(x, None)),
    "modulus None": _defined(fx.FederatedType(np.int32, C))(
        lambda x: fx.federated_secure_modular_sum(x, None)),
    "select max_key None": _defined(KEYS, F32_SERVER)(
        lambda k, t: fx.federated_select(k, None, t, lambda a, b: a)),
    "body returns None": _defined(F32_SERVER)(lambda x: None),
    "local returns None": lambda: fx.computation(np.float32)(lambda x: None),
    "local of unknown rank": lambda: fx.computation(fx.TensorType(np.float32, None))(lambda x: x),
    "local called with None": lambda: typed_local(None),
    "federated called with None": lambda: two_args_federated(None, 1.0),
    "clients given None": lambda: fx.federated_computation(F32_CLIENTS)(
        lambda x: fx.federated_sum(x))(None),
    "sequence given None": lambda: fx.computation(F32_SEQ)(
        lambda s: s.reduce(0.0, lambda a, b: a + b))(None),
    "reduce from None": lambda: fx.computation(F32_SEQ)(lambda s: s.reduce(None, lambda a, b: a)),
    "reduce_func returns None": lambda: fx.computation(F32_SEQ)(
        lambda s: s.reduce(0.0, lambda a, b: None)),
    "inline call with None": lambda: fx.computation(np.float32)(lambda x: typed_local(None)),
    "partial that fails": _defined(F32_CLIENTS)(
        lambda x: fx.federated_map(functools.partial(jnp.reshape, shape=(2,)), x)),
}

# `expected: None`, `actual:   None`, and a difference `expected None` / `got None`, where None
# is not followed by what it is (a value the user gave reads "None (a NoneType)").
NONE_AS_UNKNOWN = re.compile(
    r"(expected:?|actual:|got)\s+None(?! \(a NoneType\))\b", re.MULTILINE)


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_no_error_prints_none_for_unknown(name):
  with pytest.raises(Exception) as info:
    BAD_INPUTS[name]()
  message = str(info.value)
  found = NONE_AS_UNKNOWN.search(message)
  assert found is None, f"{name}: {found.group(0)!r} in\n{message}"


def test_a_function_taking_no_argument_says_so():
  with pytest.raises(fx.FederatedTypeError) as info:
    BAD_INPUTS["map a no-argument local"]()
  assert "federated_map: `fn` (no_arg_local) does not accept the values it is applied to.\n" \
         "  expected: no argument\n  actual:   float32\n" in str(info.value)
  with pytest.raises(fx.FederatedTypeError) as info:
    BAD_INPUTS["map a no-argument federated"]()
  assert "federated_map: `fn` (no_arg_federated) does not accept the values it is applied " \
         "to.\n  expected: no argument\n  actual:   float32\n" in str(info.value)
  with pytest.raises(fx.FederatedTypeError) as info:
    BAD_INPUTS["eval a two-argument federated"]()
  assert "federated_eval: `fn` (two_args_federated) does not accept the values it is applied " \
         "to.\n  expected: <a=float32,b=float32>\n  actual:   no argument\n" in str(info.value)


def test_a_value_the_user_gave_as_none_says_what_it_is():
  with pytest.raises(fx.FederatedTypeError) as info:
    BAD_INPUTS["value at placement None"]()
  assert "  actual:   None (a NoneType)\n" in str(info.value)
  with pytest.raises(fx.FederatedTypeError) as info:
    BAD_INPUTS["local called with None"]()
  message = str(info.value)
  assert "typed_local: argument: no value (None) was given.\n  expected: float32\n" in message
  assert "floats do not convert" not in message  # The hint is for floats given for ints.


def test_local_function_returning_none():
  with pytest.raises(fx.FederatedTypeError) as info:
    BAD_INPUTS["local returns None"]()
  assert ": the function returned None.\n  hint: return the computation's result" in str(
      info.value)


def test_inline_call_names_the_argument_without_a_type():
  with pytest.raises(fx.FederatedTypeError) as info:
    BAD_INPUTS["inline call with None"]()
  assert ("typed_local: argument `x` has no federated type.\n  actual:   None (a NoneType)"
          in str(info.value))


def test_format_message_never_prints_none_for_unknown():
  from federax.core.errors import format_message
  assert format_message("op", "it failed.", expected="None", actual="None") == (
      "op: it failed.\n  actual:   None (a NoneType)")
  assert format_message("op", "they differ.", differences=[("x", None, "float32")]) == (
      "op: they differ.\n  at x: expected nothing, got float32")


def test_a_process_whose_next_takes_no_parameter_says_so():
  @fx.federated_computation
  def initialize():
    return fx.federated_value(0.0, S)

  @fx.federated_computation
  def next_fn():
    return fx.federated_value(0.0, S)

  with pytest.raises(fx.FederatedTypeError) as info:
    fx.templates.IterativeProcess(initialize, next_fn)
  assert ("next_fn's first parameter must accept the state initialize_fn returns.\n"
          "  expected: float32@SERVER\n  actual:   no parameter\n") in str(info.value)
