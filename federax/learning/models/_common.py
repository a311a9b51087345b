"""Shared by the model wrappers: error text, batch unpacking, input specs and random keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core import types as t
from federax.core.errors import error as error  # the models' errors use the core's template
from federax.core.structure import Struct
from federax.core.type_conversions import make_container, to_type


class BatchOutput(NamedTuple):
  """What `forward_pass` returns for one batch.

  Attributes:
    loss: float32 scalar: the mean loss over the batch's real examples, plus any
      regularization loss.
    predictions: the model's output for every row (padded rows included).
    num_examples: int32 scalar: the real (unmasked) examples in the batch.
    non_trainable: the updated non-trainable weights after a training pass (batch-norm
      statistics); None if the model has none or `training=False`.
    carry: the state to carry to the client's next batch, for a model with an
      `initial_carry` (a stateful RNN's); None otherwise.
  """
  loss: jax.Array
  predictions: Any
  num_examples: jax.Array
  non_trainable: Any = None
  carry: Any = None


_BATCH_HINT = ("a batch is {'x': inputs, 'y': labels} (plus an optional bool 'mask'), or an "
               "(x, y) pair; rename features with Dataset.map(lambda e: {'x': e['pixels'], "
               "'y': e['label']})")


def unpack_batch(batch: Any, operator: str) -> tuple[Any, Any, Optional[jax.Array]]:
  """`(x, y, mask or None)` of a batch given as a mapping, an `fx.Struct`, a namedtuple or a pair.

  Raises:
    ValueError: if a mapping lacks 'x' or 'y'.
    TypeError: if the batch is none of the accepted structures.
  """
  if isinstance(batch, (Mapping, Struct)):
    names = list(batch.keys()) if isinstance(batch, Mapping) else [n for n, _ in batch.items()]
    missing = [k for k in ("x", "y") if k not in names]
    if missing:
      raise error(ValueError, operator, f"the batch has no {' or '.join(map(repr, missing))}.",
                  expected="keys 'x', 'y' (and optionally 'mask')", actual=f"keys {names}",
                  hint=_BATCH_HINT)
    mask = batch["mask"] if "mask" in names else None
    return batch["x"], batch["y"], mask
  if isinstance(batch, tuple) and hasattr(batch, "_fields") and {"x", "y"} <= set(batch._fields):
    return batch.x, batch.y, getattr(batch, "mask", None)
  if isinstance(batch, (tuple, list)) and len(batch) == 2:
    return batch[0], batch[1], None
  raise error(TypeError, operator, "cannot read inputs and labels from the batch.",
              expected="a mapping with 'x' and 'y', or an (x, y) pair",
              actual=f"a {type(batch).__name__}", hint=_BATCH_HINT)


def with_row_mask(batch: Any, row_mask: jax.Array) -> Any:
  """The batch with the runtime's row mask as its 'mask' (and-ed with a mask it has), in a form
  `unpack_batch` reads: a mapping, a namedtuple with a `mask` field, else a dict.

  Example:
    >>> with_row_mask((np.ones(2), np.zeros(2)), np.array([True, False]))['mask'].tolist()
    [True, False]
  """
  if isinstance(batch, Struct):
    batch = dict(batch.items()) if all(n for n, _ in batch.items()) else tuple(batch)
  if isinstance(batch, Mapping):
    out = dict(batch) if not isinstance(batch, dict) else type(batch)(batch)
    out["mask"] = row_mask if "mask" not in batch else jnp.logical_and(batch["mask"], row_mask)
    return out
  if isinstance(batch, tuple) and hasattr(batch, "_fields"):
    if "mask" in batch._fields:
      return batch._replace(mask=jnp.logical_and(batch.mask, row_mask))
    return {**batch._asdict(), "mask": row_mask}
  x, y, _ = unpack_batch(batch, "forward_pass")
  return {"x": x, "y": y, "mask": row_mask}


def batch_weights(y: Any, mask: Optional[jax.Array]) -> tuple[jax.Array, jax.Array]:
  """`(sample_weight float32[B], num_examples int32)`: the mask, or all ones without one."""
  if mask is None:
    size = jax.tree.leaves(y)[0].shape[0]
    return jnp.ones([size], jnp.float32), jnp.asarray(size, jnp.int32)
  mask = jnp.asarray(mask).astype(bool)
  return mask.astype(jnp.float32), jnp.sum(mask, dtype=jnp.int32)


def check_input_spec(input_spec: Any, operator: str) -> t.StructType:
  """The batch's struct type, checked to be a structure of 'x' and 'y' (or a pair).

  A `SequenceType` (the type of a whole dataset) stands for its element.

  Raises:
    TypeError: if `fx.to_type` cannot read `input_spec`, or it is not a structure.
    ValueError: if the structure lacks 'x' or 'y'.
  """
  try:
    spec_type = to_type(input_spec)
  except (TypeError, ValueError) as e:
    raise error(TypeError, operator, "input_spec is not a type specification.",
                expected="a batch structure fx.to_type accepts, e.g. a Dataset's element_spec "
                "or {'x': (np.float32, [None, 784]), 'y': (np.int32, [None])}",
                actual=f"{input_spec!r} ({e})") from None
  if isinstance(spec_type, t.SequenceType):
    spec_type = spec_type.element
  if not isinstance(spec_type, t.StructType):
    raise error(TypeError, operator, "input_spec must describe a batch of inputs and labels.",
                expected="<x=...,y=...> or <...,...>", actual=str(spec_type), hint=_BATCH_HINT)
  names = spec_type.names()
  if not any(names) and len(spec_type) == 2:
    return spec_type
  missing = [k for k in ("x", "y") if k not in names]
  if missing:
    raise error(ValueError, operator,
                f"input_spec has no element {' or '.join(map(repr, missing))}.",
                expected="<x=...,y=...> (and optionally mask=bool[B])", actual=str(spec_type),
                hint=_BATCH_HINT)
  return spec_type


def example_input(spec_type: t.StructType) -> Any:
  """Zeros shaped like the batch's 'x' (unknown dimensions as 1), to initialize a model."""
  x_type = spec_type["x"] if any(spec_type.names()) else spec_type[0]

  def zeros(type_spec: t.Type) -> Any:
    if isinstance(type_spec, t.TensorType):
      shape = [1 if d is None else d for d in (type_spec.shape or ())]
      return jnp.zeros(shape, type_spec.dtype)
    if isinstance(type_spec, t.StructType):
      return make_container(tuple(zeros(e) for e in type_spec), type_spec)
    raise TypeError(f"cannot build an example input for {type_spec}")

  return zeros(x_type)


def raw_key(key: Any) -> jax.Array:
  """`key` as raw `uint32[2]` key data (typed `jax.random.key`s are unwrapped)."""
  key = jnp.asarray(key)
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(key)
  return key


def require_key(key: Any, operator: str, what: str) -> None:
  """Raises if a model with random layers is run in training mode without a key.

  Reusing one fixed seed would silently give every step and client the same dropout mask.
  """
  if key is None:
    raise error(ValueError, operator,
                f"the model has random layers ({what}) and training=True, but key is None.",
                hint="pass key=jax.random.PRNGKey(seed) (a different key per client and batch, "
                "e.g. jax.random.fold_in(client_key, step)), or training=False")


def masked_mean(values: jax.Array, sample_weight: jax.Array) -> jax.Array:
  """`sum(values * w) / sum(w)` (0 when every weight is 0), `w` broadcast over trailing axes."""
  values = jnp.asarray(values, jnp.float32)
  w = jnp.asarray(sample_weight, jnp.float32)
  w = jnp.broadcast_to(w.reshape(w.shape + (1,) * (values.ndim - w.ndim)), values.shape)
  total = jnp.sum(w)
  # `where`, not `values * w`: a padded row's loss may be inf (log of 0), and inf * 0 is NaN.
  return jnp.sum(jnp.where(w > 0, values * w, 0.0)) / jnp.where(total > 0, total, 1.0)


def as_array_tree(tree: Any) -> Any:
  """The pytree with NumPy/Python leaves turned into JAX arrays (dtypes canonicalized as
  `jnp.asarray` does). `device_put`, not `jnp.asarray`, which compiles a program per shape."""
  return jax.tree.map(lambda v: v if isinstance(v, jax.Array) else jax.device_put(np.asarray(v)),
                      tree)


def per_example_loss_fn(loss: Any, operator: str) -> Any:
  """`loss_fn(predictions, labels, sample_weight)` from a per-example `loss(predictions, labels)`.

  Raises:
    TypeError: if `loss` is not callable.
  """
  if not callable(loss):
    raise error(TypeError, operator, "loss must be a function of (predictions, labels) "
                "returning one loss per example.",
                expected="e.g. optax.softmax_cross_entropy_with_integer_labels",
                actual=f"{loss!r} (a {type(loss).__name__})")

  def loss_fn(predictions: Any, labels: Any, sample_weight: jax.Array) -> jax.Array:
    values = jnp.asarray(loss(predictions, labels), jnp.float32)
    if values.ndim == 0:
      raise error(ValueError, operator, "the loss returned a scalar; federax needs one value "
                  "per example to leave padded rows out.", expected="float[B]",
                  actual="float[]", hint="return the per-example losses, without the mean "
                  "(optax losses already do)")
    return masked_mean(values, sample_weight)

  return loss_fn
