"""Test-wide setup: four CPU devices (so client-axis sharding is exercised everywhere)."""

import os

# Must be set before JAX initializes its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib

import pytest

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  if not SHARED_DATA.exists():
    pytest.skip(f"the shared data directory {SHARED_DATA} is not present")
  return SHARED_DATA


@pytest.fixture(params=["vectorized", "sequential"])
def runtime(request):
  """Runs the test once on each runtime (the vectorized one, then the sequential reference)."""
  import federax as fx
  with getattr(fx.runtime, request.param)() as rt:
    yield rt


def _distributed(config) -> bool:
  """Whether pytest-xdist spreads the tests over worker processes (`-n auto`)."""
  return bool(getattr(config.option, "numprocesses", None)) or hasattr(config, "workerinput")


def pytest_collection_modifyitems(config, items):
  """Orders the tests marked slow: last in one process, so a quick failure shows first; first
  when xdist spreads modules over workers, so the long ones do not all end up in the tail."""
  slow_first = _distributed(config)
  items.sort(key=lambda item: (item.get_closest_marker("slow") is None) == slow_first)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config):
  """`-n auto`: one worker per core, at most 4 (a worker holds ~2.5 GB: JAX, Keras, programs)."""
  return max(1, min(len(os.sched_getaffinity(0)), 4))
