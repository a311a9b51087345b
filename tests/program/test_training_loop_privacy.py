"""run_training_process with a privacy accountant: (epsilon, delta) every round, the same after
a resume, a stop at the target epsilon, and the sampling checked against the accounting's."""

import logging

import dp_accounting as dpa
import numpy as np
import pytest

import federax as fx
from federax.privacy import PrivacyAccountant, Sampling
from federax.program import MemoryReleaseManager, build_client_selection_fn, run_training_process

POPULATION, RATE, Z = 200, 0.05, 1.0
IDS = [f"client{i}" for i in range(POPULATION)]


class CohortSizeProcess:
  """state -> state + the cohort's size; a stand-in for a DP learning process."""

  def initialize(self):
    return np.int64(0)

  def next(self, state, cohort):
    return state + len(cohort), {"cohort": len(cohort)}


class DictStateManager:
  """An in-memory ProgramStateManager that refuses to overwrite a version."""

  def __init__(self):
    self.saved = {}

  def save(self, state, version):
    assert version not in self.saved, f"version {version} overwritten"
    self.saved[version] = state

  def load_latest(self, structure):
    if not self.saved:
      return None, 0
    return self.saved[max(self.saved)], max(self.saved)


def poisson_select():
  sampler = fx.simulation.PoissonSampler(IDS, RATE, seed=0)
  select = lambda round_num: sampler.sample(round_num)  # noqa: E731
  select.sampler = sampler  # As build_client_selection_fn's functions say how they sample.
  return select


def accountant(kind="rdp", **kwargs):
  return PrivacyAccountant(dpa.GaussianDpEvent(Z), Sampling.poisson(RATE, POPULATION),
                           accountant=kind, delta=1e-5, **kwargs)


def reference(rounds):
  event = dpa.PoissonSampledDpEvent(RATE, dpa.GaussianDpEvent(Z))
  return dpa.rdp.RdpAccountant().compose(event, rounds).get_epsilon(1e-5)


def released_privacy(memory):
  return {round_num: (m["privacy"]["epsilon"], m["privacy"]["delta"])
          for round_num, m in memory.values().items()}


def test_each_round_reports_the_epsilon_and_delta_spent_so_far():
  memory = MemoryReleaseManager()
  run_training_process(CohortSizeProcess(), poisson_select(), 4, metrics_managers=[memory],
                       privacy_accountant=accountant())
  privacy = released_privacy(memory)
  assert sorted(privacy) == [1, 2, 3, 4]
  for round_num, (epsilon, delta) in privacy.items():
    assert epsilon == pytest.approx(reference(round_num), rel=1e-10) and delta == 1e-5
  assert fx.program.flatten(memory.values()[4])["privacy/epsilon"] == privacy[4][0]


@pytest.mark.parametrize("kind, rel", [("rdp", 1e-12), ("pld", 1e-7)])
def test_a_resumed_run_reports_the_epsilon_of_an_uninterrupted_one(kind, rel):
  whole = MemoryReleaseManager()
  run_training_process(CohortSizeProcess(), poisson_select(), 6, metrics_managers=[whole],
                       privacy_accountant=accountant(kind))
  states, first, second = DictStateManager(), MemoryReleaseManager(), MemoryReleaseManager()
  run_training_process(CohortSizeProcess(), poisson_select(), 3, program_state_manager=states,
                       metrics_managers=[first], privacy_accountant=accountant(kind))
  # A new program, as after a crash: a fresh accountant, restored to the 3 completed rounds.
  final = run_training_process(CohortSizeProcess(), poisson_select(), 6,
                               program_state_manager=states, metrics_managers=[second],
                               privacy_accountant=accountant(kind))
  assert sorted(released_privacy(second)) == [4, 5, 6]
  resumed = {**released_privacy(first), **released_privacy(second)}
  for round_num, (epsilon, _) in released_privacy(whole).items():
    assert resumed[round_num][0] == pytest.approx(epsilon, rel=rel)
  assert final == states.saved[6]


def test_stops_before_the_round_that_would_exceed_the_target_epsilon(caplog):
  target = (reference(3) + reference(4)) / 2
  states, memory = DictStateManager(), MemoryReleaseManager()
  with caplog.at_level(logging.WARNING, logger="federax.program.training_loop"):
    state = run_training_process(
        CohortSizeProcess(), poisson_select(), 10, program_state_manager=states,
        rounds_per_saving_program_state=10, metrics_managers=[memory],
        privacy_accountant=accountant(target_epsilon=target))
  assert sorted(memory.values()) == [1, 2, 3]
  assert "Privacy budget reached: stopping before round 4" in caplog.text
  assert sorted(states.saved) == [0, 3] and state == states.saved[3]  # Saved where it stopped.
  # Resumed with more rounds, it stops again at once, saving nothing over round 3.
  again = run_training_process(CohortSizeProcess(), poisson_select(), 20,
                               program_state_manager=states, metrics_managers=[memory],
                               privacy_accountant=accountant(target_epsilon=target))
  assert again == state and sorted(memory.values()) == [1, 2, 3]


def test_poisson_accounting_with_uniform_selection_is_refused_before_any_round():
  client_data = fx.simulation.partitioners.iid({"x": np.arange(400)}, num_clients=POPULATION,
                                               seed=0)
  uniform = build_client_selection_fn(client_data, 10, seed=0)
  process = CohortSizeProcess()
  with pytest.raises(ValueError, match="assumes another sampling") as info:
    run_training_process(process, uniform, 3, privacy_accountant=accountant())
  assert "uniform sampling of 10 of 200 clients" in str(info.value)
  # The same selection with the accounting of what it does trains.
  matching = PrivacyAccountant(dpa.GaussianDpEvent(Z), uniform.sampler, delta=1e-5)
  memory = MemoryReleaseManager()
  run_training_process(process, uniform, 2, metrics_managers=[memory],
                       privacy_accountant=matching)
  assert memory.values()[2]["privacy"]["epsilon"] > 0


def test_a_selection_that_does_not_say_how_it_samples_is_trained_with_a_warning(caplog):
  with caplog.at_level(logging.WARNING, logger="federax.program.training_loop"):
    run_training_process(CohortSizeProcess(), lambda r: IDS[:10], 1,
                         privacy_accountant=accountant())
  assert "sampling assumption is not checked" in caplog.text


def test_build_client_selection_fn_with_a_sampler():
  client_data = fx.simulation.partitioners.iid({"x": np.arange(400)}, num_clients=POPULATION,
                                               seed=0)
  sampler = fx.simulation.PoissonSampler(client_data.client_ids, RATE, seed=4)
  select = build_client_selection_fn(client_data, None, seed=0, sampler=sampler)
  assert select.sampler is sampler
  assert len(select(7)) == len(sampler.sample(7))
  assert build_client_selection_fn(client_data, None).sampler is None  # Every client.
  with pytest.raises(ValueError, match="clients_per_round or a sampler, not both"):
    build_client_selection_fn(client_data, 5, sampler=sampler)


def test_train_model_reports_privacy():
  client_data = fx.simulation.partitioners.iid({"x": np.arange(400)}, num_clients=POPULATION,
                                               seed=0)
  memory = MemoryReleaseManager()
  fx.learning.programs.train_model(
      train_process=CohortSizeProcess(),
      train_data_source=fx.learning.programs.ClientDataSource(client_data),
      train_per_round_clients=10, train_total_rounds=2, train_metrics_manager=memory,
      privacy_accountant=PrivacyAccountant(dpa.GaussianDpEvent(Z), Sampling.uniform(10, 200),
                                           delta=1e-5))
  event = dpa.SampledWithoutReplacementDpEvent(200, 10, dpa.GaussianDpEvent(Z / 2))
  expected = dpa.rdp.RdpAccountant(neighboring_relation=dpa.NeighboringRelation.REPLACE_ONE
                                   ).compose(event, 2).get_epsilon(1e-5)
  assert memory.values()[2]["privacy"]["epsilon"] == pytest.approx(expected, rel=1e-10)
