"""The error every format reader raises for a file or record that is not in its format."""

from __future__ import annotations

from typing import Any, Optional


class DataFormatError(ValueError):
  """A data file, or a record in it, is not in the format its reader expects.

  The message names the file (and the client, feature or row where that helps), what was
  expected, what was found and how to fix it, on one line, so a command line can print it as
  is. A `ValueError`, as the readers raised before it existed.
  """


def data_format_error(where: str, problem: str, *, expected: Any = None, found: Any = None,
                      hint: Optional[str] = None) -> DataFormatError:
  """`DataFormatError("<where>: <problem>; expected <expected>, found <found>. <hint>")`.

  Example:
    >>> str(data_format_error("'a.json'", "user 'w' has no 'y'", expected="'x' and 'y'",
    ...                       found="['x']", hint="Regenerate the file."))
    "'a.json': user 'w' has no 'y'; expected 'x' and 'y', found ['x']. Regenerate the file."
  """
  text = f"{where}: {problem}"
  if expected is not None:
    text += f"; expected {expected}"
  if found is not None:
    text += f", found {found}" if expected is not None else f"; found {found}"
  text += "."
  if hint:
    text += f" {hint}"
  return DataFormatError(text)
