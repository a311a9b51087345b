"""Errors that name the operator, the expected and actual types, and the user's line.

`format_message` writes every federax error message, so all of them read the same way:

    federated_sum: argument `value` must be placed at CLIENTS.
      expected: {T}@CLIENTS
      actual:   float32@SERVER
      hint: ...
      at /home/me/train.py:12: return fx.federated_sum(x)
"""

from __future__ import annotations

import linecache
import os
import sys
import types as pytypes
from typing import Any, Optional, Sequence

# federax/ itself, two levels up from federax/core/errors.py (the core imports nothing above it).
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SKIPPED_DIRS = (_PACKAGE_DIR, os.path.dirname(os.__file__))


def _is_library_frame(filename: str) -> bool:
  path = os.path.abspath(filename)
  return path.startswith(_SKIPPED_DIRS) or "site-packages/jax" in path or filename.startswith("<frozen")


def _is_library_code(code: pytypes.CodeType) -> bool:
  """Library code, or a method Python generated (a dataclass's `__init__` calling a federax
  `__post_init__`): the user's line is the one that called it."""
  generated = code.co_filename == "<string>" and code.co_name.startswith("__")
  return generated or _is_library_frame(code.co_filename)


def user_location() -> Optional[str]:
  """`file:line: code` of the innermost stack frame outside federax, JAX and the stdlib."""
  frame = sys._getframe(1)
  while frame is not None and _is_library_code(frame.f_code):
    frame = frame.f_back
  if frame is None:
    return None
  filename, line = frame.f_code.co_filename, frame.f_lineno
  code = linecache.getline(filename, line).strip()
  return f"{filename}:{line}: {code}" if code else f"{filename}:{line}"


def user_stacklevel() -> int:
  """The `warnings.warn` stacklevel that attributes a warning to the user's calling line."""
  frame, level = sys._getframe(1), 1
  while frame is not None and _is_library_code(frame.f_code):
    frame, level = frame.f_back, level + 1
  return level


# Structures can differ in many places; the first few are enough to find the mistake.
_MAX_DIFFERENCES = 8


def format_message(operator: str, problem: str, *, expected: Any = None, actual: Any = None,
                   differences: Sequence[tuple[str, Any, Any]] = (), details: Sequence[str] = (),
                   hint: Optional[str] = None, location: Optional[str] = None) -> str:
  """The text of every federax error: the operator and problem, then what was expected.

  Args:
    operator: the operator, computation or argument that rejected the input.
    problem: one sentence saying what is wrong.
    expected: what was expected; no `expected:` line when None (unknown or self-evident).
    actual: what was given; no `actual:` line when None. Given as the text "None" (the repr of
      a None the user passed), it reads "None (a NoneType)", never as if unknown.
    differences: `(path, expected, actual)` for each place where two structures differ; when
      given, they replace the `expected`/`actual` lines (only the first 8 are listed); a None
      there (a missing part) reads "nothing".
    details: further lines, e.g. the names the user may have meant.
    hint: how to fix it.
    location: the user's `file:line: code` (see `user_location`), if known.

  Returns:
    The message, one line per item, details indented under the first line.

  Example:
    >>> print(format_message("federated_sum", "argument `value` must be placed at CLIENTS.",
    ...                      expected="{T}@CLIENTS", actual="float32@SERVER",
    ...                      hint="broadcast it first"))
    federated_sum: argument `value` must be placed at CLIENTS.
      expected: {T}@CLIENTS
      actual:   float32@SERVER
      hint: broadcast it first
  """
  lines = [f"{operator}: {problem}"]
  if differences:
    for path, exp, act in differences[:_MAX_DIFFERENCES]:
      lines.append(f"  at {path}: expected {_part(exp)}, got {_part(act)}")
    if len(differences) > _MAX_DIFFERENCES:
      lines.append(f"  ... and {len(differences) - _MAX_DIFFERENCES} more differences")
  else:
    if expected is not None and str(expected) != "None":
      lines.append(f"  expected: {expected}")
    if actual is not None:
      lines.append(f"  actual:   {'None (a NoneType)' if str(actual) == 'None' else actual}")
  lines.extend(f"  {line}" for line in details)
  if hint:
    lines.append(f"  hint: {hint}")
  if location:
    lines.append(f"  at {location}")
  return "\n".join(lines)


def _part(value: Any) -> str:
  """One side of a difference: None (a part that is missing) reads "nothing"."""
  return "nothing" if value is None or str(value) == "None" else str(value)


def error(cls: type[Exception], operator: str, problem: str, *, expected: Any = None,
          actual: Any = None, differences: Sequence[tuple[str, Any, Any]] = (),
          details: Sequence[str] = (), hint: Optional[str] = None) -> Exception:
  """A `cls(...)` whose text is `format_message`'s, at the user's line (for `raise`)."""
  return cls(format_message(operator, problem, expected=expected, actual=actual,
                            differences=differences, details=details, hint=hint,
                            location=user_location()))


class FederatedTypeError(TypeError):
  """A federated operator was applied to a value of the wrong type or placement.

  Attributes:
    operator: the operator or computation that rejected its argument.
    location: the user's `file:line: code` where the misuse happened, if found.
  """

  def __init__(self, operator: str, problem: str, *, expected=None, actual=None,
               differences=(), hint: Optional[str] = None, location: Optional[str] = None):
    self.operator = operator
    self.location = location if location is not None else user_location()
    super().__init__(format_message(operator, problem, expected=expected, actual=actual,
                                    differences=differences, hint=hint, location=self.location))

  def __reduce__(self):
    # As raised (its message formatted once): pickle's default would call `__init__` with the
    # message alone. A Ray worker's error reaches the driver pickled.
    return _rebuild_error, (type(self), self.args, dict(self.__dict__))


def _rebuild_error(cls: type, args: tuple, state: dict) -> BaseException:
  error = cls.__new__(cls, *args)
  error.args = args
  error.__dict__.update(state)
  return error


class RaggedError(ValueError):
  """Values whose shapes differ cannot be stacked into one array.

  Raised for client values, sequence elements or dataset elements of different shapes (a smaller
  final batch, ragged data); `fx.simulation.RaggedElementsError` is this class.
  """


def failing_line(e: BaseException) -> Optional[str]:
  """`file:line: code` of the user's innermost line in `e`'s traceback, or None."""
  tb, last = without_library_frames(e.__traceback__), None
  while tb is not None:
    last, tb = tb, tb.tb_next
  if last is None:
    return None
  filename = last.tb_frame.f_code.co_filename
  return f"{filename}:{last.tb_lineno}: {linecache.getline(filename, last.tb_lineno).strip()}"


def without_library_frames(tb: Optional[pytypes.TracebackType]) -> Optional[pytypes.TracebackType]:
  """The traceback with federax's own frames removed, so the user sees their lines first."""
  frames = []
  while tb is not None:
    if not _is_library_code(tb.tb_frame.f_code):
      frames.append(tb)
    tb = tb.tb_next
  result = None
  for kept in reversed(frames):
    result = pytypes.TracebackType(result, kept.tb_frame, kept.tb_lasti, kept.tb_lineno)
  return result
