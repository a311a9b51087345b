"""The docstring examples of `fx.learning.optimizers` run and print what they show."""

import doctest
import importlib

import jax
import jax.numpy as jnp
import optax
import pytest

import federax as fx
import federax.learning.optimizers  # noqa: F401  (makes fx.learning.optimizers available)

MODULES = ["_optimizer", "_sgdm", "_adam", "_adagrad", "_rmsprop", "_yogi"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
  module = importlib.import_module(f"federax.learning.optimizers.{name}")
  results = doctest.testmod(module, extraglobs={"fx": fx, "jax": jax, "jnp": jnp, "optax": optax})
  assert results.attempted > 0
  assert results.failed == 0
