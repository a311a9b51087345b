"""Cohorts of varying size share compiled programs: the client axis padded, with a client mask.

A program's shapes fix its number of clients, so cohorts whose size changes every round
(Poisson sampling, `fx.program.PoissonSampler`) would compile one program per size. On
`fx.runtime.vectorized(pad_clients=True)`, every cohort of `n` clients is padded to
`padded_size(n)` clients (under 1/8 more, and at least `MIN_PADDED`), and the program takes
a bool client mask `[m]` (True for the `n` real clients) beside its argument. Padded clients
hold zeros (empty sequences); whatever they compute is masked out with `where` (never a
product: their results may be NaN) before any aggregation, and stripped before values leave
the runtime, so results are those of the unpadded cohort (floating-point sums to rounding: a
longer axis may add in another order). A real client's key is unchanged (keys are drawn per
client index). Off by default: a fixed cohort needs one program and no padding; unpadded, a
computation compiled for a fourth cohort size warns with this hint.

`federated_stack` hands the stacked client values to user code (robust aggregators sort
them), which knows no mask: a computation that stacks raises `PaddingRefused` while its padded
program is traced, and runs unpadded from then on (one program per cohort size, as before).
So does a secure sum whose padded cohort could overflow where the real one would not.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import types as t
from federax.core.placements import SERVER
from federax.runtime.padding import aligned_empty, bucket

PER_DOUBLING = 8
"""Padded cohort sizes per doubling: padding stays under 1/8 of a cohort."""
MIN_PADDED = 16
"""Cohorts under this many clients pad to it: below 16, `bucket` keeps every size, and a
small cohort's padded clients cost little next to a compilation (9.75 s against a 0.025 s
round on Synthetic)."""


class PaddingRefused(Exception):
  """An intrinsic cannot honour the client mask of a padded program (raised while tracing)."""

  def __init__(self, why: str):
    super().__init__(why)
    self.why = why


def padded_size(n: int) -> int:
  """The client-axis size a cohort of `n` clients is padded to.

  Example:
    >>> from federax.runtime.vectorized.cohort_padding import padded_size
    >>> [padded_size(n) for n in (1, 10, 16, 17, 100, 130)]
    [16, 16, 16, 18, 104, 144]
  """
  return bucket(max(n, MIN_PADDED), PER_DOUBLING)


SIZES_BEFORE_HINT = 4
"""Unpadded, a computation compiled for this many cohort sizes gets a hint to pad."""


class CohortSizes:
  """Whether a call's cohort is padded, and a hint when unpadded cohorts keep compiling.

  Padding is a function of the call alone (on: every cohort that can be padded is), never of
  the calls before it: a resumed run pads its rounds as the uninterrupted run did, so their
  floating-point sums add in the same order and the two end bit-identical.

  Args:
    enabled: the runtime's `pad_clients` option.
  """

  def __init__(self, enabled: bool = False):
    self.enabled = enabled
    self._sizes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # comp -> {n}.
    self.refused: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # comp -> why.

  def size(self, comp, n: Optional[int], padable: bool) -> Optional[int]:
    """The padded size for a call of `comp` with `n` clients, or None to run it unpadded.

    `padable`: the call may be padded at all (not traced, streamed or sharded)."""
    if not n or not padable or comp in self.refused:
      return None
    if self.enabled:
      return padded_size(n)
    sizes = self._sizes.setdefault(comp, set())
    if n not in sizes and len(sizes) == SIZES_BEFORE_HINT - 1:
      warnings.warn(
          f"{getattr(comp, '__name__', 'a computation')} has now been compiled for "
          f"{SIZES_BEFORE_HINT} cohort sizes (one XLA program per number of clients); cohorts "
          "whose size varies (Poisson sampling) share a few programs on "
          "fx.runtime.vectorized(pad_clients=True).", RecompilationWarning, stacklevel=4)
    sizes.add(n)
    return None

  def refuse(self, comp, why: str) -> None:
    self.refused[comp] = why


class RecompilationWarning(UserWarning):
  """A computation keeps compiling new programs for new cohort sizes."""


def pad(payload: Any, ts: Optional[t.Type], n: int, m: int) -> Any:
  """`payload` of type `ts` with every client-axis leaf padded from `n` to `m` clients with
  zeros (False in sequence and row masks: padded clients hold empty sequences)."""
  if ts is None or m == n:
    return payload
  if isinstance(ts, t.FederatedType):
    if ts.placement is SERVER or ts.all_equal:
      return payload
    return jax.tree_util.tree_map(lambda x: _pad_leaf(x, m), payload)
  if isinstance(ts, t.StructType) and isinstance(payload, tuple):
    return tuple(pad(p, et, n, m) for p, et in zip(payload, ts))
  return payload


def _pad_leaf(x: Any, m: int) -> Any:
  if isinstance(x, np.ndarray):
    out = aligned_empty((m,) + x.shape[1:], x.dtype)  # Aligned: XLA:CPU takes it uncopied.
    out[:x.shape[0]] = x
    out[x.shape[0]:] = 0
    return out
  return jnp.concatenate([x, jnp.zeros((m - x.shape[0],) + x.shape[1:], x.dtype)])


def client_mask(n: int, m: int) -> np.ndarray:
  """bool `[m]`: True for the `n` real clients."""
  return np.arange(m) < n


def real(x: jax.Array, mask: Optional[jax.Array], fill: Any = 0) -> jax.Array:
  """`x [m, ...]` with padded clients' rows replaced by `fill` (a `where`: NaN-safe)."""
  if mask is None:
    return x
  return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x,
                   jnp.asarray(fill, x.dtype))


def real_tree(payload: Any, mask: Optional[jax.Array], fill: Any = 0) -> Any:
  return payload if mask is None else jax.tree_util.tree_map(lambda x: real(x, mask, fill),
                                                            payload)


def lowest(dtype) -> Any:
  """The identity of a maximum in `dtype`."""
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.floating):
    return -jnp.inf
  return False if dtype == jnp.bool_ else jnp.iinfo(dtype).min


def highest(dtype) -> Any:
  """The identity of a minimum in `dtype`."""
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.floating):
    return jnp.inf
  return True if dtype == jnp.bool_ else jnp.iinfo(dtype).max
