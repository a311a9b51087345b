"""TFF's seed tutorial (FedAvg on FEMNIST digits, `examples/image_classification.py`) on the Ray
runtime with 1, 2 and 3 workers: TFF 0.87's published numbers to 1e-4, as on the vectorized
runtime (tests/examples/test_image_classification.py)."""

import importlib.util
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

import image_classification  # noqa: E402

from federax.simulation.datasets import femnist  # noqa: E402

# TFF 0.87's numbers (and a float64 NumPy FedAvg's) on the 10 first digit writers, shuffling off,
# as the seed tutorial's own test checks them.
_spec = importlib.util.spec_from_file_location(
    "seed_tutorial_test", ROOT / "tests" / "examples" / "test_image_classification.py")
seed_tutorial_test = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seed_tutorial_test)
ROUNDS = 3


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
    _, _, history = image_classification.train(model, tutorial_data, rounds=ROUNDS,
                                               log=lambda *_: None)
  assert runtime.last_call["clients"] == 10  # The rounds ran on Ray.
  seed_tutorial_test.assert_tffs_numbers(history)
