"""`run_training_process`: TFF's simulation training loop, resumable bit for bit.

    state = run_training_process(
        process, training_selection_fn, total_rounds=100,
        evaluation_fn=evaluate, evaluation_selection_fn=eval_clients, rounds_per_evaluation=10,
        program_state_manager=FileProgramStateManager('run/checkpoints'),
        rounds_per_saving_program_state=10,
        metrics_managers=[CSVFileReleaseManager('run/metrics.csv', key_fieldname='round')])

Round 0 evaluates the initial state and saves it; rounds 1..total_rounds train. A run whose
program state manager already holds a state resumes after the latest saved round: metrics
managers receive the rounds after it again (the CSV and TensorBoard managers replace what they
held for those rounds), so a killed and resumed run ends with the metrics and weights of an
uninterrupted one, provided the selection functions are functions of the round number (as
`build_client_selection_fn` and the samplers are) and the process keeps its randomness in its
state (as every federax learning process does).

A process with client states (`fx.program.ClientStateProcess`, which has a
`client_state_store`) has its store saved inside each checkpoint's directory
(`program_state_N/client_states/`, atomically with the state) and restored on resume, so every
client's state resumes bit for bit too.

Ctrl-C (SIGINT) finishes the running round, saves its state, and raises `KeyboardInterrupt`; a
second Ctrl-C interrupts at once (the state of the latest saved round is kept).

With a `privacy_accountant` (`fx.privacy.PrivacyAccountant`) every round's metrics gain
`privacy/epsilon` and `privacy/delta`, training stops before a round that would spend more than
the accountant's `target_epsilon`, and a resumed run restores the accountant to the completed
rounds, so it reports the epsilon of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Optional, Protocol

from federax._checks import check_int

__all__ = ["run_training_process", "PrivacyAccounting", "ROUND_NUMBER_KEY", "TRAINING_TIME_KEY",
           "EVALUATION_METRICS_PREFIX", "EVALUATION_TIME_KEY", "PRIVACY_METRICS_KEY"]

ROUND_NUMBER_KEY = "round_number"
TRAINING_TIME_KEY = "training_time_in_seconds"
EVALUATION_METRICS_PREFIX = "evaluation/"
EVALUATION_TIME_KEY = "evaluation_time_in_seconds"
PRIVACY_METRICS_KEY = "privacy"  # Released as privacy/epsilon and privacy/delta.
CLIENT_STATES_DIR = "client_states"  # Inside program_state_N/, for a process with client states.

_log = logging.getLogger(__name__)


class PrivacyAccounting(Protocol):
  """What the loop needs of a privacy accountant (`fx.privacy.PrivacyAccountant` is one).

  Declared here, duck-typed, so the program layer need not import the privacy layer above it.
  """

  delta: float
  target_epsilon: Optional[float]
  epsilon: float  # After the rounds composed so far.

  def check_sampler(self, sampler: Any) -> None:
    """Raises unless `sampler` (the selection's) samples as the accounting assumes."""

  def restore(self, rounds: int) -> Any:
    """Sets the accountant to `rounds` rounds composed."""

  def compose(self, rounds: int = 1) -> Any:
    """Composes `rounds` more rounds."""

  def epsilon_after(self, rounds: int) -> float:
    """The epsilon after `rounds` rounds in all."""


def _check_sampling(accountant: PrivacyAccounting, selection_fn: Callable) -> None:
  # `build_client_selection_fn` says how it samples; a selection function of one's own cannot.
  if hasattr(selection_fn, "sampler"):
    accountant.check_sampler(selection_fn.sampler)
  else:
    _log.warning("The training selection function does not say how it samples clients (it has "
                 "no `sampler`): the privacy accountant's sampling assumption is not checked.")


def _evaluate(evaluation_fn: Callable, selection_fn: Callable, state: Any, round_num: int) -> dict:
  start = time.perf_counter()
  metrics = dict(evaluation_fn(state, selection_fn(round_num)))
  metrics[EVALUATION_TIME_KEY] = time.perf_counter() - start
  return {EVALUATION_METRICS_PREFIX + k: v for k, v in metrics.items()}


class _Interrupt:
  """Defers the first SIGINT to the end of the running round; a second one interrupts at once."""

  def __init__(self):
    self.requested = False

  def _handle(self, signum, frame):
    if self.requested:
      raise KeyboardInterrupt
    self.requested = True
    _log.warning("Interrupt: finishing the current round and saving its state "
                 "(press Ctrl-C again to stop at once).")

  @contextlib.contextmanager
  def installed(self) -> Iterator[_Interrupt]:
    if threading.current_thread() is not threading.main_thread():
      yield self  # Signal handlers can only be set from the main thread.
      return
    previous = signal.signal(signal.SIGINT, self._handle)
    try:
      yield self
    finally:
      signal.signal(signal.SIGINT, previous)


def run_training_process(
    training_process: Any,
    training_selection_fn: Callable[[int], Any],
    total_rounds: int,
    evaluation_fn: Optional[Callable[[Any, Any], Any]] = None,
    evaluation_selection_fn: Optional[Callable[[int], Any]] = None,
    rounds_per_evaluation: int = 1,
    program_state_manager: Any = None,
    rounds_per_saving_program_state: int = 1,
    metrics_managers: Optional[Iterable[Any]] = None,
    privacy_accountant: Optional[PrivacyAccounting] = None) -> Any:
  """Runs `training_process` for `total_rounds` rounds, evaluating, saving and releasing metrics.

  Each round r in 1..total_rounds calls `training_process.next(state,
  training_selection_fn(r))` and releases to every metrics manager, with key r, the training
  metrics plus `round_number` and `training_time_in_seconds`, and on evaluation rounds (r a
  multiple of `rounds_per_evaluation`) `evaluation_fn(state, evaluation_selection_fn(r))`'s
  metrics and `evaluation_time_in_seconds`, prefixed with 'evaluation/'. Round 0 evaluates the
  initial state (key 0). The state is saved at round 0, every `rounds_per_saving_program_state`
  rounds and after the last round, after flushing the metrics managers (`flush()`), so the
  metrics of every round up to a checkpoint are on disk when it is.

  Args:
    training_process: an `IterativeProcess` (e.g. a `LearningProcess`) whose `next` returns
      `(state, metrics)`.
    training_selection_fn: `round_num -> client data` for `next` (a list of datasets).
    total_rounds: the number of training rounds, >= 1.
    evaluation_fn: optional `(state, client data) -> metrics mapping`.
    evaluation_selection_fn: `round_num -> client data` for `evaluation_fn`; required with it.
    rounds_per_evaluation: evaluate every this many rounds, >= 1.
    program_state_manager: optional `fx.program.ProgramStateManager`; when it holds a state,
      training resumes after its latest version.
    rounds_per_saving_program_state: save every this many rounds, >= 1.
    metrics_managers: `fx.program.ReleaseManager`s receiving each round's metrics.
    privacy_accountant: optional `fx.privacy.PrivacyAccountant` of the process's DP
      aggregation: adds `privacy/epsilon` and `privacy/delta` (user-level, after the round) to
      each round's metrics; with a `target_epsilon`, training stops (saving the state) before
      the round that would exceed it. It is checked against `training_selection_fn.sampler`
      (which `build_client_selection_fn` sets) and set to the completed rounds on resume.

  Returns:
    The state after round `total_rounds`, or after the last round the privacy budget allowed.

  Raises:
    TypeError: for a count that is not an int.
    ValueError: for a count < 1, `evaluation_fn` without `evaluation_selection_fn`, or a
      privacy accountant assuming another sampling than the selection's.
    KeyboardInterrupt: after Ctrl-C, once the running round's state is saved.

  Differences from TFF: a resumed run starts after the saved round (TFF 0.87 runs the saved
  round again), the final round is always saved, and SIGINT saves before stopping.
  """
  for name, value in (("total_rounds", total_rounds),
                      ("rounds_per_evaluation", rounds_per_evaluation),
                      ("rounds_per_saving_program_state", rounds_per_saving_program_state)):
    check_int(value, f"run_training_process({name}=...)", minimum=1)
  if (evaluation_fn is None) != (evaluation_selection_fn is None):
    raise ValueError("run_training_process expects evaluation_fn and evaluation_selection_fn "
                     "together, got only one of them.")
  managers = list(metrics_managers or ())
  if privacy_accountant is not None:
    _check_sampling(privacy_accountant, training_selection_fn)

  def release(metrics: dict, round_num: int) -> None:
    for manager in managers:
      manager.release(metrics, round_num)

  def save(state: Any, round_num: int) -> None:
    # Metrics first: a resumed run does not release the rounds up to its checkpoint again.
    for manager in managers:
      if hasattr(manager, "flush"):
        manager.flush()
    if client_states is None:
      program_state_manager.save(state, round_num)
    else:  # Inside the version's directory: saved (and kept or removed) with the state.
      program_state_manager.save(state, round_num, extras={CLIENT_STATES_DIR: client_states.save})

  client_states = getattr(training_process, "client_state_store", None)
  if client_states is not None and program_state_manager is not None and not hasattr(
      program_state_manager, "extras_path"):
    raise TypeError(f"run_training_process: a process with client states needs a program state "
                    f"manager that saves them with the state (a FileProgramStateManager); got "
                    f"{type(program_state_manager).__name__}.")
  initial_state = training_process.initialize()
  state, start_round, resumed = initial_state, 1, False
  if program_state_manager is not None:
    loaded, version = program_state_manager.load_latest(initial_state)
    if loaded is not None:
      state, start_round, resumed = loaded, version + 1, True
      if client_states is not None:  # Replaces whatever a killed run left in the store.
        client_states.restore(program_state_manager.extras_path(version, CLIENT_STATES_DIR))
      _log.info("Resuming after round %d from its saved state.", version)
  if privacy_accountant is not None:
    privacy_accountant.restore(start_round - 1)  # The completed rounds, composed at once.
  if not resumed:
    if evaluation_fn is not None:
      release(_evaluate(evaluation_fn, evaluation_selection_fn, state, 0), 0)
    if program_state_manager is not None:
      save(state, 0)
  saved = start_round - 1

  with _Interrupt().installed() as interrupt:
    for round_num in range(start_round, total_rounds + 1):
      if privacy_accountant is not None and _over_budget(privacy_accountant, round_num):
        if program_state_manager is not None and saved != round_num - 1:
          save(state, round_num - 1)
        break
      start = time.perf_counter()
      state, training_metrics = training_process.next(state, training_selection_fn(round_num))
      metrics = dict(training_metrics)
      metrics[TRAINING_TIME_KEY] = time.perf_counter() - start
      metrics[ROUND_NUMBER_KEY] = round_num
      if privacy_accountant is not None:
        privacy_accountant.compose()
        metrics[PRIVACY_METRICS_KEY] = {"epsilon": float(privacy_accountant.epsilon),
                                        "delta": float(privacy_accountant.delta)}
      if evaluation_fn is not None and round_num % rounds_per_evaluation == 0:
        metrics.update(_evaluate(evaluation_fn, evaluation_selection_fn, state, round_num))
      release(metrics, round_num)
      last = round_num == total_rounds
      if program_state_manager is not None and (
          last or interrupt.requested or round_num % rounds_per_saving_program_state == 0):
        save(state, round_num)
        saved = round_num
      if interrupt.requested and not last:
        raise KeyboardInterrupt(f"Interrupted after round {round_num}"
                                f"{'' if program_state_manager is None else ' (state saved)'}.")
  return state


def _over_budget(accountant: PrivacyAccounting, round_num: int) -> bool:
  """Whether round `round_num` would take epsilon past the accountant's target (logged)."""
  target = getattr(accountant, "target_epsilon", None)
  if target is None:
    return False
  after = accountant.epsilon_after(round_num)
  if after <= target:
    return False
  _log.warning("Privacy budget reached: stopping before round %d, which would spend epsilon "
               "%.4g > target %.4g (delta %.3g); the state after round %d is final (epsilon "
               "%.4g).", round_num, after, target, accountant.delta, round_num - 1,
               accountant.epsilon)
  return True
