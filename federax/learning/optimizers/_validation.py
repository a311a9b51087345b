"""Argument and structure checks for the optimizers, with errors that name what to fix."""

from __future__ import annotations

import difflib
import numbers
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from federax.core.errors import format_message, user_location


def message(op: str, problem: str, lines=(), hint: Optional[str] = None, *,
            differences=()) -> str:
  """The house error text (`format_message`) at the user's line."""
  return format_message(op, problem, differences=differences, details=lines, hint=hint,
                        location=user_location())


class OptimizerKeyError(KeyError):
  """A key the optimizer state lacks, or `set_hparams` does not know (a `KeyError`, as in TFF)."""

  def __str__(self) -> str:
    # KeyError's own __str__ would print the repr of the message, quotes and escaped newlines.
    return str(self.args[0])


def as_float(op: str, arg: str, value: Any) -> Optional[float]:
  """`value` as a Python float, or None for a traced value whose range cannot be checked.

  Raises:
    TypeError: if `value` is not a real scalar (bools are rejected: `momentum=True` is a bug).
  """
  if isinstance(value, jax.core.Tracer):
    return None
  is_scalar_array = (isinstance(value, (np.ndarray, np.generic, jax.Array))
                     and np.shape(value) == () and jnp.issubdtype(value.dtype, jnp.number))
  if isinstance(value, bool) or not (isinstance(value, numbers.Real) or is_scalar_array):
    raise TypeError(message(op, f"`{arg}` must be a float, got {type(value).__name__} {value!r}."))
  return float(value)


def check_range(op: str, arg: str, value: Any, low: float, high: float = float("inf"), *,
                low_open: bool = False, high_open: bool = True, hint: Optional[str] = None):
  """Checks `low <= value <= high` (bounds open where asked); NaN is always out of range.

  Raises:
    TypeError: if `value` is not a real scalar.
    ValueError: naming `arg`, the range and the value, if it lies outside.
  """
  number = as_float(op, arg, value)
  if number is None:
    return
  above = number > low if low_open else number >= low
  below = number < high if high_open else number <= high
  if not (above and below):
    if high == float("inf"):
      expected = f"{'>' if low_open else '>='} {low:g}"
    else:
      expected = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    raise ValueError(message(op, f"`{arg}` must be {expected}, got {value!r}.", hint=hint))


def check_learning_rate(op: str, learning_rate: Any):
  """A learning rate is a float >= 0 or an Optax schedule (a callable step -> rate)."""
  if callable(learning_rate):
    return
  if isinstance(learning_rate, bool) or not isinstance(
      learning_rate, (numbers.Real, np.ndarray, np.generic, jax.Array)):
    raise TypeError(message(
        op, "`learning_rate` must be a float or an Optax schedule (a callable step -> "
        f"learning rate), got {type(learning_rate).__name__} {learning_rate!r}.",
        hint="pass e.g. learning_rate=0.01 or "
        "learning_rate=optax.exponential_decay(0.1, 100, 0.5)."))
  check_range(op, "learning_rate", learning_rate, 0.0)


def zeros_like_specs(op: str, specs: Any) -> Any:
  """Zeros shaped like `specs`, a pytree of arrays or of `.shape`/`.dtype` specs.

  Raises:
    TypeError: naming the paths whose leaves have no shape and dtype, or are not floating point.
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(specs)
  bad = []
  for path, leaf in leaves:
    dtype = getattr(leaf, "dtype", None)
    where = jax.tree_util.keystr(path) or "(root)"
    if not hasattr(leaf, "shape") or dtype is None:
      bad.append((where, "an array or a jax.ShapeDtypeStruct", f"{type(leaf).__name__} {leaf!r}"))
    elif not jnp.issubdtype(dtype, jnp.floating):
      bad.append((where, "a floating dtype", np.dtype(dtype).name))
  if bad:
    raise TypeError(message(
        op, "`specs` must be a pytree of floating-point arrays or shape/dtype specs.",
        differences=bad,
        hint="pass the weights themselves, or jax.tree.map(lambda w: jax.ShapeDtypeStruct("
        "w.shape, w.dtype), weights)."))
  return jax.tree_util.tree_unflatten(
      treedef, [jnp.zeros(leaf.shape, leaf.dtype) for _, leaf in leaves])


def _describe(leaf: Any) -> str:
  dtype, shape = getattr(leaf, "dtype", None), getattr(leaf, "shape", None)
  if dtype is None or shape is None:
    return type(leaf).__name__
  return f"{np.dtype(dtype).name}[{','.join(str(d) for d in shape)}]"


def check_like(op: str, what: str, weights: Any, tree: Any, hint: str):
  """Checks that `tree` has the structure and leaf shapes of `weights` (dtypes may differ).

  Raises:
    ValueError: listing only the paths that differ, expected versus actual.
  """
  expected = dict(jax.tree_util.tree_flatten_with_path(weights)[0])
  actual = dict(jax.tree_util.tree_flatten_with_path(tree)[0])
  differences = []
  for path in [*expected, *(p for p in actual if p not in expected)]:
    exp, act = expected.get(path), actual.get(path)
    if exp is None or act is None or np.shape(exp) != np.shape(act):
      differences.append((jax.tree_util.keystr(path) or "(root)",
                          "nothing" if exp is None else _describe(exp),
                          "nothing" if act is None else _describe(act)))
  lines = []
  if not differences and jax.tree.structure(weights) != jax.tree.structure(tree):
    lines.append(f"expected the structure {jax.tree.structure(weights)}, "
                 f"got {jax.tree.structure(tree)}")
  if differences or lines:
    raise ValueError(message(op, f"{what} must match `weights` in structure and shapes.",
                              lines, hint=hint, differences=differences))


def check_hparam_keys(op: str, known: Any, hparams: Any):
  """Raises `OptimizerKeyError` naming the keys of `hparams` that are not in `known`."""
  unknown = [key for key in hparams if key not in known]
  if not unknown:
    return
  lines = [f"this optimizer's hyperparameters: {', '.join(repr(k) for k in known) or 'none'}"]
  for key in unknown:
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
    if close:
      lines.append(f"for {key!r}, did you mean {close[0]!r}?")
  hint = "pass a subset of get_hparams(state)."
  if not known:
    hint = ("an Optax transform has settable hyperparameters only when built with "
            "optax.inject_hyperparams, e.g. "
            "optax.inject_hyperparams(optax.adam)(learning_rate=1e-3).")
  raise OptimizerKeyError(message(
      op, f"unknown hyperparameter(s) {', '.join(repr(k) for k in unknown)}.", lines, hint=hint))


def cast_hparam(op: str, key: str, value: Any, like: jax.Array) -> jax.Array:
  """`value` with the dtype of the state entry it replaces, so that `next` does not recompile.

  Raises:
    ValueError: if `value` does not have the entry's shape (a scalar, for the builders).
  """
  array = jnp.asarray(value, dtype=like.dtype)
  if array.shape != like.shape:
    raise ValueError(message(
        op, f"hyperparameter {key!r} must have shape {like.shape}, got shape {array.shape}.",
        hint="hyperparameters are scalars; pass one value, e.g. {'learning_rate': 0.1}."))
  return array


def scheduled_value(op: str, schedule: Callable[[Any], Any], step: jax.Array) -> jax.Array:
  """`schedule(step)` as a float32 scalar.

  Raises:
    ValueError: if the schedule does not return a scalar.
  """
  value = jnp.asarray(schedule(step), dtype=jnp.float32)
  if value.shape != ():
    raise ValueError(message(
        op, f"the learning-rate schedule must return a scalar, got shape {value.shape}.",
        hint="a schedule maps a step count to one learning rate, e.g. optax.cosine_decay_schedule"
        "(0.1, 1000)."))
  return value
