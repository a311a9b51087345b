"""How a subcommand reports bad input: one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

USAGE_ERROR = 2


class CLIError(Exception):
  """Bad flags, configs or paths; `main` prints `federax <command>: error: <message>`.

  Args:
    message: one line saying what was expected and what was given.
    status: the exit status: 2 (bad usage, the default) or 1 (the run could not go on, e.g.
      an unreadable checkpoint).
  """

  def __init__(self, message: str, status: int = USAGE_ERROR):
    super().__init__(message)
    self.status = status


def one_line(text: str) -> str:
  """`text` on one line: indented lines (a list) joined by commas, the others by spaces.

  Example:
    >>> one_line("Not found. Looked for:\\n  /a/x.h5\\n  /b/x.h5\\nSet DATA_DIR.")
    'Not found. Looked for: /a/x.h5, /b/x.h5; Set DATA_DIR.'
  """
  out, in_list = "", False
  for line in str(text).splitlines():
    item = line.strip()
    if not item:
      continue
    indented = line[:1].isspace()
    separator = ", " if indented and in_list else "; " if in_list else " "
    out = f"{out}{separator}{item}" if out else item
    in_list = indented
  return out


class ArgumentParser(argparse.ArgumentParser):
  """argparse, with usage errors as one line (argparse prints the whole usage first)."""

  def error(self, message: str) -> NoReturn:
    print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
    sys.exit(USAGE_ERROR)
