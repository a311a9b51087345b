"""Entry point of the `federax` console script: one subparser per command module.

Each command module exposes `add_parser(subparsers)`, which registers its subparser and sets
`func=run`, and `run(args) -> int`, the exit status. A `CLIError` raised by `run` is printed as
one line (its lines joined) and exits with its status (2 unless it says otherwise).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Optional

from federax.cli import datasets_command, plot, resume, train
from federax.cli._errors import ArgumentParser, CLIError, one_line

COMMANDS = (train, resume, plot, datasets_command)


def build_parser() -> ArgumentParser:
  parser = ArgumentParser(prog="federax",
                          description="Federated learning on JAX: train, resume, plot, data sets.")
  subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
  for command in COMMANDS:
    command.add_parser(subparsers)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    return int(args.func(args) or 0)
  except CLIError as e:
    print(f"{getattr(args, 'prog', 'federax')}: error: {one_line(str(e))}", file=sys.stderr)
    return e.status


if __name__ == "__main__":
  sys.exit(main())
