"""The Federated Core tutorials' scenarios (tests/core/test_tutorials.py, and the custom
federated algorithms part 2: federated evaluation and training from local computations) on the
Ray runtime with 1, 2 and 3 workers: each scenario's own checks (TFF's printed numbers, a NumPy
re-computation) hold there too."""

import importlib.util
import inspect
import pathlib

import pytest

CORE = pathlib.Path(__file__).resolve().parents[1] / "core"


def _load(name: str):
  spec = importlib.util.spec_from_file_location(f"ray_{name}", CORE / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


MODULES = [_load("test_tutorials"), _load("test_custom_federated_algorithms_2")]
# Scenarios that call only local computations (`@fx.computation`: plain JAX functions, run
# where they are called, as TFF's `tf_computation`s are).
LOCAL_ONLY = {"test_batch_loss_and_batch_train"}
SCENARIOS = [(module, name) for module in MODULES for name, fn in vars(module).items()
             if name.startswith("test_") and "runtime" in inspect.signature(fn).parameters]


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("module,name", SCENARIOS,
                         ids=[f"{m.__name__.removeprefix('ray_test_')}.{n}" for m, n in SCENARIOS])
def test_scenario_on_ray(module, name, workers, ray_runtimes):
  runtime = ray_runtimes[workers]
  runtime.last_call = {}
  with runtime:
    getattr(module, name)(runtime=runtime)
  if name not in LOCAL_ONLY:
    assert runtime.last_call  # The scenario's calls ran on Ray.
