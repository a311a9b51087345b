"""`federax resume RUN_DIR`: continues a run from its latest checkpoint.

The run's `config.toml` fixes everything; `--rounds` may extend the run. Rounds after the
checkpoint that were already recorded are recomputed and their metrics replaced, so the run
ends exactly as an uninterrupted one would. `--rounds` below the rounds already done is
refused before anything is written, as is a run another process owns (`rundir.owned`).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib

from federax.cli import compilation_cache
from federax.cli import config as config_lib
from federax.cli import rundir
from federax.cli._errors import CLIError
from federax.cli._task import load_task
from federax.cli.experiment import run_experiment


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser("resume", help="continue a run from its latest checkpoint",
                                 description=__doc__.splitlines()[0])
  parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by federax train")
  parser.add_argument("--rounds", type=int, help="a new total number of rounds")
  parser.add_argument("-v", "--verbose", action="store_true", help="log every round's metrics")
  compilation_cache.add_argument(parser)
  parser.set_defaults(func=run, prog=parser.prog)


def run(args: argparse.Namespace) -> int:
  run_dir = pathlib.Path(args.run_dir).expanduser()
  if not (run_dir / rundir.CONFIG_FILE).is_file():
    raise CLIError(f"{run_dir} is not a run directory (no {rundir.CONFIG_FILE})")
  rundir.check_writable(run_dir)
  with rundir.owned(run_dir):  # Everything below, config.toml's rewrite included, is ours.
    config = rundir.read_config(run_dir)
    done = rundir.rounds_done(run_dir)
    if args.rounds is not None:
      config = dataclasses.replace(config, rounds=args.rounds)
      config_lib.validate(config)
    if config.rounds < done:
      given = (f"--rounds {args.rounds}" if args.rounds is not None
               else f"{rundir.CONFIG_FILE}'s rounds = {config.rounds}")
      raise CLIError(f"{given} is fewer than the {done} rounds already done (the latest "
                     f"checkpoint); give --rounds {done} or more (nothing was changed)")
    task = load_task(config)
    if args.rounds is not None:
      rundir.write_config(run_dir, config)
    return run_experiment(config, run_dir, task=task, verbose=args.verbose,
                          cache_dir=compilation_cache.resolve(args.compilation_cache))
