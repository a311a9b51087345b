"""Test-wide setup: four CPU devices (so client-axis sharding is exercised everywhere), and one
JAX persistent compilation cache for the whole run."""

import os

# Must be set before JAX initializes its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Keras 3 on JAX, as federax's Keras wrappers require, in every worker whichever test imports
# keras first (Keras otherwise reads ~/.keras/keras.json, whose default is TensorFlow).
os.environ.setdefault("KERAS_BACKEND", "jax")

import pathlib
import shutil
import tempfile

import pytest

# JAX's persistent compilation cache, shared by every process of the run (the xdist workers and
# the notebooks, CLI runs and benchmarks the tests start, which inherit the environment): a
# program compiled once (the same model and algorithm in many tests) is loaded after that,
# every program however fast its compile. Its key is the program and the compiler's options
# and versions, so results are the same; tests of the cache itself set their own directory.
# A run given JAX_COMPILATION_CACHE_DIR uses that one and keeps it.
_CACHE_VARIABLES = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def pytest_configure(config):
  if "JAX_COMPILATION_CACHE_DIR" in os.environ:
    return
  inherited = getattr(config, "workerinput", {}).get("jax_compilation_cache_dir")
  directory = inherited or tempfile.mkdtemp(prefix="federax-tests-jax-cache-")
  if not inherited:
    config._jax_cache_to_remove = directory  # pylint: disable=protected-access
  os.environ["JAX_COMPILATION_CACHE_DIR"] = directory
  for name, value in _CACHE_VARIABLES.items():
    os.environ.setdefault(name, value)


def pytest_configure_node(node):
  """xdist: each worker uses the controller's directory."""
  node.workerinput["jax_compilation_cache_dir"] = os.environ.get("JAX_COMPILATION_CACHE_DIR")


def pytest_unconfigure(config):
  directory = getattr(config, "_jax_cache_to_remove", None)
  if directory:
    shutil.rmtree(directory, ignore_errors=True)

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
