"""The part of a top-level call every runtime shares: bind arguments, check, convert."""

from __future__ import annotations

from typing import Any, Optional

from federax.core import types as t
from federax.core.computations import Computation, FederatedComputation, LocalComputation
from federax.core.errors import FederatedTypeError, without_library_frames
from federax.runtime import _convert


def bind(comp: Computation, args: tuple, kwargs: dict) -> tuple[t.FunctionType, Any, Any]:
  """(type signature, Python argument matching its parameter, concrete local or None)."""
  sig = comp._signature
  name = comp.name
  packed = sig.pack(args, kwargs, name) if sig.names else ()
  if not sig.names and (args or kwargs):
    raise TypeError(f"{name} takes no arguments.")
  python_arg = None if not sig.names else (packed[0] if len(packed) == 1 else packed)
  if isinstance(comp, LocalComputation):
    if comp.is_polymorphic:
      parameter = sig.type_of_args(packed)
    else:
      parameter = comp.type_signature.parameter
    concrete = comp.concretize(parameter)
    return concrete.type_signature, python_arg, concrete
  if isinstance(comp, FederatedComputation):
    return comp.type_signature, python_arg, None
  raise TypeError(f"Not a computation: {comp!r}")


def convert_argument(comp: Computation, signature: t.FunctionType, python_arg: Any,
                     rep: _convert.Representation) -> tuple[Any, Optional[int]]:
  """The argument's payload in `rep`, and the number of clients it holds (None if none)."""
  if signature.parameter is None:
    return None, None
  counts: dict = {}
  name = comp.name
  where = "argument" if len(comp._signature.names) <= 1 else "arguments"
  try:
    payload = _convert.argument(python_arg, signature.parameter, rep, where, name, counts)
    return payload, _convert.check_counts(counts, name)
  except FederatedTypeError as e:
    raise e.with_traceback(without_library_frames(e.__traceback__)) from None

