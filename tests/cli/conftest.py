"""CLI tests keep JAX's compilation cache in a temporary directory, not the user's ~/.cache."""

import pytest


@pytest.fixture(autouse=True)
def _compilation_cache(tmp_path_factory, monkeypatch):
  # One directory for the session: runs of the same task share their programs, as a user's do.
  monkeypatch.setenv("FEDERAX_COMPILATION_CACHE",
                     str(tmp_path_factory.getbasetemp() / "federax-compilation-cache"))
