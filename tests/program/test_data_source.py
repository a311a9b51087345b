"""Data sources: the DataSource and SelectionFn protocols, ClientDataSource, and train_model
driven by a data source that is not a ClientData."""

import numpy as np

import federax as fx
from federax.program import ClientDataSource, ClientPopulation, DataSource, SelectionFn


def client_data():
  return fx.simulation.ClientData.from_dict(
      {f"c{i}": {"x": np.arange(10 * i, 10 * i + 10)} for i in range(6)})


def contents(datasets):
  return [[int(e["x"]) for e in d] for d in datasets]


def test_client_data_source_satisfies_the_protocols():
  source = ClientDataSource(client_data(), lambda d, seed=None: d.shuffle(10, seed=seed), seed=3)
  assert isinstance(client_data(), ClientPopulation)
  assert isinstance(source, DataSource)
  select = source.selection_fn(2)
  assert isinstance(select, SelectionFn)
  assert contents(select(4)) == contents(source.select(4, 2))
  # The same cohorts and shuffles as the selection function it wraps.
  direct = fx.program.build_client_selection_fn(
      client_data(), 2, lambda d, seed=None: d.shuffle(10, seed=seed), seed=3)
  assert contents(direct(4)) == contents(select(4)) != contents(select(5))
  assert [len(d) for d in source.select(0, None)] == [10] * 6


def test_former_names_are_the_same_objects():
  assert fx.learning.programs.ClientDataSource is fx.program.ClientDataSource
  assert fx.simulation.run_training_process is fx.program.run_training_process
  assert fx.simulation.build_client_selection_fn is fx.program.build_client_selection_fn
  assert fx.simulation.ROUND_NUMBER_KEY == fx.program.ROUND_NUMBER_KEY == "round_number"
  from federax.simulation.sampling import UniformSampler  # pylint: disable=g-import-not-at-top
  assert UniformSampler is fx.simulation.UniformSampler is fx.simulation.sampling.UniformSampler


class RoundNumbers:
  """A DataSource that is no ClientData: round r's cohort is k clients, each holding r."""

  def selection_fn(self, num_clients):
    return lambda round_num: [round_num] * num_clients


class SumProcess:
  """state -> state + sum of the cohort's values."""

  def initialize(self):
    return 0

  def next(self, state, data):
    return state + sum(data), {"cohort": list(data)}

  def get_model_weights(self, state):
    return state


def test_train_model_takes_any_data_source():
  assert isinstance(RoundNumbers(), DataSource)
  metrics = fx.program.MemoryReleaseManager()
  weights = fx.program.MemoryReleaseManager()
  state = fx.learning.programs.train_model(
      train_process=SumProcess(), train_data_source=RoundNumbers(), train_per_round_clients=2,
      train_total_rounds=3, train_metrics_manager=metrics, model_output_manager=weights)
  assert state == 2 * (1 + 2 + 3)
  assert [metrics.values()[r]["cohort"] for r in (1, 2, 3)] == [[1, 1], [2, 2], [3, 3]]
  assert weights.values() == {3: 12}
