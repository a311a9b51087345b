"""Every docstring example in federax runs and prints what it shows (STYLE.md: examples run)."""

import doctest
import importlib
import os
import pathlib
import pkgutil

# Keras examples run on JAX (as tests/learning/conftest.py sets up, when this file runs alone).
os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx

PACKAGE_DIR = pathlib.Path(fx.__file__).parent


FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
  names = ["federax"]
  for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="federax."):
    names.append(info.name)
  return sorted(names)


def _import(name: str):
  """The module, or a skip when it needs an optional extra that is not installed."""
  try:
    return importlib.import_module(name)
  except ModuleNotFoundError as e:
    if e.name and not e.name.startswith("federax"):
      pytest.skip(f"{name} needs {e.name}, an optional extra that is not installed")
    raise


def _describe(failure) -> str:
  example = failure.example
  lineno = failure.test.lineno + example.lineno + 1 if failure.test.lineno is not None else "?"
  where = f"{failure.test.name} ({failure.test.filename}:{lineno})"
  if isinstance(failure, doctest.UnexpectedException):
    kind, value, _ = failure.exc_info
    got = f"raised {kind.__name__}: {value}"
  else:
    got = failure.got
  return (f"{where}\n  >>> {example.source.strip()}\n  expected: {example.want.strip()}\n"
          f"  got:      {got.strip()}")


class _CollectingRunner(doctest.DocTestRunner):
  """Collects every failing example (instead of printing them) and keeps going."""

  def __init__(self):
    super().__init__(optionflags=FLAGS, verbose=False)
    self.failed_examples = []

  def report_failure(self, out, test, example, got):
    self.failed_examples.append(doctest.DocTestFailure(test, example, got))

  def report_unexpected_exception(self, out, test, example, exc_info):
    self.failed_examples.append(doctest.UnexpectedException(test, example, exc_info))


@pytest.mark.parametrize("name", _module_names())
def test_docstring_examples_run(name, tmp_path, monkeypatch):
  if name.endswith(".__main__"):
    pytest.skip("importing a __main__ module runs the program")
  module = _import(name)
  # As doctest does by default, an example sees its module's names (`Dataset` in dataset.py),
  # plus the four a reader is assumed to have imported.
  globs = {**vars(module), "fx": fx, "np": np, "jnp": jnp, "jax": jax}
  runner = _CollectingRunner()
  tests = doctest.DocTestFinder(exclude_empty=True).find(module, name, globs=globs)
  for i, test in enumerate(tests):
    # Examples that write files write them into a fresh directory of their own.
    (tmp_path / str(i)).mkdir()
    monkeypatch.chdir(tmp_path / str(i))
    runner.run(test, out=lambda _: None)
  failures = [_describe(f) for f in runner.failed_examples]
  if failures:
    pytest.fail(f"{len(failures)} failing example(s) in {name}:\n\n" + "\n\n".join(failures),
                pytrace=False)
