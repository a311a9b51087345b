"""Baseline-task tests: Keras on JAX (the reference models), and no network or real cache."""

import os

# Keras reads the backend once, at its first import; the reference models run on JAX.
os.environ["KERAS_BACKEND"] = "jax"

import pytest

from federax.simulation.datasets import download


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
  """No test here may reach the network or a real download cache."""
  monkeypatch.setenv(download.ENV_OFFLINE, "1")
  monkeypatch.delenv(download.ENV_DATA_DIR, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
