"""Fixtures for the model tests: the TFF tutorial's batch shapes, with padded rows."""

import jax
import numpy as np
import pytest

SPEC = {"x": (np.float32, [None, 784]), "y": (np.int32, [None])}


@pytest.fixture
def spec():
  return dict(SPEC)


def _make_batch(seed: int, rows: int = 6, real: int = 4, features: int = 784,
               classes: int = 10) -> dict:
  """A masked batch whose padded rows hold junk, so a leak of them into a result shows."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(rows, features)).astype(np.float32)
  y = rng.integers(0, classes, size=rows).astype(np.int32)
  x[real:] = 50.0  # Padding made loud: it would dominate any sum it leaked into.
  return {"x": x, "y": y, "mask": np.arange(rows) < real}


@pytest.fixture
def make_batch():
  return _make_batch


@pytest.fixture
def batch():
  return _make_batch(0)


class Jitted:
  """A model whose methods are jitted: first calls compile once instead of op by op."""

  def __init__(self, model):
    self.model = model
    self.initial_weights = model.initial_weights
    self.metric_names = model.metric_names
    self.initialize_metrics_state = model.initialize_metrics_state
    self.forward_pass = jax.jit(model.forward_pass, static_argnames="training")
    self.predict_on_batch = jax.jit(model.predict_on_batch, static_argnames="training")
    self.update_metrics_state = jax.jit(model.update_metrics_state)
    self.finalize_metrics = model.finalize_metrics
    self.metrics = jax.jit(lambda batch, out: model.finalize_metrics(
        model.update_metrics_state(model.initialize_metrics_state(), batch, out)))
    self.metrics.__doc__ = "The finalized metrics of one batch."


@pytest.fixture(scope="session")
def jitted():
  return Jitted
