"""Federated HyperLogLog (TFF's `tff.analytics.count_distinct`): how many distinct strings the
clients hold together, from one 32-register sketch per client merged by an elementwise max.

Each item is hashed to 32 bits with TensorFlow's `to_hash_bucket_fast` (FarmHash
`Fingerprint64` mod 2**32, computed in NumPy: `_farmhash`), so a client's sketch is TFF's,
register for register. The top 5 bits of a hash pick a register, which keeps the largest
`rho = 28 - bit_length(low 27 bits)` seen (1 + the leading zeros of the 27-bit tail). The
server merges the sketches by a max (`fx.federated_max`, or with `use_secagg` a secure sum of
one-hot encodings) and estimates `alpha * m**2 / sum(2**-register)` with `m = 32` and TFF's
bias correction `alpha = 0.697` (Flajolet et al., "HyperLogLog", 2007).

Accuracy: the relative standard error is `beta_32 / sqrt(32) = 1.070 / sqrt(32) = 0.189`
(`RELATIVE_STANDARD_ERROR`; Flajolet et al., Table 1, where `beta_m` tends to 1.04 for large
`m`) once the count is well above `2.5 * m = 80` items; below that the estimate is biased upwards
(TFF applies no small-range correction, nor does this module: four items estimate to 24, as
in TFF). Counts up to `2**31 - 1` are returned (int32; TFF's int64 needs JAX's x64 mode).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.analytics import _farmhash
from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import Computation, computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS
from federax.templates._naming import named

__all__ = [
    "HLL_ALPHA", "HLL_BIT_INDEX_HEAD", "HLL_BIT_INDEX_TAIL", "HLL_SKETCH_SIZE",
    "RELATIVE_STANDARD_ERROR", "build_client_hyperloglog_computation",
    "build_federated_secure_max_computation", "create_federated_hyperloglog_computation",
    "estimate_count", "hash_items", "sketch",
]

HLL_SKETCH_SIZE = 32  # Registers; hashes are taken mod 2**HLL_SKETCH_SIZE (TFF's naming).
HLL_BIT_INDEX_HEAD = 5  # log2(HLL_SKETCH_SIZE): the bits that pick a register.
HLL_BIT_INDEX_TAIL = HLL_SKETCH_SIZE - HLL_BIT_INDEX_HEAD  # 27: the bits rho is read from.
HLL_ALPHA = 0.697  # TFF's bias correction for 32 registers.
RELATIVE_STANDARD_ERROR = 1.070 / math.sqrt(HLL_SKETCH_SIZE)  # ~0.189 (Flajolet et al.)

# rho lies in [1, HLL_BIT_INDEX_TAIL + 1]; a register no item reached holds 0.
_MAX_RHO = HLL_BIT_INDEX_TAIL + 1
_TAIL_MASK = (1 << HLL_BIT_INDEX_TAIL) - 1
HASH_TYPE = t.TensorType(np.uint32)
SKETCH_TYPE = t.TensorType(np.int32, [HLL_SKETCH_SIZE])


def hash_items(items: Iterable) -> np.ndarray:
  """TFF's item hash: `tf.strings.to_hash_bucket_fast(item, 2**32)` of each string (UTF-8) or
  bytes object, as `uint32[n]`. Computed on the host for all items at once.

  Example:
    >>> fx.analytics.count_distinct.hash_items(['a', 'to', 'the']).tolist()
    [3068098019, 3684911281, 1067429738]
  """
  return (_farmhash.fingerprint64(items) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _register_and_rho(hashes: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The register each uint32 hash updates, and its rho: 1 + the leading zeros of the 27-bit
  tail (28 for a tail of zeros), i.e. TFF's `27 - floor(log2(tail))`."""
  hashes = jnp.asarray(hashes, jnp.uint32)
  register = (hashes >> HLL_BIT_INDEX_TAIL).astype(jnp.int32)
  tail = hashes & jnp.uint32(_TAIL_MASK)
  rho = jax.lax.clz(tail).astype(jnp.int32) - HLL_BIT_INDEX_HEAD + 1
  return register, rho


def sketch(hashes: Any, mask: Optional[Any] = None) -> jax.Array:
  """The HyperLogLog sketch of uint32 hashes: `uint32[..., n] -> int32[..., 32]`.

  Leading axes are independent sets (a client axis, a trial axis). `mask` (bool, the shape of
  `hashes`) marks the real entries of padded rows; masked entries are ignored.

  Example:
    >>> hashes = fx.analytics.count_distinct.hash_items(['a', 'b', 'c'])
    >>> registers = fx.analytics.count_distinct.sketch(hashes)
    >>> {i: int(r) for i, r in enumerate(registers) if r}  # register: rho
    {11: 1, 22: 1, 28: 4}
  """
  hashes = jnp.asarray(hashes, jnp.uint32)
  register, rho = _register_and_rho(hashes)
  if mask is not None:
    rho = jnp.where(mask, rho, 0)
  # One scatter-max into the registers of every set at once (no [n, 32] one-hot in memory).
  batch = hashes.shape[:-1]
  sets = jnp.arange(math.prod(batch), dtype=jnp.int32).reshape(*batch, 1)
  index = (sets * HLL_SKETCH_SIZE + register).reshape(-1)
  registers = jnp.zeros([math.prod(batch) * HLL_SKETCH_SIZE], jnp.int32)
  return registers.at[index].max(rho.reshape(-1)).reshape(*batch, HLL_SKETCH_SIZE)


def estimate_count(sketch_value: Any) -> jax.Array:
  """TFF's estimate from a sketch: `int32(alpha * m**2 / sum(2**-register))`, over the last
  axis (`int32[..., 32] -> int32[...]`); saturates at `2**31 - 1`.

  Example:
    >>> fx.analytics.count_distinct.estimate_count(np.zeros(32, np.int32)).item()  # 0.697 * 32
    22
  """
  registers = jnp.asarray(sketch_value, jnp.int32)
  harmonic = jnp.sum(jnp.exp2(-registers.astype(jnp.float32)), axis=-1)
  estimate = jnp.float32(HLL_ALPHA * HLL_SKETCH_SIZE**2) / harmonic
  return jnp.minimum(jnp.floor(estimate), jnp.float32(2**31 - 128)).astype(jnp.int32)


class _Hashes:
  """One client's hashes as a sequence the runtime stacks at once (`StackableDataset`)."""

  __slots__ = ("values",)

  def __init__(self, values: np.ndarray):
    self.values = values

  @property
  def element_spec(self) -> t.TensorType:
    return HASH_TYPE

  def cardinality(self) -> int:
    return len(self.values)

  def to_stacked(self) -> np.ndarray:
    return self.values

  def __iter__(self):
    return iter(self.values)

  def __len__(self) -> int:
    return len(self.values)


def build_client_hyperloglog_computation() -> Computation:
  """A client's sketch: `(uint32* -> int32[32])`, folding its item hashes (TFF's, whose
  hashes are `int64*` and sketch `int64[32]`: JAX keeps 32-bit integers).

  Example:
    >>> client_sketch = fx.analytics.count_distinct.build_client_hyperloglog_computation()
    >>> print(client_sketch.type_signature)
    (uint32* -> int32[32])
  """

  @computation(t.SequenceType(np.uint32))
  @named("count_distinct.client_hyperloglog")
  def client_hyperloglog(client_data):
    def add(state, hash_value):
      register, rho = _register_and_rho(hash_value)
      return jnp.maximum(state, jnp.where(jnp.arange(HLL_SKETCH_SIZE) == register, rho, 0))

    return client_data.reduce(jnp.zeros([HLL_SKETCH_SIZE], jnp.int32), add)

  return client_hyperloglog


def build_federated_secure_max_computation() -> Computation:
  """The elementwise max of client sketches through secure sums only:
  `({int32[32]}@CLIENTS -> int32[32]@SERVER)` (TFF's).

  Each register value `v` in `[0, 28]` is one-hot encoded; the one-hots are summed with
  `fx.federated_secure_sum_bitwidth` (bitwidth 1), and the server takes, per register, the
  largest `v` some client sent. The server learns how many clients hold each value, not who.
  TFF's encoding has 28 classes, so a register at 28 (a 27-bit tail of zeros, probability
  2**-27 per item) reads as 0 there; here it has its class.

  Example:
    >>> secure_max = fx.analytics.count_distinct.build_federated_secure_max_computation()
    >>> secure_max([[1] * 32, [3] + [0] * 31]).tolist()[:3]
    [3, 1, 1]
  """
  values = jnp.arange(_MAX_RHO + 1)

  @computation(SKETCH_TYPE)
  @named("count_distinct.onehot_sketch")
  def onehot_sketch(sketch_value):
    return (sketch_value[:, None] == values).astype(jnp.int32)

  @computation(t.TensorType(np.int32, [HLL_SKETCH_SIZE, _MAX_RHO + 1]))
  @named("count_distinct.maxes_from_onehots")
  def maxes_from_onehots(counts):
    return jnp.max(jnp.where(counts > 0, values, 0), axis=1).astype(jnp.int32)

  @federated_computation(t.FederatedType(SKETCH_TYPE, CLIENTS))
  @named("count_distinct.federated_secure_max")
  def federated_secure_max(sketches):
    counts = fi.federated_secure_sum_bitwidth(fi.federated_map(onehot_sketch, sketches), 1)
    return fi.federated_map(maxes_from_onehots, counts)

  return federated_secure_max


def create_federated_hyperloglog_computation(*, use_secagg: bool = False) -> Computation:
  """The number of distinct strings over all clients: `({str*}@CLIENTS -> int32@SERVER)`.

  Every client hashes its items (`hash_items`, on the host, all at once), folds them into a
  sketch (`build_client_hyperloglog_computation`, compiled over the client axis), the server
  merges the sketches by a max and estimates the count (`estimate_count`). The relative
  standard error is about 19% (`RELATIVE_STANDARD_ERROR`); see the module's notes.

  Args:
    use_secagg: merge the sketches with secure sums (`build_federated_secure_max_computation`)
      instead of `fx.federated_max`. The estimate is the same.

  Raises:
    TypeError: if `use_secagg` is not a bool.

  Example:
    >>> count = fx.analytics.count_distinct.create_federated_hyperloglog_computation()
    >>> print(count.type_signature)
    ({str*}@CLIENTS -> int32@SERVER)
    >>> words = [[f'w{i}' for i in range(c * 300, c * 300 + 500)] for c in range(4)]
    >>> int(count(words))  # 1,400 distinct words; TFF estimates the same
    1052
  """
  if not isinstance(use_secagg, bool):
    raise error(TypeError, "create_federated_hyperloglog_computation",
                "use_secagg must be a bool.", actual=repr(use_secagg))

  @computation(t.SequenceType(np.str_))
  @named("count_distinct.hash_client_data")
  def hash_client_data(client_data):
    return _Hashes(hash_items(list(client_data)))

  @computation(SKETCH_TYPE)
  @named("count_distinct.estimate_count_from_sketch")
  def estimate_count_from_sketch(sketch_value):
    return estimate_count(sketch_value)

  client_hyperloglog = build_client_hyperloglog_computation()
  federated_secure_max = build_federated_secure_max_computation()

  @federated_computation(t.FederatedType(t.SequenceType(np.str_), CLIENTS))
  @named("count_distinct.federated_hyperloglog")
  def federated_hyperloglog(client_data):
    client_hash = fi.federated_map(hash_client_data, client_data)
    sketches = fi.federated_map(client_hyperloglog, client_hash)
    if use_secagg:
      server_sketch = federated_secure_max(sketches)
    else:
      server_sketch = fi.federated_max(sketches)
    return fi.federated_map(estimate_count_from_sketch, server_sketch)

  return federated_hyperloglog
