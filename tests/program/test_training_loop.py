"""run_training_process: the round schedule, resumption, evaluation, saving and SIGINT."""

import os
import signal

import pytest

from federax.program import run_training_process


class CountingProcess:
  """state -> state + sum(round's data); metrics record what each round saw."""

  def __init__(self):
    self.rounds_run = []

  def initialize(self):
    return 0

  def next(self, state, data):
    self.rounds_run.append(data)
    return state + sum(data), {"state_before": state, "data": sum(data)}


class DictStateManager:
  """An in-memory ProgramStateManager that refuses to overwrite a version."""

  def __init__(self, saved=None):
    self.saved = dict(saved or {})

  def get_versions(self):
    return sorted(self.saved) or None

  def save(self, state, version):
    assert version not in self.saved, f"version {version} overwritten"
    self.saved[version] = state

  def load_latest(self, structure):
    if not self.saved:
      return None, 0
    version = max(self.saved)
    return self.saved[version], version


class ListRelease:

  def __init__(self):
    self.released = []

  def release(self, value, key):
    self.released.append((key, dict(value)))


def select(round_num):
  return [round_num, 10 * round_num]


def test_runs_rounds_one_to_total_and_releases_each():
  process, manager = CountingProcess(), ListRelease()
  state = run_training_process(process, select, 4, metrics_managers=[manager])
  assert state == sum(11 * r for r in range(1, 5))
  assert [key for key, _ in manager.released] == [1, 2, 3, 4]
  first = manager.released[0][1]
  assert first["data"] == 11 and first["round_number"] == 1
  assert first["training_time_in_seconds"] >= 0


def test_evaluates_round_zero_and_every_k_rounds():
  manager = ListRelease()
  evaluated = []

  def evaluate(state, data):
    evaluated.append((state, data))
    return {"acc": state}

  run_training_process(CountingProcess(), select, 5, evaluation_fn=evaluate,
                       evaluation_selection_fn=lambda r: f"eval{r}", rounds_per_evaluation=2,
                       metrics_managers=[manager])
  assert [d for _, d in evaluated] == ["eval0", "eval2", "eval4"]
  by_round = dict(manager.released)
  assert by_round[0] == {"evaluation/acc": 0, "evaluation/evaluation_time_in_seconds":
                         by_round[0]["evaluation/evaluation_time_in_seconds"]}
  assert "evaluation/acc" in by_round[2] and "evaluation/acc" not in by_round[3]
  assert by_round[4]["evaluation/acc"] == 11 * (1 + 2 + 3 + 4)


def test_saves_round_zero_every_k_rounds_and_the_last():
  states = DictStateManager()
  run_training_process(CountingProcess(), select, 7, program_state_manager=states,
                       rounds_per_saving_program_state=3)
  assert states.get_versions() == [0, 3, 6, 7]
  assert states.saved[7] == sum(11 * r for r in range(1, 8))


def test_resumes_after_the_latest_saved_round_with_identical_results():
  full, full_metrics = CountingProcess(), ListRelease()
  final = run_training_process(full, select, 6, metrics_managers=[full_metrics])

  states = DictStateManager({0: 0, 3: 11 * (1 + 2 + 3)})
  resumed, resumed_metrics = CountingProcess(), ListRelease()
  state = run_training_process(resumed, select, 6, program_state_manager=states,
                               metrics_managers=[resumed_metrics])
  assert state == final
  assert resumed.rounds_run == [select(r) for r in (4, 5, 6)]
  assert [m["data"] for _, m in resumed_metrics.released] == \
      [m["data"] for _, m in full_metrics.released[3:]]


def test_resuming_a_finished_run_runs_nothing():
  states = DictStateManager({0: 0, 5: 123})
  process = CountingProcess()
  assert run_training_process(process, select, 5, program_state_manager=states) == 123
  assert process.rounds_run == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(total_rounds=0), r"\(total_rounds=...\) expects a positive int, got 0"),
    (dict(total_rounds=2, rounds_per_evaluation=0), "rounds_per_evaluation"),
    (dict(total_rounds=2, rounds_per_saving_program_state=-1), "rounds_per_saving"),
    (dict(total_rounds=2, evaluation_fn=lambda s, d: {}), "together"),
])
def test_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    run_training_process(CountingProcess(), select, **kwargs)


def test_sigint_finishes_the_round_saves_and_raises():
  states = DictStateManager()
  handler_before = signal.getsignal(signal.SIGINT)  # Ignored where the shell runs us detached.

  class InterruptedAtRound3(CountingProcess):
    def next(self, state, data):
      if len(self.rounds_run) == 2:
        os.kill(os.getpid(), signal.SIGINT)  # Delivered while "training" round 3.
      return super().next(state, data)

  process = InterruptedAtRound3()
  with pytest.raises(KeyboardInterrupt, match="after round 3"):
    run_training_process(process, select, 10, program_state_manager=states,
                         rounds_per_saving_program_state=100)
  assert len(process.rounds_run) == 3
  assert states.get_versions() == [0, 3]
  assert signal.getsignal(signal.SIGINT) is handler_before


def test_flushes_metrics_managers_before_each_checkpoint():
  log = []

  class Flushing(ListRelease):
    def flush(self):
      log.append(("flush", self.released[-1][0] if self.released else None))

  class Saving(DictStateManager):
    def save(self, state, version):
      log.append(("save", version))
      super().save(state, version)

  run_training_process(CountingProcess(), select, 4, program_state_manager=Saving(),
                       rounds_per_saving_program_state=2, metrics_managers=[Flushing()])
  assert log == [("flush", None), ("save", 0), ("flush", 2), ("save", 2), ("flush", 4),
                 ("save", 4)]
