"""Errors that name the operator, the expected and actual types, and the user's line."""

from __future__ import annotations

import linecache
import os
import sys
import types as pytypes
from typing import Optional

import federax

_PACKAGE_DIR = os.path.dirname(os.path.abspath(federax.__file__))
_SKIPPED_DIRS = (_PACKAGE_DIR, os.path.dirname(os.__file__))


def _is_library_frame(filename: str) -> bool:
  path = os.path.abspath(filename)
  return path.startswith(_SKIPPED_DIRS) or "site-packages/jax" in path or filename.startswith("<frozen")


def user_location() -> Optional[str]:
  """`file:line: code` of the innermost stack frame outside federax, JAX and the stdlib."""
  frame = sys._getframe(1)
  while frame is not None and _is_library_frame(frame.f_code.co_filename):
    frame = frame.f_back
  if frame is None:
    return None
  filename, line = frame.f_code.co_filename, frame.f_lineno
  code = linecache.getline(filename, line).strip()
  return f"{filename}:{line}: {code}" if code else f"{filename}:{line}"


def user_stacklevel() -> int:
  """The `warnings.warn` stacklevel that attributes a warning to the user's calling line."""
  frame, level = sys._getframe(1), 1
  while frame is not None and _is_library_frame(frame.f_code.co_filename):
    frame, level = frame.f_back, level + 1
  return level


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
    lines = [f"{operator}: {problem}"]
    if differences:
      for path, exp, act in differences[:8]:
        lines.append(f"  at {path}: expected {exp}, got {act}")
      if len(differences) > 8:
        lines.append(f"  ... and {len(differences) - 8} more differences")
    elif expected is not None or actual is not None:
      lines.append(f"  expected: {expected}")
      lines.append(f"  actual:   {actual}")
    if hint:
      lines.append(f"  hint: {hint}")
    if self.location:
      lines.append(f"  at {self.location}")
    super().__init__("\n".join(lines))


def without_library_frames(tb: Optional[pytypes.TracebackType]) -> Optional[pytypes.TracebackType]:
  """The traceback with federax's own frames removed, so the user sees their lines first."""
  frames = []
  while tb is not None:
    if not _is_library_frame(tb.tb_frame.f_code.co_filename):
      frames.append(tb)
    tb = tb.tb_next
  result = None
  for kept in reversed(frames):
    result = pytypes.TracebackType(result, kept.tb_frame, kept.tb_lasti, kept.tb_lineno)
  return result
