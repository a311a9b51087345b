"""`federax train`: a federated training run on a baseline task, into a new run directory.

    federax train                                   # FedAvg on FedProx's Synthetic(1,1)
    federax train --task emnist --algorithm fedadam --server-lr 0.01 --data-dir DIR
    federax train --config experiment.toml --seed 3
    federax train --dp-noise-multiplier 1.0 --dp-clip adaptive --dp-target-epsilon 8
    federax train --runtime ray --ray-address HEAD:6379 --ray-workers 8
"""

from __future__ import annotations

import argparse
import datetime
import pathlib

from federax.cli import compilation_cache
from federax.cli import config as config_lib
from federax.cli import dp, rundir
from federax.cli._errors import CLIError
from federax.cli._task import load_task
from federax.cli.algorithms import ALGORITHMS
from federax.cli.experiment import run_experiment

DEFAULT_RUNS_DIR = "runs"

_HELP = {
    "task": f"the baseline task: {', '.join(config_lib.TASKS)} (default: synthetic)",
    "algorithm": f"{', '.join(ALGORITHMS)} (default: fedavg)",
    "rounds": "training rounds",
    "clients_per_round": "clients sampled per round",
    "epochs": "local epochs per round",
    "batch_size": "local batch size",
    "max_elements": "at most this many examples per client and round (default: all)",
    "client_lr": "client SGD learning rate",
    "server_lr": "server optimizer learning rate",
    "server_momentum": "server momentum of fedavgm (default: 0.9)",
    "proximal_strength": "the proximal term's mu for fedprox (default: 0.01)",
    "seed": "seeds sampling, shuffling and model randomness (default: 0)",
    "runtime": "vectorized (default), sequential, or ray (clients sharded over Ray workers; "
               "pip install 'federax[ray]')",
    "ray_address": "with --runtime ray: the Ray cluster's head, HOST:PORT (default: a local "
                   "Ray on 127.0.0.1)",
    "ray_workers": "with --runtime ray: worker processes (default: the cluster's CPUs)",
    "ray_max_retries": "with --runtime ray: replays of a dead worker's clients on another "
                       "worker before they are dropped or the round fails (default: 2)",
    "ray_min_clients_per_round": "with --runtime ray: drop a dead worker's clients (after "
                                 "their retries) if at least K clients remain, counted in "
                                 "metrics.csv's clients_dropped (default: the round fails)",
    "ray_straggler_timeout": "with --runtime ray: seconds a worker's clients may take between "
                             "two aggregations; a worker past it is killed and its clients "
                             "retried or dropped as a dead worker's (default: no limit)",
    "data_dir": "directory of the task's data (FEMNIST LEAF or Shakespeare HDF5 files)",
    "out": f"run directory (default: {DEFAULT_RUNS_DIR}/TASK-ALGORITHM-TIME)",
    "eval_every": "rounds between federated evaluations",
    "eval_clients": "test clients per evaluation (0: all)",
    "centralized_eval": "also evaluate on all test data pooled, as one dataset",
    "checkpoint_every": "rounds between checkpoints (default: 10; the last is always saved)",
    "keep_checkpoints": "the latest checkpoints kept besides the first (default: 5; 0 keeps "
                        "all)",
    "dp_noise_multiplier": "differentially private training (DP-FedAvg, unweighted, Poisson "
                           "sampling at rate clients-per-round / clients): the Gaussian noise's "
                           "standard deviation over the clip",
    "dp_clip": "the L2 clip of each client's update, or 'adaptive' (default: adaptive, TFF's "
               "dp_aggregator)",
    "dp_delta": "the delta of the reported (epsilon, delta) (default: 1 / clients^1.1)",
    "dp_target_epsilon": "stop before the round that would spend more epsilon",
    "dp_accountant": "rdp (default) or pld",
}
_METAVARS = {"ray_address": "ADDR", "ray_workers": "N", "ray_max_retries": "N",
             "ray_min_clients_per_round": "K", "ray_straggler_timeout": "S",
             "dp_noise_multiplier": "Z",
             "dp_clip": "C|adaptive", "dp_delta": "D", "dp_target_epsilon": "E"}
_TYPES = {**{n: int for n in config_lib.INT_FIELDS},
          **{n: float for n in config_lib.FLOAT_FIELDS},
          **{n: str for n in config_lib.STR_FIELDS},
          **{n: bool for n in config_lib.BOOL_FIELDS},
          **{n: str for n in config_lib.CLIP_FIELDS}}


def _number(kind: type):
  """An argparse type that names the expected type in its one-line error."""
  def convert(text: str):
    try:
      return kind(text)
    except ValueError:
      raise argparse.ArgumentTypeError(
          f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
  return convert


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser(
      "train", help="train a model federatedly on a baseline task",
      description="Federated training on a baseline task. Flags override --config's settings, "
                  "which override the task's defaults.",
      epilog="task defaults: " + "; ".join(
          f"{task}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in defaults.items())
          for task, defaults in config_lib.TASK_DEFAULTS.items()))
  parser.add_argument("--config", metavar="FILE.toml", help="settings from a TOML file")
  for name in config_lib.FIELDS:
    flag = "--" + name.replace("_", "-")
    kind = _TYPES[name]
    if name == "task":
      parser.add_argument(flag, choices=config_lib.TASKS, help=_HELP[name])
    elif name == "algorithm":
      parser.add_argument(flag, choices=ALGORITHMS, help=_HELP[name])
    elif name == "runtime":
      parser.add_argument(flag, choices=config_lib.RUNTIMES, help=_HELP[name])
    elif name == "dp_accountant":
      parser.add_argument(flag, choices=config_lib.DP_ACCOUNTANTS, help=_HELP[name])
    elif name in config_lib.BOOL_FIELDS:
      parser.add_argument(flag, action="store_const", const=True, help=_HELP[name])
    else:
      parser.add_argument(flag, dest=name, type=str if kind is str else _number(kind),
                          metavar=_METAVARS.get(name, name.upper()), help=_HELP[name])
  parser.add_argument("-v", "--verbose", action="store_true", help="log every round's metrics")
  compilation_cache.add_argument(parser)
  parser.set_defaults(func=run, prog=parser.prog)


def new_run_dir(config: config_lib.TrainConfig) -> pathlib.Path:
  """`config.out`, which must not hold a run yet, or a fresh `runs/TASK-ALGORITHM-TIME`."""
  if config.out is not None:
    run_dir = pathlib.Path(config.out).expanduser()
    if (run_dir / rundir.CONFIG_FILE).exists():
      raise CLIError(f"{run_dir} already holds a run; continue it with `federax resume "
                     f"{run_dir}` or choose another --out")
    if run_dir.exists() and not run_dir.is_dir():
      raise CLIError(f"--out {run_dir} exists and is not a directory")
  else:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = pathlib.Path(DEFAULT_RUNS_DIR) / f"{config.task}-{config.algorithm}-{stamp}"
    run_dir, n = base, 1
    while run_dir.exists():
      n += 1
      run_dir = base.with_name(f"{base.name}-{n}")
  try:
    run_dir.mkdir(parents=True, exist_ok=True)
  except OSError as e:  # Under a file, in a read-only directory, ...
    existing = run_dir.parent
    while not existing.exists() and existing != existing.parent:
      existing = existing.parent
    why = (f"{existing} is not a directory" if not existing.is_dir()
           else f"{e.strerror or e} (in {existing})")
    raise CLIError(f"cannot create the run directory {run_dir}: {why}; choose another "
                   "--out") from None
  rundir.check_writable(run_dir)
  return run_dir


def run(args: argparse.Namespace) -> int:
  file_settings = config_lib.read_toml(args.config) if args.config else {}
  flags = {name: getattr(args, name) for name in config_lib.FIELDS}
  config = config_lib.resolve(file_settings, flags)
  dp.build_aggregator(config)  # Refuses DP settings the aggregator refuses, before any writing.
  task = load_task(config)  # Refuses missing data, or settings the data cannot serve.
  run_dir = new_run_dir(config)
  with rundir.owned(run_dir):
    if (run_dir / rundir.CONFIG_FILE).exists():  # Another train got there first.
      raise CLIError(f"{run_dir} already holds a run; choose another --out")
    rundir.write_config(run_dir, config)
    return run_experiment(config, run_dir, task=task, verbose=args.verbose,
                          cache_dir=compilation_cache.resolve(args.compilation_cache))
