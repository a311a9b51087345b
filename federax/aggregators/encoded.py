"""`EncodedSumFactory`: a sum of client values sent in an encoded (quantized) form."""

from __future__ import annotations

import collections
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.intrinsics import KEY_TYPE
from federax.core.placements import CLIENTS, SERVER
from federax.templates._naming import named
from federax.templates.measured_process import MeasuredProcessOutput
from federax.aggregators import _compression_utils as cu, _hash_random, _one_pass
from federax.aggregators.factory import AggregationProcess, UnweightedAggregationFactory

# TFF's tensor_encoding bitpacks the quantized levels into int32s of 28 bits each (so each
# serializes as a 4-byte varint); `bits` counts what that representation sends.
_PACKED_BITS_PER_INT32 = 28


class EncodedSumFactory(UnweightedAggregationFactory):
  """Sums client values, each client sending its large tensors uniformly quantized.

  TFF's `EncodedSumFactory` as configured by `quantize_above_threshold` (federax has no
  tensor_encoding, so that is the one encoding). Each tensor with more than `threshold`
  elements is quantized by every client on its own range: with `lo, hi` its minimum and
  maximum and `M = 2**quantization_bits - 1`, the client sends the levels
  `q = stochastic_round((x - lo) / (hi - lo) * M)` (a level `floor(s) + 1` with probability
  `s - floor(s)`, so `E[q] = s`: unbiased) and `[lo, hi]`; the server decodes
  `q / M * (hi - lo) + lo` from every client as it sums (TFF's decode before sum: the range
  differs per client). Smaller tensors are sent and summed as they are.

  The rounding draws from the key in the state: each round splits it, every client gets
  `fold_in(round_key, client_index)` (`fx.federated_client_keys`) and tensor `j` of its value
  `fold_in(client_key, j)`, so a run replays from `seed` on every runtime.

  State: the key, `uint32[2]` (TFF's state is the encoders', `<>` per tensor). Measurements:
  `<bits=float32>`, the bits one client sends (TFF's are `<>`): for each quantized tensor of `n`
  elements, TFF's bitpacked levels `32 * ceil(n * quantization_bits / 28)` plus 64 for
  `[lo, hi]`; for each other tensor its size in bits (`32 * n` for float32). Multiply by the
  number of clients for a round's total.

  Args:
    quantization_bits: the bits per quantized element, in [1, 16].
    threshold: tensors with more than this many elements are quantized (an int >= 0).
    seed: the seed of the state's first key (a federax addition; TFF seeds from the clock).

  Example:
    >>> factory = fx.aggregators.EncodedSumFactory.quantize_above_threshold(
    ...     quantization_bits=8, threshold=2)
    >>> process = factory.create(fx.to_type([(np.float32, [4]), (np.float32, [2])]))
    >>> output = process.next(process.initialize(),
    ...                       [[np.array([0., 1., 2., 3.]), np.array([1., 2.])]] * 3)
    >>> print(output.result[1], output.measurements["bits"])  # [3, 6] exact: not quantized
    [3. 6.] 192.0
  """

  def __init__(self, quantization_bits: int = 8, threshold: int = 20000, *, seed: int = 0):
    if callable(quantization_bits):
      raise error(TypeError, "EncodedSumFactory", "federax has no tensor_encoding encoders, so "
                  "an encoder_fn cannot be given.", actual=repr(quantization_bits),
                  hint="use EncodedSumFactory.quantize_above_threshold(quantization_bits, "
                  "threshold)")
    self._bits = cu.check_int("EncodedSumFactory", "quantization_bits", quantization_bits, 1, 16)
    self._threshold = cu.check_int("EncodedSumFactory", "threshold", threshold, 0)
    self._seed = cu.check_seed("EncodedSumFactory", seed)

  @classmethod
  def quantize_above_threshold(cls, quantization_bits: int = 8, threshold: int = 20000, *,
                               seed: int = 0) -> EncodedSumFactory:
    """Quantizes every tensor with more than `threshold` elements to `quantization_bits` bits.

    TFF's name; the same as `EncodedSumFactory(quantization_bits, threshold, seed=seed)`.
    """
    return cls(quantization_bits, threshold, seed=seed)

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    name = type(self).__name__
    leaf_types = cu.check_tensors(f"{name}.create", value_type, kinds="biuf",
                                  what="numeric")
    quantized = [cu.num_elements(ts) > self._threshold for ts in leaf_types]
    for ts, q in zip(leaf_types, quantized):
      if q and ts.dtype.kind != "f":
        raise error(TypeError, f"{name}.create", "the tensors to quantize must be floating "
                    "point.", expected=f"floating-point tensors (those with more than "
                    f"{self._threshold} elements)", actual=f"value_type {value_type}",
                    hint="cast them to float32, or raise the threshold above their size")
    bits = np.float32(client_bits(leaf_types, self._bits, self._threshold))
    levels = float(2**self._bits - 1)
    level_dtype = np.uint8 if self._bits <= 8 else np.uint16
    first_key = cu.initial_key(self._seed, name)

    @computation(value_type, KEY_TYPE)
    def encode(value, key):
      encoded = []
      for j, (x, ts, q) in enumerate(zip(cu.flatten(value, value_type), leaf_types, quantized)):
        if not q:
          encoded.append(x)
          continue
        x = jnp.reshape(x, [-1]).astype(jnp.float32)
        lo, hi = _one_pass.extremes(x)  # One read of x for both.
        span = hi - lo
        # All levels 0 when the tensor is constant (TFF's div_no_nan).
        scaled = jnp.where(span > 0, (x - lo) / jnp.where(span > 0, span, 1), 0) * levels
        floor = jnp.floor(scaled)
        uniform = _hash_random.uniform(jax.random.fold_in(key, j), x.shape)  # Cheap draws.
        q_levels = floor + (uniform < scaled - floor).astype(jnp.float32)
        encoded.append(collections.OrderedDict(
            quantized_values=q_levels.astype(level_dtype), min_max=jnp.stack([lo, hi])))
      return tuple(encoded)

    encoded_type = encode.type_signature.result
    sum_type = t.StructType(list(leaf_types))

    @computation
    def zero():
      return tuple(jnp.zeros(ts.shape, ts.dtype) for ts in leaf_types)

    @computation(sum_type, encoded_type)
    def accumulate(total, encoded):
      out = []
      for acc, e, ts, q in zip(total, encoded, leaf_types, quantized):
        if q:
          lo, hi = e["min_max"][0], e["min_max"][1]
          decoded = e["quantized_values"].astype(jnp.float32) / levels * (hi - lo) + lo
          e = jnp.reshape(decoded, ts.shape).astype(ts.dtype)
        out.append(acc + e)
      return tuple(out)

    @computation(sum_type, sum_type)
    def merge(a, b):
      return tuple(x + y for x, y in zip(a, b))

    @computation(sum_type)
    def report(total):
      return cu.unflatten(list(total), value_type)

    @computation
    def bits_measurement():
      return collections.OrderedDict(bits=bits)

    @federated_computation
    @named(f"{name}.create(value_type).initialize")
    def initialize():
      return fi.federated_value(first_key, SERVER)

    @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS))
    @named(f"{name}.create(value_type).next")
    def next_fn(state, value):
      next_key, round_key = fi.federated_map(cu.split_round_key, state)
      encoded = fi.federated_map(encode, (value, fi.federated_client_keys(round_key)))
      result = fi.federated_aggregate(encoded, zero(), accumulate, merge, report)
      return MeasuredProcessOutput(state=next_key, result=result,
                                   measurements=fi.federated_eval(bits_measurement, SERVER))

    return AggregationProcess(initialize, next_fn)


def client_bits(leaf_types: list[t.TensorType], quantization_bits: int, threshold: int) -> int:
  """The bits one client sends for tensors of `leaf_types` (see `EncodedSumFactory`)."""
  total = 0
  for ts in leaf_types:
    n = cu.num_elements(ts)
    if n > threshold:
      total += 32 * math.ceil(n * quantization_bits / _PACKED_BITS_PER_INT32) + 2 * 32
    else:
      total += n * ts.dtype.itemsize * 8
  return total
