"""Secure summation (TFF's `secure.py`, `primitives.secure_quantized_sum`): client values reach
the server only through `fx.federated_secure_sum_bitwidth` and `fx.federated_secure_modular_sum`.

Values are encoded as unsigned integers split into 8-bit limbs (`_secure_encoding`), so the
secure sums are exact and cannot overflow for up to 16,843,009 clients, whatever the thresholds.
"""

from __future__ import annotations

import collections
import functools
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import map_structure
from federax.core.values import Value
from federax.templates.estimation_process import EstimationProcess
from federax.templates.measured_process import MeasuredProcessOutput
from federax.templates._naming import named
from federax.aggregators import _one_pass, _secure_encoding as enc
from federax.aggregators.factory import AggregationProcess, UnweightedAggregationFactory

NORM_TYPE = np.float32  # What an adaptive threshold's process is fed (TFF's).
COUNT_TYPE = np.int32  # The clipped counts' dtype (TFF's).

ThresholdEstType = Union[int, float, np.integer, np.floating, EstimationProcess]

_QUANTIZABLE = tuple(np.dtype(d) for d in (np.int32, np.int64, np.float32, np.float64))


# --- Structures ----------------------------------------------------------------------------------


def _tensor_types(type_spec: t.Type) -> list[t.TensorType]:
  """The tensors of a type, in order."""
  if isinstance(type_spec, t.TensorType):
    return [type_spec]
  return [leaf for element in type_spec for leaf in _tensor_types(element)]


def _leaves(type_spec: t.Type, value: Any) -> list:
  """The arrays of a local value of `type_spec`, in the type's order (any container)."""
  return jax.tree_util.tree_leaves(map_structure(lambda _, x: x, type_spec, value, to_user=False))


def _rebuild(type_spec: t.Type, leaves: list) -> Any:
  """A local value of `type_spec` (its container) from its arrays in order."""
  remaining = iter(leaves)

  def nest(ts):
    return next(remaining) if isinstance(ts, t.TensorType) else tuple(nest(e) for e in ts)

  return map_structure(lambda _, x: x, type_spec, nest(type_spec), to_user=True)


def _is_local_tensor_structure(type_spec: t.Type) -> bool:
  if isinstance(type_spec, t.TensorType):
    return True
  return (isinstance(type_spec, t.StructType) and len(type_spec) > 0
          and all(_is_local_tensor_structure(e) for e in type_spec))


def _dtypes(type_spec: t.Type) -> list[np.dtype]:
  return [leaf.dtype for leaf in _tensor_types(type_spec)]


# --- secure_quantized_sum ------------------------------------------------------------------------


def secure_quantized_sum(client_value: Value, lower_bound: Any, upper_bound: Any) -> Value:
  """Clips, quantizes and securely sums client values: `{V}@CLIENTS -> V@SERVER` (TFF's).

  Each tensor is clipped to `[lower_bound, upper_bound]` and encoded as an integer in
  `[0, 2**32 - 1]`, which the server sums with `fx.federated_secure_sum_bitwidth` and decodes.

  - Integers (int32, int64): `clip(x) - lower`, summed exactly, so the result is the exact sum
    of the clipped values (when it fits the dtype). For int64 with `upper - lower >= 2**32`
    the shifted values are first divided by `(upper - lower) // (2**32 - 1) + 1`, as TFF does.
  - Floats (float32, float64): `round((clip(x) - lower) * L / (upper - lower))`, deterministic
    rounding onto a grid of `L` steps, decoded at the server. `L` is TFF's `2**32 - 1` in
    float64, and `2**31` in float32, which cannot hold `2**32 - 1` (a power of two keeps dyadic
    values exact: zeros in `[-1, 1]` sum to exactly 0). With `n` clients, `R = upper - lower`,
    `M = max(|lower|, |upper|)` and `eps` the dtype's machine epsilon (2**-23 for float32),
    the result differs from the sum of the clipped values by at most
    `n * (R / (2 * L) + 4 * eps * (R + M))`: half a grid step per client, plus the rounding of
    the float arithmetic (which dominates in float32). A NaN is encoded as the lower bound
    (as TFF's saturating cast does).

  The encodings are summed as 8-bit limbs (`bitwidth=8`), whose sums fit uint32 for up to
  16,843,009 clients: no sum can overflow, and no client count is needed in advance.

  Args:
    client_value: a value placed at CLIENTS whose tensors are int32, int64, float32 or float64.
    lower_bound: the smallest value kept (smaller ones are clipped): a scalar, or a structure of
      scalars matching `client_value`, each of the dtype of the tensors it bounds; Python
      numbers, or a value placed at SERVER.
    upper_bound: the largest value kept, like `lower_bound` (both constants or both values).

  Returns:
    The sum at SERVER, of `client_value`'s member type.

  Raises:
    TypeError: if the value is not at CLIENTS or has another dtype, or the bounds' kinds, types,
      placements or dtypes do not match.
    ValueError: if constant bounds have `lower_bound > upper_bound` (bounds computed at the
      server are checked when the computation runs, and raise then).

  Example:
    >>> @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
    ... def clipped_total(values):
    ...   return fx.aggregators.secure_quantized_sum(values, -1.0, 1.0)
    >>> round(float(clipped_total([0.25, 0.5, 3.0])), 5)
    1.75
  """
  value, lower, upper = _normalize_bounds(client_value, lower_bound, upper_bound)
  value_type = value.type_signature.member
  bound_type = lower.type_signature.member
  bits = enc.QUANTIZATION_BITS
  encode = _quantize_fn(value_type, bound_type)
  encoded = fi.federated_map(encode, (value, fi.federated_broadcast(lower),
                                      fi.federated_broadcast(upper)))
  count = _client_count()
  sums = fi.federated_secure_sum_bitwidth(encoded, enc.limb_bitwidth(bits))
  return fi.federated_map(_dequantize_fn(value_type, bound_type, sums.type_signature.member),
                          (sums, lower, upper, count))


def _normalize_bounds(client_value: Any, lower: Any, upper: Any) -> tuple:
  """The checked `(value, lower, upper)`, the bounds as values at SERVER."""
  op = "secure_quantized_sum"
  value_type = getattr(client_value, "type_signature", None)
  if not (isinstance(client_value, Value) and isinstance(value_type, t.FederatedType)
          and value_type.placement is CLIENTS):
    raise error(TypeError, op, "`client_value` must be a value placed at CLIENTS.",
                expected="{V}@CLIENTS (a federated computation's parameter or an intrinsic's "
                "result)", actual=value_type if value_type is not None else repr(client_value))
  member = value_type.member
  if not (_is_local_tensor_structure(member)
          and all(d in _QUANTIZABLE for d in _dtypes(member))):
    raise error(TypeError, op, "the value's tensors must be int32, int64, float32 or float64.",
                expected="{tensors of int32, int64, float32 or float64}@CLIENTS",
                actual=value_type)
  if isinstance(lower, Value) != isinstance(upper, Value):
    raise error(TypeError, op, "the bounds must both be constants or both be federated values.",
                actual=f"lower_bound {_describe(lower)}, upper_bound {_describe(upper)}")
  if not isinstance(lower, Value):
    _check_constant_order(op, lower, upper)
    lower, upper = fi.federated_value(lower, SERVER), fi.federated_value(upper, SERVER)
  lower_type, upper_type = lower.type_signature, upper.type_signature
  if not (isinstance(lower_type, t.FederatedType) and lower_type.placement is SERVER
          and isinstance(upper_type, t.FederatedType) and upper_type.placement is SERVER):
    raise error(TypeError, op, "the bounds must be placed at SERVER.",
                expected="B@SERVER for both bounds",
                actual=f"lower_bound {lower_type}, upper_bound {upper_type}")
  if lower_type.member != upper_type.member:
    raise error(TypeError, op, "the bounds must have the same type.",
                actual=f"lower_bound {lower_type}, upper_bound {upper_type}")
  bound = lower_type.member
  if isinstance(bound, t.TensorType):
    if bound.shape != () or any(d != bound.dtype for d in _dtypes(member)):
      raise error(TypeError, op, "a scalar bound must have the dtype of every tensor of the "
                  "value.", expected=f"a scalar of the value's dtype ({member})",
                  actual=bound, hint="give a structure of bounds for tensors of several dtypes")
  elif not (isinstance(bound, t.StructType) and isinstance(member, t.StructType)
            and _same_nesting(member, bound)
            and all(b.shape == () and b.dtype == v.dtype
                    for v, b in zip(_tensor_types(member), _tensor_types(bound)))):
    raise error(TypeError, op, "structured bounds must match the value's structure, with one "
                "scalar of each tensor's dtype.", expected=member, actual=bound)
  return client_value, lower, upper


def _same_nesting(a: t.Type, b: t.Type) -> bool:
  if isinstance(a, t.TensorType) or isinstance(b, t.TensorType):
    return isinstance(a, t.TensorType) and isinstance(b, t.TensorType)
  return (isinstance(a, t.StructType) and isinstance(b, t.StructType) and len(a) == len(b)
          and list(a.names()) == list(b.names())
          and all(_same_nesting(x, y) for x, y in zip(a, b)))


def _describe(bound: Any) -> str:
  return str(bound.type_signature) if isinstance(bound, Value) else repr(bound)


def _check_constant_order(op: str, lower: Any, upper: Any) -> None:
  try:
    lows, highs = jax.tree_util.tree_leaves(lower), jax.tree_util.tree_leaves(upper)
    crossed = len(lows) == len(highs) and any(lo > hi for lo, hi in zip(lows, highs))
  except TypeError:  # Not numbers: the type checks that follow say what is wrong.
    return
  if crossed:
    raise error(ValueError, op, "`lower_bound` must not exceed `upper_bound`.",
                actual=f"lower_bound {lower!r}, upper_bound {upper!r}")


def _bound_leaves(bound_type: t.Type, bound: Any, count: int) -> list:
  if isinstance(bound_type, t.TensorType):
    return [bound] * count
  return _leaves(bound_type, bound)


def _quantize_fn(value_type: t.Type, bound_type: t.Type):
  bits = enc.QUANTIZATION_BITS

  @computation(value_type, bound_type, bound_type)
  @named("secure_quantized_sum.quantize")
  def quantize(value, lower, upper):
    xs = _leaves(value_type, value)
    lows, highs = (_bound_leaves(bound_type, b, len(xs)) for b in (lower, upper))
    return tuple(enc.split(_encode_leaf(x, lo, hi), bits) for x, lo, hi in zip(xs, lows, highs))

  return quantize


def _encode_leaf(x: jax.Array, lower: jax.Array, upper: jax.Array) -> jax.Array:
  if x.dtype.kind == "f":
    return enc.quantize(x, lower, upper)
  shifted = enc.shift(x, lower, upper)
  if x.dtype.itemsize == 8:  # TFF divides 64-bit ranges wider than 32 bits.
    return shifted // enc.integer_scale(lower, upper)
  return shifted


def _dequantize_fn(value_type: t.Type, bound_type: t.Type, sums_type: t.Type):
  bits = enc.QUANTIZATION_BITS
  types = _tensor_types(value_type)

  @computation(sums_type, bound_type, bound_type, t.TensorType(np.int32))
  @named("secure_quantized_sum.dequantize")
  def dequantize(sums, lower, upper, count):
    lows, highs = (_bound_leaves(bound_type, b, len(types)) for b in (lower, upper))
    _check_order_when_run(lows, highs)
    out = []
    for ts, total, lo, hi in zip(types, list(sums), lows, highs):
      if ts.dtype.kind == "f":
        total = enc.join_float(total, bits, enc.compute_dtype(ts.dtype))
        out.append(enc.dequantize(total, lo, hi, count, ts.dtype))
      else:
        scale = enc.integer_scale(lo, hi) if ts.dtype.itemsize == 8 else None
        out.append(enc.unshift(enc.join(total, bits), lo, count, ts.dtype, scale))
    return _rebuild(value_type, out)

  return dequantize


def _check_order_when_run(lows: list, highs: list) -> None:
  """Raises when the program runs if a lower bound exceeds its upper bound (TFF asserts)."""
  def check(lows, highs):
    for lo, hi in zip(lows, highs):
      if np.asarray(lo) > np.asarray(hi):
        raise ValueError(f"secure_quantized_sum: lower_bound {np.asarray(lo)} exceeds "
                         f"upper_bound {np.asarray(hi)}; the bounds must satisfy lower <= upper.")

  jax.debug.callback(check, list(lows), list(highs))


def _client_count() -> Value:
  """The number of clients, summed securely (TFF's `num_summands`): `int32@SERVER`."""
  return fi.federated_secure_sum_bitwidth(fi.federated_value(1, CLIENTS), 1)


# --- SecureModularSumFactory ---------------------------------------------------------------------


class SecureModularSumFactory(UnweightedAggregationFactory):
  """Sums integers modulo `modulus` with `fx.federated_secure_modular_sum` (TFF's).

  The result is `(sum_i x_i) mod modulus` in `[0, modulus - 1]`, whatever the inputs (values
  outside the range wrap around, no error). With `symmetric_range=True` values are read in
  `[-(modulus - 1), modulus - 1]`: the secure sum runs modulo `2 * modulus - 1` and the result
  is mapped back into that range. With modulus 4, `[1, 3, 6]` reads as `[1, 3, -1]` and sums to
  `3`, and `[3, 3]` sums to `-1` (TFF's code does this; its docstring's example says otherwise).
  State and measurements are empty.

  Args:
    modulus: an int in `[2, 2**31 - 1]` (`[2, 2**30]` with `symmetric_range`, whose secure sum
      runs modulo `2 * modulus - 1`); the result must fit the value's dtype.
    symmetric_range: whether the values and the result lie in a range symmetric around 0.

  Raises:
    TypeError: if `modulus` is not an int or `symmetric_range` not a bool; from `create`, if the
      value type is not a structure of integer tensors (signed ones with `symmetric_range`).
    ValueError: if `modulus` is out of range, or the result cannot fit the value's dtype.

  Example:
    >>> process = fx.aggregators.SecureModularSumFactory(4).create(fx.TensorType(np.int32))
    >>> int(process.next(process.initialize(), [1, 3, 6]).result)
    2
    >>> symmetric = fx.aggregators.SecureModularSumFactory(4, symmetric_range=True)
    >>> process = symmetric.create(fx.TensorType(np.int32))
    >>> int(process.next(process.initialize(), [1, 3, 6]).result)
    3
    >>> int(process.next(process.initialize(), [3, 3]).result)
    -1
  """

  def __init__(self, modulus: Union[int, np.integer], symmetric_range: bool = False):
    name = "SecureModularSumFactory"
    if isinstance(modulus, bool) or not isinstance(modulus, (int, np.integer)):
      raise error(TypeError, name, "`modulus` must be an int.", actual=repr(modulus),
                  hint="a structure of moduli is not supported: compose one factory per part")
    if not isinstance(symmetric_range, bool):
      raise error(TypeError, name, "`symmetric_range` must be a bool.",
                  actual=repr(symmetric_range))
    high = 2**30 if symmetric_range else 2**31 - 1
    if not 2 <= int(modulus) <= high:
      raise error(ValueError, name, f"`modulus` must lie in [2, {high}].", actual=int(modulus),
                  hint="the secure modular sum takes moduli below 2**31"
                  + (", and symmetric_range sums modulo 2 * modulus - 1" if symmetric_range
                     else ""))
    self._modulus = int(modulus)
    self._symmetric_range = symmetric_range

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    name = f"{type(self).__name__}.create"
    kinds = "i" if self._symmetric_range else "iu"
    if not (_is_local_tensor_structure(value_type) and t.has_dtype_kind(value_type, kinds)):
      raise error(TypeError, name, "the values must be "
                  + ("signed integer tensors (symmetric_range gives negative sums)."
                     if self._symmetric_range else "integer tensors."),
                  expected="a tensor or structure of tensors of an integer dtype, e.g. int32",
                  actual=f"value_type {value_type}",
                  hint="to sum floats securely, use fx.aggregators.SecureSumFactory")
    largest = self._modulus - 1
    for dtype in set(_dtypes(value_type)):
      if largest > np.iinfo(dtype).max:
        raise error(ValueError, name, f"results up to {largest} do not fit {dtype}.",
                    actual=f"modulus {self._modulus}, value_type {value_type}",
                    hint="use a wider integer dtype or a smaller modulus")
    modulus, symmetric = self._modulus, self._symmetric_range
    secure_modulus = 2 * modulus - 1 if symmetric else modulus

    @computation(value_type)
    @named(f"{type(self).__name__}.create(value_type).wrap")
    def wrap(total):
      # The sum lies in [0, 2m - 2]; those >= m stand for negative values, congruent mod 2m - 1.
      return jax.tree_util.tree_map(
          lambda v: v - jnp.asarray(secure_modulus, v.dtype) * (v >= modulus).astype(v.dtype),
          total)

    @federated_computation
    @named(f"{type(self).__name__}.create(value_type).initialize")
    def initialize():
      return fi.federated_value((), SERVER)

    @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS))
    @named(f"{type(self).__name__}.create(value_type).next")
    def next_fn(state, value):
      total = fi.federated_secure_modular_sum(value, secure_modulus)
      if symmetric:
        total = fi.federated_map(wrap, total)
      return MeasuredProcessOutput(state, total, fi.federated_value((), SERVER))

    return AggregationProcess(initialize, next_fn)


# --- SecureSumFactory ----------------------------------------------------------------------------


class SecureSumFactory(UnweightedAggregationFactory):
  """Clips client values to a range and sums them securely (TFF's).

  Integer thresholds (Python or NumPy ints) are for integer values: each is clipped to
  `[lower, upper]`, shifted by `-lower` into `[0, upper - lower]` and summed exactly with
  `fx.federated_secure_sum_bitwidth` (bitwidth `ceil(log2(upper - lower + 1))`, as 8-bit limbs
  when wider); the result is the exact sum of the clipped values (when it fits the dtype).

  Float thresholds (Python or NumPy floats), or `fx.templates.EstimationProcess`es adapting them
  from round to round, are for float32/float64 values: `secure_quantized_sum` clips them,
  quantizes them onto a 32-bit grid of `L` steps (deterministic rounding; TFF's `L = 2**32 - 1`
  in float64, `2**31` in float32), sums and dequantizes them. With `n` clients,
  `R = upper - lower`, `M = max(|lower|, |upper|)` and `eps` the dtype's machine epsilon, the
  result is within `n * (R / (2 * L) + 4 * eps * (R + M))` of the sum of the clipped values.
  A NaN entry is summed as the lower bound and counted as neither clipped above nor below (as
  in TFF).

  With only `upper_bound_threshold`, the range is `[-upper, upper]`. An adaptive threshold's
  process is fed, each round, the clients' values before clipping: the largest entry of each
  client's value (any tensor) for the upper process, the smallest for the lower one, and
  `max(|smallest|, |largest|)` for a lone process (as `{float32}@CLIENTS`). A round clips with the
  thresholds reported by the state it starts from.

  All tensors of the value must share one dtype. State: `()` for constants, else the process's
  state (`<upper, lower>` for two). Measurements, as TFF's:
  `<secure_upper_clipped_count=int32, secure_lower_clipped_count=int32,
  secure_upper_threshold=D, secure_lower_threshold=D>` (D the value's dtype): the number of
  clients with an entry above the upper (below the lower) threshold, and the thresholds used.

  Args:
    upper_bound_threshold: an int, a float or an `EstimationProcess` whose `next` takes
      `(state, float32@CLIENTS)` and whose `report` gives the threshold.
    lower_bound_threshold: optional, of the same kind as `upper_bound_threshold`.

  Raises:
    TypeError: if a threshold is of another kind, the two differ in kind, or a process has the
      wrong signature; from `create`, if the value's dtypes do not suit the thresholds.
    ValueError: if a lone constant threshold is not positive, or `upper <= lower`; from
      `create`, if integer thresholds do not fit the value's dtype.

  Example:
    >>> process = fx.aggregators.SecureSumFactory(1.0).create(fx.TensorType(np.float32))
    >>> output = process.next(process.initialize(), [0.5, 2.0, -3.0])
    >>> round(float(output.result), 5)
    0.5
    >>> int(output.measurements["secure_upper_clipped_count"])
    1
  """

  def __init__(self, upper_bound_threshold: ThresholdEstType,
               lower_bound_threshold: Optional[ThresholdEstType] = None):
    name = "SecureSumFactory"
    kind = _threshold_kind(name, "upper_bound_threshold", upper_bound_threshold)
    if lower_bound_threshold is not None:
      lower_kind = _threshold_kind(name, "lower_bound_threshold", lower_bound_threshold)
      if lower_kind != kind:
        raise error(TypeError, name, "the two thresholds must be of the same kind.",
                    expected=f"lower_bound_threshold {_KIND_TEXT[kind]}, like the upper one",
                    actual=f"upper_bound_threshold {upper_bound_threshold!r}, "
                    f"lower_bound_threshold {lower_bound_threshold!r}",
                    hint="integer thresholds sum integers exactly; float thresholds or "
                    "estimation processes quantize floats")
    self._kind = kind
    self._upper = upper_bound_threshold
    self._lower = lower_bound_threshold
    if kind == "process":
      _check_bound_process(upper_bound_threshold, "upper_bound_threshold")
      if lower_bound_threshold is not None:
        _check_bound_process(lower_bound_threshold, "lower_bound_threshold")
      return
    if lower_bound_threshold is None:
      if not upper_bound_threshold > 0:
        raise error(ValueError, name, "a lone `upper_bound_threshold` must be positive: its "
                    "negative is the lower bound.", actual=repr(upper_bound_threshold))
      self._lower = -upper_bound_threshold
    elif not upper_bound_threshold > lower_bound_threshold:
      raise error(ValueError, name, "`upper_bound_threshold` must be larger than "
                  "`lower_bound_threshold`.", actual=f"upper_bound_threshold "
                  f"{upper_bound_threshold!r}, lower_bound_threshold {lower_bound_threshold!r}")
    if kind == "int":
      self._upper, self._lower = int(self._upper), int(self._lower)
      self._bits = (self._upper - self._lower).bit_length()  # ceil(log2(range + 1)), as TFF.

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    dtype = self._check_value_type(value_type)
    initialize = self._initialize()
    factory = type(self).__name__
    extremes = _extremes_fn(value_type)

    @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS))
    @named(f"{factory}.create(value_type).next")
    def next_fn(state, value):
      # The thresholds of this round come from the state it starts with; the new state sees
      # the values before they are clipped.
      # One map for both: on one CPU device each client's value is then read once for its
      # largest and its smallest entry (two maps would be two passes over every client's).
      value_max, value_min = fi.federated_map(extremes, value)
      upper, lower = self._bounds(state, dtype)
      new_state = self._update(state, value_min, value_max)
      if self._kind == "int":
        result = self._sum_integers(value, lower, upper, value_type)
      else:
        result = secure_quantized_sum(value, lower, upper)
      return MeasuredProcessOutput(new_state, result,
                                   _measurements(upper, lower, value_max, value_min))

    return AggregationProcess(initialize, next_fn)

  def _check_value_type(self, value_type: t.Type) -> np.dtype:
    name = f"{type(self).__name__}.create"
    if not (_is_local_tensor_structure(value_type) and t.is_numeric(value_type)):
      raise error(TypeError, name, "the values must be numeric tensors.",
                  expected="a tensor or structure of tensors, e.g. float32[10]",
                  actual=f"value_type {value_type}")
    dtypes = set(_dtypes(value_type))
    if len(dtypes) != 1:
      raise error(TypeError, name, "all tensors of the value must share one dtype.",
                  actual=f"value_type {value_type} (dtypes "
                  f"{', '.join(sorted(d.name for d in dtypes))})",
                  hint="aggregate each dtype with its own factory, or cast to one dtype")
    dtype = dtypes.pop()
    if self._kind == "int":
      if dtype.kind not in "iu":
        raise error(TypeError, name, "integer thresholds sum integer values.",
                    expected="integer tensors", actual=f"value_type {value_type}",
                    hint="give float thresholds (e.g. 1.0) to quantize floats")
      info = np.iinfo(dtype)
      if self._lower < info.min or self._upper > info.max:
        raise error(ValueError, name, f"the thresholds must fit the values' dtype {dtype}.",
                    expected=f"thresholds in [{info.min}, {info.max}]",
                    actual=f"[{self._lower}, {self._upper}] ({self._bits} bits)")
    elif dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
      raise error(TypeError, name, f"{_KIND_PLURAL[self._kind]} sum float32 or float64 "
                  "values.", expected="float32 or float64 tensors",
                  actual=f"value_type {value_type}",
                  hint="give int thresholds (e.g. 10) to sum integers exactly"
                  if dtype.kind in "iu" else "cast the values to float32")
    return dtype

  def _initialize(self):
    if self._kind != "process":
      return _empty_state
    if self._lower is None:
      return self._upper.initialize
    upper, lower = self._upper, self._lower

    @federated_computation
    @named(f"{type(self).__name__}.create(value_type).initialize")
    def initialize():
      return fi.federated_zip((upper.initialize(), lower.initialize()))

    return initialize

  def _bounds(self, state: Value, dtype: np.dtype) -> tuple[Value, Value]:
    """(upper, lower) of this round at SERVER, of the values' dtype."""
    if self._kind != "process":
      return (fi.federated_value(np.asarray(self._upper, dtype), SERVER),
              fi.federated_value(np.asarray(self._lower, dtype), SERVER))
    cast = lambda x: x.astype(dtype)  # noqa: E731
    if self._lower is None:
      upper = fi.federated_map(cast, self._upper.report(state))
      return upper, fi.federated_map(lambda x: -x, upper)
    return (fi.federated_map(cast, self._upper.report(state[0])),
            fi.federated_map(cast, self._lower.report(state[1])))

  def _update(self, state: Value, value_min: Value, value_max: Value) -> Value:
    if self._kind != "process":
      return state
    if self._lower is None:
      dtype = _estimate_dtype(self._upper)
      largest = fi.federated_map(
          lambda low, high: jnp.maximum(jnp.abs(low), jnp.abs(high)).astype(dtype),
          (value_min, value_max))
      return self._upper.next(state, largest)
    high_dtype, low_dtype = _estimate_dtype(self._upper), _estimate_dtype(self._lower)
    return fi.federated_zip((
        self._upper.next(state[0], fi.federated_map(lambda x: x.astype(high_dtype), value_max)),
        self._lower.next(state[1], fi.federated_map(lambda x: x.astype(low_dtype), value_min))))

  def _sum_integers(self, value: Value, lower: Value, upper: Value, value_type: t.Type) -> Value:
    bits = self._bits

    @computation(value_type, lower.type_signature.member, upper.type_signature.member)
    @named(f"{type(self).__name__}.create(value_type).shift")
    def shift(value, lower, upper):
      return tuple(enc.split(enc.shift(x, lower, upper), bits)
                   for x in _leaves(value_type, value))

    shifted = fi.federated_map(shift, (value, fi.federated_broadcast(lower),
                                       fi.federated_broadcast(upper)))
    sums = fi.federated_secure_sum_bitwidth(shifted, enc.limb_bitwidth(bits))
    count = _client_count()
    dtypes = _dtypes(value_type)

    @computation(sums.type_signature.member, lower.type_signature.member, np.int32)
    @named(f"{type(self).__name__}.create(value_type).unshift")
    def unshift(sums, lower, count):
      return _rebuild(value_type, [enc.unshift(enc.join(total, bits), lower, count, dtype)
                                   for total, dtype in zip(list(sums), dtypes)])

    return fi.federated_map(unshift, (sums, lower, count))


_KIND_TEXT = {"int": "an int", "float": "a float", "process": "an EstimationProcess"}
_KIND_PLURAL = {"float": "float thresholds", "process": "thresholds from estimation processes"}


def _threshold_kind(factory: str, name: str, threshold: Any) -> str:
  if isinstance(threshold, EstimationProcess):
    return "process"
  if isinstance(threshold, (int, np.integer)) and not isinstance(threshold, (bool, np.bool_)):
    return "int"
  if isinstance(threshold, (float, np.floating)):
    return "float"
  raise error(TypeError, factory, f"`{name}` must be a number or an estimation process.",
              expected="an int, a float or an fx.templates.EstimationProcess",
              actual=repr(threshold))


def _check_bound_process(process: EstimationProcess, name: str) -> None:
  """TFF's checks: `next: (<S, float32@CLIENTS> -> S)`, `report: (S -> E@SERVER)` with `E` the
  type `next` is fed."""
  factory = "SecureSumFactory"
  parameter = process.next.type_signature.parameter
  fed = t.FederatedType(NORM_TYPE, CLIENTS)
  if not (isinstance(parameter, t.StructType) and len(parameter) == 2):
    raise error(TypeError, factory, f"`{name}.next` must take two arguments (state, value).",
                actual=parameter)
  if not parameter[1].is_assignable_from(fed):
    raise error(TypeError, factory, f"`{name}.next`'s second argument must accept the clients' "
                "values.", expected=fed, actual=parameter[1])
  result = process.next.type_signature.result
  if not process.state_type.is_assignable_from(result):
    raise error(TypeError, factory, f"`{name}.next` must return the state only.",
                expected=process.state_type, actual=result)
  report = process.report.type_signature.result
  estimate = t.FederatedType(parameter[1].member, SERVER)
  if not report.is_assignable_from(estimate):
    raise error(TypeError, factory, f"`{name}.report` must return the threshold at SERVER.",
                expected=estimate, actual=report)


def _estimate_dtype(process: EstimationProcess) -> np.dtype:
  """The dtype a process's `next` takes its client values in."""
  return process.next.type_signature.parameter[1].member.dtype


@federated_computation
@named("SecureSumFactory.create(value_type).initialize")
def _empty_state():
  return fi.federated_value((), SERVER)


def _extremes_fn(value_type: t.Type):
  """The largest and the smallest entry of a client's value, over all its tensors (TFF's);
  each tensor's from one read of it (`_one_pass`). A tensor without entries has none: the
  smallest of an empty tensor is its dtype's largest value (inf), and so on."""
  @computation(value_type)
  @named("SecureSumFactory.create(value_type).value_extremes")
  def extremes(value):
    lows, highs = zip(*[_one_pass.extremes(x) for x in _leaves(value_type, value)])
    return functools.reduce(jnp.maximum, highs), functools.reduce(jnp.minimum, lows)

  return extremes


def _measurements(upper: Value, lower: Value, value_max: Value, value_min: Value) -> Value:
  """The clipped counts (summed securely) and the thresholds, with TFF's names."""
  above = fi.federated_map(lambda bound, v: (bound < v).astype(COUNT_TYPE),
                           (fi.federated_broadcast(upper), value_max))
  below = fi.federated_map(lambda bound, v: (bound > v).astype(COUNT_TYPE),
                           (fi.federated_broadcast(lower), value_min))
  return fi.federated_zip(collections.OrderedDict(
      secure_upper_clipped_count=fi.federated_secure_sum_bitwidth(above, 1),
      secure_lower_clipped_count=fi.federated_secure_sum_bitwidth(below, 1),
      secure_upper_threshold=upper,
      secure_lower_threshold=lower))
