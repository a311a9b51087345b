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


def pytest_collection_modifyitems(items):
  """Runs the tests marked slow after the others (a stable sort keeps each group's order)."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is not None)
