"""TFF's seed tutorial (FedAvg on FEMNIST digits, `examples/image_classification.py`) on the Ray
runtime with 1, 2 and 3 workers: TFF 0.87's published numbers to 1e-4, as on the vectorized
runtime (tests/examples/test_image_classification.py)."""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

import image_classification  # noqa: E402

from federax.simulation.datasets import femnist  # noqa: E402

# TFF 0.87 (and a float64 NumPy FedAvg) on the 10 first digit writers, shuffling off.
TFF_LOSS = {1: 2.93708, 2: 2.80165, 3: 2.68474}
TFF_ACCURACY = {1: 0.12072}


@pytest.fixture(scope="module")
def tutorial_data(shared_data):
  train, _ = femnist.load_data(shared_data / "femnist-leaf", only_digits=True)
  ids = sorted(train.client_ids)[:10]
  return image_classification.make_federated_data(train, ids, shuffle=False)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_seed_tutorial_on_ray_gives_tffs_numbers(workers, ray_runtimes, tutorial_data):
  model = image_classification.hand_written_model(tutorial_data[0].element_spec)
  runtime = ray_runtimes[workers]
  runtime.last_call = {}
  with runtime:
    _, _, history = image_classification.train(model, tutorial_data, rounds=len(TFF_LOSS),
                                               log=lambda *_: None)
  assert runtime.last_call["clients"] == 10  # The rounds ran on Ray.
  for round_num, loss in TFF_LOSS.items():
    assert history[round_num - 1]["loss"] == pytest.approx(loss, abs=1e-4)
  for round_num, accuracy in TFF_ACCURACY.items():
    assert history[round_num - 1]["sparse_categorical_accuracy"] == pytest.approx(
        accuracy, abs=1e-4)
  assert all(h["num_examples"] == 3620 for h in history)
