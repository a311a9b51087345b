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


class ArgumentParser(argparse.ArgumentParser):
  """argparse, with usage errors as one line (argparse prints the whole usage first)."""

  def error(self, message: str) -> NoReturn:
    print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
    sys.exit(USAGE_ERROR)
