"""One training run of `federax train`/`federax resume`: task, process, managers, loop, summary.

A run directory holds:

    config.toml      the resolved configuration (what `federax resume` reads)
    metrics.csv      one row per round: training metrics, and evaluation ones on their rounds
    events/          TensorBoard event files (the same metrics, plus timings)
    checkpoints/     program states (`fx.program.FileProgramStateManager`)
    metrics.png      loss and accuracy per round
    summary.json     the final figures, also printed as a table
    .lock            the pid of the process that owns (or last owned) the run (`rundir.owned`)

With `--runtime ray`, metrics.csv gains `clients_dropped` every round: the clients whose worker
died and that the drop policy (`--ray-min-clients-per-round`) left out of the round.

With `--dp-noise-multiplier` the run is DP-FedAvg (`federax.cli.dp`): metrics.csv gains
`privacy/epsilon` and `privacy/delta` every round, and the summary states the user-level
(epsilon, delta) spent.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import pathlib
import statistics
import time
from typing import Any, Optional

from federax import program
from federax.cli import compilation_cache, dp, plot
from federax.cli._divergence import DivergedError, StopWhenDiverged
from federax.cli._errors import CLIError
from federax.cli._ray_rounds import WithClientsDropped
from federax.cli._task import data_errors, load_task
from federax.cli.algorithms import build_learning_process
from federax.cli.config import TrainConfig
from federax.cli.progress import RoundProgress, print_table
from federax.learning.algorithms import build_fed_eval
from federax.learning.programs import build_evaluation_fn
from federax.program import training_loop
from federax.program.selection import build_client_selection_fn

_TIMING_KEYS = (training_loop.TRAINING_TIME_KEY, training_loop.EVALUATION_TIME_KEY,
                training_loop.ROUND_NUMBER_KEY)
INTERRUPTED = 130  # The shell's status for a process stopped by SIGINT.

_log = logging.getLogger("federax")


def _deterministic(path: tuple) -> bool:
  """Whether a metric belongs in metrics.csv: everything but timings, which vary run to run."""
  return not any(str(part).endswith(_TIMING_KEYS) for part in path)


class _ProgressRelease(program.ReleaseManager):
  """Feeds each round's metrics to the progress display."""

  def __init__(self, progress: RoundProgress):
    self._progress = progress

  def release(self, value: Any, key: Any) -> None:
    if key:
      self._progress.update(key, value)


def _managers(run_dir: pathlib.Path, progress: RoundProgress, verbose: bool) -> tuple[list, Any]:
  memory = program.MemoryReleaseManager()
  csv = program.CSVFileReleaseManager(run_dir / "metrics.csv", key_fieldname="round")
  managers = [program.FilteringReleaseManager(csv, _deterministic), memory,
              _ProgressRelease(progress)]
  try:
    managers.append(program.TensorBoardReleaseManager(run_dir / "events"))
  except ImportError as e:
    _log.warning("No TensorBoard events: %s", e)
  if verbose:
    managers.append(program.LoggingReleaseManager())
  return managers, memory


def _last(rows: list[dict], suffix: str, prefix: str) -> tuple[Any, Any]:
  """(round, value) of the last row with a column `prefix...suffix` filled in."""
  for row in reversed(rows):
    for column, value in row.items():
      if column.startswith(prefix) and column.endswith(suffix) and value not in ("", None):
        return int(row["round"]), float(value)
  return None, None


def _summary(config: TrainConfig, run_dir: pathlib.Path, memory: Any, seconds: float,
             plot_path: Any, compiles: compilation_cache.CompileCounter,
             cache_dir: Optional[pathlib.Path], dp_setup: Optional[dp.DpSetup] = None) -> dict:
  with open(run_dir / "metrics.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  times = [float(v[training_loop.TRAINING_TIME_KEY]) for k, v in memory.values().items() if k]
  summary = {"task": config.task, "algorithm": config.algorithm, "rounds": config.rounds,
             "run_dir": str(run_dir), "plot": None if plot_path is None else str(plot_path)}
  for name, prefix in (("train", "client_work/train/"), ("eval", "evaluation/")):
    for metric, suffix in (("loss", "/loss"), ("accuracy", "accuracy")):
      round_num, value = _last(rows, suffix, prefix)
      summary[f"{name}_{metric}"] = value
      summary[f"{name}_{metric}_round"] = round_num
  summary["rounds_this_session"] = len(times)
  summary["first_round_seconds"] = times[0] if times else None
  summary["median_round_seconds"] = statistics.median(times[1:]) if len(times) > 1 else None
  summary["wall_seconds"] = seconds
  summary["compilations"] = compiles.compilations
  summary["compilation_cache_hits"] = compiles.cache_hits
  summary["compilation_cache"] = None if cache_dir is None else str(cache_dir)
  accounted = [int(row["round"]) for row in rows if row.get(dp.EPSILON_COLUMN)]
  summary.update(dp.summary_fields(config, dp_setup, max(accounted, default=None)))
  return summary


def _print_summary(summary: dict) -> None:
  def fmt(value, digits=4):
    return "-" if value is None else f"{value:.{digits}f}"

  rows = [("task / algorithm", f"{summary['task']} / {summary['algorithm']}"),
          ("rounds", str(summary["rounds"]))]
  for name in ("train", "eval"):
    for metric in ("loss", "accuracy"):
      value, round_num = summary[f"{name}_{metric}"], summary[f"{name}_{metric}_round"]
      if value is not None:
        rows.append((f"{name} {metric}", f"{fmt(value)} (round {round_num})"))
  rows.extend(dp.summary_rows(summary))
  rows.append(("first round (compile)", f"{fmt(summary['first_round_seconds'], 2)} s"))
  rows.append(("median round", f"{fmt(summary['median_round_seconds'], 3)} s"))
  rows.append(("wall time", f"{summary['wall_seconds']:.1f} s"))
  cache = summary["compilation_cache"]
  rows.append(("XLA compilations", f"{summary['compilations']}, "
               + (f"{summary['compilation_cache_hits']} programs from the cache ({cache})"
                  if cache else "compilation cache off")))
  rows.append(("run directory", summary["run_dir"]))
  if summary["plot"]:
    rows.append(("plot", summary["plot"]))
  print_table("federax train: summary", ("", "value"), rows)


def _evaluation_fn(config: TrainConfig, task: Any, process: Any) -> Any:
  """Federated evaluation on sampled test clients; with `centralized_eval`, also on all test
  data pooled into one dataset (metrics `evaluation/centralized/...`)."""
  evaluate = build_evaluation_fn(build_fed_eval(task.model_fn), process.get_model_weights)
  if not config.centralized_eval:
    return evaluate
  pooled = [task.datasets.get_centralized_test_data()]

  def evaluate_both(state: Any, client_data: Any) -> dict:
    metrics = dict(evaluate(state, client_data))
    # One "client" holding everything: federated evaluation's own code, centralized data.
    metrics["centralized"] = evaluate(state, pooled)["client_work"]["eval"][
        "current_round_metrics"]
    return metrics

  return evaluate_both


def keep_total(keep_checkpoints: int) -> int:
  """`FileProgramStateManager`'s `keep_total` (which counts the first) for `--keep-checkpoints`
  (which does not): the first checkpoint plus the `keep_checkpoints` latest; 0 keeps all."""
  return keep_checkpoints + 1 if keep_checkpoints > 0 else 0


def run_experiment(config: TrainConfig, run_dir: pathlib.Path, *, task: Any = None,
                   verbose: bool = False, cache_dir: Optional[pathlib.Path] = None) -> int:
  """Trains (or resumes) the run in `run_dir`, with JAX's persistent compilation cache in
  `cache_dir` (None: off); returns the exit status.

  `task` is the run's task when already loaded (and checked) by `_task.load_task`."""
  with (compilation_cache.enabled(cache_dir) as in_use,
        compilation_cache.CompileCounter() as compiles, _run_runtime(config)):
    return _run(config, run_dir, task, verbose, in_use, compiles)


@contextlib.contextmanager
def _run_runtime(config: TrainConfig):
  """The run's runtime as the default while it trains, the previous default restored after it
  (a process that trains twice, as tests do, keeps its own): Ray's with `runtime = "ray"`, the
  sequential one with `"sequential"`; with DP on the vectorized runtime, one that pads the
  cohorts (Poisson cohorts vary in size: padded, they share programs)."""
  import federax as fx
  previous = fx.runtime.get_default()
  if config.runtime == "ray":
    policy = {name: value for name, value in (
        ("max_retries", config.ray_max_retries),
        ("min_clients_per_round", config.ray_min_clients_per_round),
        ("straggler_timeout_s", config.ray_straggler_timeout)) if value is not None}
    try:
      runtime = fx.runtime.ray(config.ray_address, num_workers=config.ray_workers, **policy)
    except (ImportError, ConnectionError, TimeoutError) as e:
      raise CLIError(f"--runtime ray: {e}") from None
  elif config.runtime == "sequential":
    runtime = fx.runtime.sequential()
  elif config.dp:
    runtime = fx.runtime.vectorized(pad_clients=True)
  else:
    runtime = previous
  fx.runtime.set_default(runtime)
  try:
    yield
  finally:
    fx.runtime.set_default(previous)


def _run(config: TrainConfig, run_dir: pathlib.Path, task: Any, verbose: bool,
         cache_dir: Optional[pathlib.Path], compiles: compilation_cache.CompileCounter) -> int:
  import federax as fx
  start = time.perf_counter()
  task = load_task(config) if task is None else task
  datasets = task.datasets
  dp_setup = dp.build(config, datasets.train_data.client_ids)
  process = build_learning_process(config, task.model_fn,
                                   None if dp_setup is None else dp_setup.aggregator)
  if fx.runtime.get_default().name == "ray":  # Each round's clients left out by the policy.
    process = WithClientsDropped(process, fx.runtime.get_default())
  if dp_setup is None:
    train_select = build_client_selection_fn(
        datasets.train_data, config.clients_per_round, datasets.train_preprocess_fn,
        seed=config.seed)
  else:  # Poisson sampling, as the accountant assumes (and run_training_process checks).
    train_select = build_client_selection_fn(
        datasets.train_data, None, datasets.train_preprocess_fn, seed=config.seed,
        sampler=dp_setup.sampler)
  eval_clients = config.eval_clients or None
  if eval_clients is not None and eval_clients >= len(datasets.test_data.client_ids):
    eval_clients = None
  eval_select = build_client_selection_fn(
      datasets.test_data, eval_clients, datasets.eval_preprocess_fn, seed=config.seed + 1)
  evaluate = _evaluation_fn(config, task, process)
  state_manager = program.FileProgramStateManager(
      run_dir / "checkpoints", keep_total=keep_total(config.keep_checkpoints), keep_first=True)
  versions = state_manager.get_versions() or []
  first_round = (max(versions) + 1) if versions else 1
  with RoundProgress(config.rounds, start_round=first_round) as progress:
    managers, memory = _managers(run_dir, progress, verbose)
    try:
      with data_errors():  # Clients' data are read as they are sampled.
        training_loop.run_training_process(
            StopWhenDiverged(process, first_round,
                             lambda: max(state_manager.get_versions() or [0])),
            train_select, config.rounds, evaluation_fn=evaluate,
            evaluation_selection_fn=eval_select, rounds_per_evaluation=config.eval_every,
            program_state_manager=state_manager,
            rounds_per_saving_program_state=config.checkpoint_every, metrics_managers=managers,
            privacy_accountant=None if dp_setup is None else dp_setup.accountant)
    except (program.ProgramStateError, program.ProgramStateNotFoundError, DivergedError) as e:
      raise CLIError(" ".join(str(e).split()), status=1) from None
    except OSError as e:  # A full disk, a file made read-only meanwhile, ...
      where = f"{os.fspath(e.filename)!r}: " if e.filename else ""
      raise CLIError(f"the run stopped: {where}{e.strerror or e}", status=1) from None
    except KeyboardInterrupt:
      saved = max(state_manager.get_versions() or [0])
      print(f"Interrupted; the state after round {saved} is saved. Continue with: "
            f"federax resume {run_dir}")
      return INTERRUPTED
    finally:
      for manager in managers:
        if hasattr(manager, "close"):
          manager.close()
  plot_path = None
  try:
    plot_path = plot.plot_runs([run_dir], run_dir / "metrics.png")
  except CLIError as e:
    _log.warning("No plot: %s", e)
  summary = _summary(config, run_dir, memory, time.perf_counter() - start, plot_path, compiles,
                     cache_dir, dp_setup)
  (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
  _print_summary(summary)
  return 0
