"""`HadamardTransformFactory` and `DiscreteFourierTransformFactory`: random rotations of the
client values before an inner aggregation, inverted at the server after it."""

from __future__ import annotations

import collections
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import computation, federated_computation
from federax.core.errors import error
from federax.core.intrinsics import KEY_TYPE
from federax.core.placements import CLIENTS, SERVER
from federax.templates._naming import named
from federax.templates.measured_process import MeasuredProcessOutput
from federax.aggregators import _compression_utils as cu
from federax.aggregators.factory import (AggregationFactory, AggregationProcess,
                                         UnweightedAggregationFactory)
from federax.aggregators.hadamard import fast_walsh_hadamard_transform
from federax.aggregators.sum_factory import SumFactory


class _RotationFactory(UnweightedAggregationFactory):
  """A random rotation around an unweighted inner factory; subclasses name the transform."""

  _measurement: str  # The measurement's key: TFF's `hd` or `dft`.
  _transform: tuple  # (padded size of n elements, forward, inverse); a property in each
  # subclass, as the transforms are defined further down.

  def __init__(self, inner_agg_factory: Optional[AggregationFactory] = None,
               num_repeats: int = 1, *, seed: int = 0):
    name = type(self).__name__
    self._inner = (SumFactory() if inner_agg_factory is None else
                   cu.check_unweighted_inner(name, "inner_agg_factory", inner_agg_factory))
    self._num_repeats = cu.check_int(name, "num_repeats", num_repeats, 1)
    self._seed = cu.check_seed(name, seed)

  def _create(self, value_type: t.Type, weight_type: Optional[t.Type]) -> AggregationProcess:
    return _rotation_process(type(self).__name__, self._measurement, self._inner, value_type,
                             self._seed, self._num_repeats, *self._transform)


class HadamardTransformFactory(_RotationFactory):
  """Rotates each client tensor by a random Hadamard rotation before the inner aggregation.

  TFF's factory. At the clients each tensor is flattened, cast to float32, zero-padded to the
  next power of two `d`, multiplied by random signs and transformed by the normalized fast
  Walsh–Hadamard transform (`num_repeats` times, with fresh signs each time); the inner
  factory aggregates these `float32[d]` vectors (in the value's structure); the server applies
  the inverse steps in reverse order, drops the padding, reshapes, and casts back (integers
  rounded). All clients use the same rotation in a round; the rotation changes every round.

  The signs come from the key in the state, split every round; tensor `j`'s `r`-th repeat uses
  `fold_in(fold_in(round_key, j), r)`. State: `<inner state, key uint32[2]>` (TFF's holds an
  int64[2] seed from the clock); measurements `<hd=inner measurements>`, as TFF's.

  Args:
    inner_agg_factory: an unweighted factory for the rotated values (default `SumFactory()`).
    num_repeats: how many times signs and transform are applied (an int >= 1).
    seed: the seed of the state's first key (a federax addition).

  Example:
    >>> process = fx.aggregators.HadamardTransformFactory().create(fx.TensorType(np.float32, [3]))
    >>> output = process.next(process.initialize(), [[1., 2., 3.], [1., 1., 1.]])
    >>> np.round(output.result, 4), output.measurements
    (array([2., 3., 4.], dtype=float32), OrderedDict([('hd', ())]))
  """

  _measurement = "hd"
  _transform = property(lambda self: (_hadamard_size, _hadamard, _hadamard_inverse))


class DiscreteFourierTransformFactory(_RotationFactory):
  """Rotates each client tensor by a random discrete Fourier transform before the inner
  aggregation.

  TFF's factory. At the clients each tensor is flattened, cast to float32 and zero-padded to
  an even size `d`; its halves become the real and imaginary parts of `d/2` complex numbers,
  which are multiplied by random unit complex numbers `exp(i theta)` and Fourier transformed;
  the real and imaginary parts, divided by `sqrt(d/2)` (a unitary transform), are the
  `float32[d]` vector the inner factory aggregates (`num_repeats` times, fresh angles each
  time). The server inverts the steps, drops the padding, reshapes and casts back (integers
  rounded). Randomness, state and measurements as `HadamardTransformFactory`'s, measured
  under `dft`.

  Args:
    inner_agg_factory: an unweighted factory for the rotated values (default `SumFactory()`).
    num_repeats: how many times angles and transform are applied (an int >= 1).
    seed: the seed of the state's first key (a federax addition).

  Example:
    >>> process = fx.aggregators.DiscreteFourierTransformFactory().create(
    ...     fx.TensorType(np.float32, [3]))
    >>> output = process.next(process.initialize(), [[1., 2., 3.], [1., 1., 1.]])
    >>> np.round(output.result, 4), output.measurements
    (array([2., 3., 4.], dtype=float32), OrderedDict([('dft', ())]))
  """

  _measurement = "dft"
  _transform = property(lambda self: (_dft_size, _dft, _dft_inverse))


# --- The transforms (one repeat, on a padded float32 vector) -------------------------------------


def _hadamard_size(n: int) -> int:
  return 1 << (max(n, 1) - 1).bit_length()  # The next power of two.


def _hadamard(x: jax.Array, key: jax.Array) -> jax.Array:
  return fast_walsh_hadamard_transform(x * jax.random.rademacher(key, x.shape, x.dtype))


def _hadamard_inverse(y: jax.Array, key: jax.Array) -> jax.Array:
  return fast_walsh_hadamard_transform(y) * jax.random.rademacher(key, y.shape, y.dtype)


def _dft_size(n: int) -> int:
  n = max(n, 1)
  return n + n % 2


def _angles(key: jax.Array, n: int) -> jax.Array:
  return jax.random.uniform(key, (n,), jnp.float32, 0.0, 2.0) * jnp.float32(math.pi)


def _dft(x: jax.Array, key: jax.Array) -> jax.Array:
  n = x.shape[0] // 2
  z = jax.lax.complex(x[:n], x[n:]) * jnp.exp(1j * _angles(key, n))
  z = jnp.fft.fft(z)
  return jnp.concatenate([jnp.real(z), jnp.imag(z)]) * jnp.float32(1.0 / math.sqrt(n))


def _dft_inverse(y: jax.Array, key: jax.Array) -> jax.Array:
  n = y.shape[0] // 2
  z = jnp.fft.ifft(jax.lax.complex(y[:n], y[n:]) * jnp.float32(math.sqrt(n)))
  z = z * jnp.exp(-1j * _angles(key, n))
  return jnp.concatenate([jnp.real(z), jnp.imag(z)]).astype(jnp.float32)


# --- The process ---------------------------------------------------------------------------------

Transform = Callable[[jax.Array, jax.Array], jax.Array]


def _rotation_process(name: str, measurement: str, inner_factory: AggregationFactory,
                      value_type: t.Type, seed: int, num_repeats: int,
                      padded_size: Callable[[int], int], forward: Transform,
                      inverse: Transform) -> AggregationProcess:
  leaf_types = cu.check_tensors(f"{name}.create", value_type, kinds="iuf",
                                what="integers or floats")
  if not (t.has_dtype_kind(value_type, "f") or t.has_dtype_kind(value_type, "iu")):
    raise error(TypeError, f"{name}.create", "the tensors must be all integers or all floats.",
                actual=f"value_type {value_type}", hint="cast them to one kind first")
  sizes = [cu.num_elements(ts) for ts in leaf_types]
  first_key = cu.initial_key(seed, name)

  def keys(round_key: jax.Array, j: int) -> list[jax.Array]:
    tensor_key = jax.random.fold_in(round_key, j)
    return [jax.random.fold_in(tensor_key, r) for r in range(num_repeats)]

  @computation(value_type, KEY_TYPE)
  def client_transform(value, round_key):
    rotated = []
    for j, (x, n) in enumerate(zip(cu.flatten(value, value_type), sizes)):
      x = jnp.reshape(x, [-1]).astype(jnp.float32)
      x = jnp.pad(x, (0, padded_size(n) - n))
      for key in keys(round_key, j):
        x = forward(x, key)
      rotated.append(x)
    return cu.unflatten(rotated, value_type)

  rotated_type = client_transform.type_signature.result

  @computation(rotated_type, KEY_TYPE)
  def server_transform(value, round_key):
    restored = []
    for j, (y, ts, n) in enumerate(zip(cu.flatten(value, rotated_type), leaf_types, sizes)):
      for key in reversed(keys(round_key, j)):
        y = inverse(y, key)
      y = jnp.reshape(y[:n], ts.shape)
      restored.append((jnp.round(y) if ts.dtype.kind in "iu" else y).astype(ts.dtype))
    return cu.unflatten(restored, value_type)

  inner = inner_factory.create(rotated_type)

  @federated_computation
  @named(f"{name}.create(value_type).initialize")
  def initialize():
    return fi.federated_zip((inner.initialize(), fi.federated_value(first_key, SERVER)))

  @federated_computation(initialize.type_signature.result, t.FederatedType(value_type, CLIENTS))
  @named(f"{name}.create(value_type).next")
  def next_fn(state, value):
    next_key, round_key = fi.federated_map(cu.split_round_key, state[1])
    rotated = fi.federated_map(client_transform, (value, fi.federated_broadcast(round_key)))
    inner_out = inner.next(state[0], rotated)
    return MeasuredProcessOutput(
        state=fi.federated_zip((inner_out.state, next_key)),
        result=fi.federated_map(server_transform, (inner_out.result, round_key)),
        measurements=fi.federated_zip(
            collections.OrderedDict([(measurement, inner_out.measurements)])))

  return AggregationProcess(initialize, next_fn)
