"""`Sequence`: what a local computation receives for a `T*` parameter (tf.data's reduce and map).

TFF hands a `tff.tensorflow.computation` a `tf.data.Dataset`; code ported from TFF calls
`dataset.reduce(initial_state, reduce_func)` on it. A federax local computation gets a
`Sequence` with the same `reduce` and `map`, whose loops run where the runtime keeps the data:
a Python loop over a list of elements (the sequential runtime, and type inference at
definition), or the execution's compiled loop over a padded sequence that skips the padding
(the vectorized runtime's `Execution.sequence_reduce` / `sequence_map`). A `for` loop over a
padded sequence raises `SequenceIterationError`; `federax.core.loops` then rewrites it as a
`reduce` where it can.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from federax.core import types as t
from federax.core.errors import FederatedTypeError, failing_line
from federax.core.execution import Execution
from federax.core.rows import RowMasked, RowMaskNotHonoured, holds_padded, padded_tensors
from federax.core.type_conversions import make_container, map_structure, type_of

_SUPPORTED = ("reduce(initial_state, reduce_func), map(map_func), element_spec, and iteration "
              "(`for x in sequence:` compiles as a reduce, federax.core.loops)")


_iterations: contextvars.ContextVar[Optional[list]] = contextvars.ContextVar(
    "federax_sequence_iterations", default=None)


@contextlib.contextmanager
def recording_iterations():
  """Yields a list that gets an entry each time a sequence is iterated in the block (type
  inference evaluates again, with another length, only a function that iterates)."""
  token = _iterations.set([])
  try:
    yield _iterations.get()
  finally:
    _iterations.reset(token)


class SequenceIterationError(FederatedTypeError):
  """A compiled local computation iterated a sequence whose length is known only at run time.

  The vectorized runtime catches it and runs the call on the sequential runtime.
  `federax.core.loops` first tries to compile a `for` loop; `reason` says why it could not.
  """

  reason: Optional[str] = None


class Sequence:
  """A local computation's `T*` argument: tf.data's `reduce` and `map`, and iteration.

  Example:
    >>> @fx.computation(fx.SequenceType(np.float32))
    ... def get_local_temperature_average(local_temperatures):
    ...   sum_and_count = local_temperatures.reduce((0.0, 0), lambda x, y: (x[0] + y, x[1] + 1))
    ...   return sum_and_count[0] / jnp.asarray(sum_and_count[1], jnp.float32)
    >>> str(get_local_temperature_average.type_signature)
    '(float32* -> float32)'
    >>> float(get_local_temperature_average([68.5, 70.3, 69.8]))
    69.5333...
  """

  __slots__ = ("type_signature", "_payload", "_execution")

  def __init__(self, payload: Any, type_signature: t.SequenceType,
               execution: Optional[Execution]):
    self.type_signature = type_signature
    self._payload = payload
    self._execution = execution

  def __repr__(self) -> str:
    return f"<fx.Sequence {self.type_signature}>"

  @property
  def payload(self) -> Any:
    """The runtime's form of the sequence (a list of element payloads, or a padded form)."""
    return self._payload

  @property
  def element_spec(self) -> Any:
    """The structure of one element, in the element's container, with `fx.TensorType` leaves."""
    return _spec(self.type_signature.element)

  def reduce(self, initial_state: Any, reduce_func: Callable[[Any, Any], Any]) -> Any:
    """Folds the elements into a state: `reduce_func(state, element)` from `initial_state`.

    `reduce_func` must return a state of `initial_state`'s type, as tf.data's `reduce` requires.
    Returns the final state in `initial_state`'s container.
    """
    state_type = _local_type("reduce", "initial_state", initial_state)
    element_type = self.type_signature.element

    def step(state_and_element):
      state, element = state_and_element
      if isinstance(element, RowMasked):  # A batch padded with zero rows (federax.core.rows).
        out = _on_padded_batch(reduce_func, to_user(state, state_type),
                               to_user(padded_tensors(element, element_type), element_type))
      else:
        out = reduce_func(to_user(state, state_type), to_user(element, element_type))
      actual = _local_type("reduce", "the result of reduce_func", out)
      if not state_type.is_equivalent_to(actual):
        raise FederatedTypeError(
            "reduce", "`reduce_func` must return the state's type (the type of `initial_state`).",
            differences=t.differences(state_type, actual) or [("(value)", str(state_type),
                                                               str(actual))],
            hint="cast the result, or start from a state of the type the function returns")
      return to_payload(out, state_type)

    zero = to_payload(initial_state, state_type)
    if isinstance(self._payload, list):
      state = zero
      for element in self._payload:
        state = step((state, element))
    else:
      state = self._runtime("reduce").sequence_reduce(self._payload, zero, step)
    return to_user(state, state_type)

  def map(self, map_func: Callable) -> Sequence:
    """The sequence of `map_func(element)`; a tuple element is passed as positional arguments,
    as tf.data does."""
    element_type = self.type_signature.element
    results: list[t.Type] = []

    def fn(element):
      user = to_user(element, element_type)
      out = map_func(*user) if type(user) is tuple else map_func(user)
      results.append(_local_type("map", "the result of map_func", out))
      return to_payload(out, results[-1])

    if isinstance(self._payload, list):
      payload = [fn(e) for e in self._payload]
    else:
      payload = self._runtime("map").sequence_map(fn, self._payload)
    if not results:  # No element: the result type from an element of the declared type.
      jax.eval_shape(fn, _abstract_element(element_type))
    return Sequence(payload, t.SequenceType(results[0]), self._execution)

  def __iter__(self):
    if not isinstance(self._payload, list):
      raise SequenceIterationError(
          "Sequence", "iterating a sequence in a compiled local computation is not exact: its "
          "length is known only when the program runs.", actual=self.type_signature,
          hint="fold it with reduce(initial_state, reduce_func), which skips the padding, or run "
          "on fx.runtime.sequential()")
    recorded = _iterations.get()
    if recorded is not None:
      recorded.append(self.type_signature)
    element_type = self.type_signature.element
    return (to_user(e, element_type) for e in self._payload)

  def __getattr__(self, name: str):
    if name.startswith("_"):
      raise AttributeError(name)
    raise AttributeError(f"fx.Sequence has no {name!r}; a local computation's sequence supports "
                         f"{_SUPPORTED}.")

  def _runtime(self, op: str) -> Execution:
    if self._execution is None:
      raise RuntimeError(f"Sequence.{op}: no execution holds this padded sequence (a federax bug).")
    return self._execution


def _on_padded_batch(reduce_func: Callable, state: Any, batch: Any) -> Any:
  """`reduce_func(state, batch)` for a batch whose padded tensors are `PaddedTensor`s; any
  error it meets (JAX refusing a `PaddedTensor`, say) is a `RowMaskNotHonoured`, so the runtime
  runs the call on the real batches, where a genuine error is raised again as it is."""
  try:
    out = reduce_func(state, batch)
  except (RowMaskNotHonoured, SequenceIterationError):
    raise
  except Exception as e:  # pylint: disable=broad-except
    where = failing_line(e)
    raise RowMaskNotHonoured(reason="reduces over the rows of a batch and does not mask padded "
                             f"rows ({type(e).__name__}{f' at {where}' if where else ''})"
                             ) from e
  if holds_padded(out):
    raise RowMaskNotHonoured(reason="keeps a padded batch's tensor in its state")
  return out


def _local_type(op: str, what: str, value: Any) -> t.Type:
  try:
    ts = type_of(value)
  except TypeError as e:
    raise FederatedTypeError(op, f"{what} must be tensors or structures of tensors ({e}).",
                             actual=type(value).__name__) from None
  if t.contains(ts, lambda x: not isinstance(x, (t.TensorType, t.StructType))):
    raise FederatedTypeError(op, f"{what} must be tensors or structures of tensors.", actual=ts)
  return ts


def to_user(payload: Any, ts: t.Type, execution: Optional[Execution] = None) -> Any:
  """A payload in the user's containers; sequences become `Sequence`s run by `execution`.

  Raises:
    RowMaskNotHonoured: for a batch a runtime padded with zero rows (`federax.core.rows`):
      only a computation declared with `row_mask=` takes one, not `reduce`'s function.
  """
  if isinstance(payload, RowMasked):
    raise RowMaskNotHonoured()
  if isinstance(ts, t.SequenceType):
    return Sequence(payload, ts, execution)
  if isinstance(ts, t.StructType):
    return make_container(tuple(to_user(p, et, execution) for p, et in zip(payload, ts)), ts)
  return payload


def to_payload(value: Any, ts: t.Type) -> Any:
  """A user's value of type `ts` in the internal tuple form, tensors as JAX arrays of its dtypes."""
  if isinstance(ts, t.SequenceType):
    if not isinstance(value, Sequence):
      raise TypeError(f"expected a sequence (fx.Sequence), got {type(value).__name__}")
    return value.payload
  if isinstance(ts, t.StructType) and t.contains(ts, lambda x: isinstance(x, t.SequenceType)):
    from federax.core.type_conversions import elements_of
    return tuple(to_payload(v, et) for v, et in zip(elements_of(value, ts), ts))
  return map_structure(lambda tt, x: jnp.asarray(x, dtype=tt.dtype), ts, value, to_user=False)


def _spec(ts: t.Type) -> Any:
  if isinstance(ts, t.StructType):
    return make_container(tuple(_spec(e) for e in ts), ts)
  return ts


def _abstract_element(ts: t.Type) -> Any:
  """An abstract element of `ts`; an unknown dimension is 0."""
  if isinstance(ts, t.TensorType):
    return jax.ShapeDtypeStruct(tuple(d or 0 for d in ts.shape), ts.dtype)
  return tuple(_abstract_element(e) for e in ts)
