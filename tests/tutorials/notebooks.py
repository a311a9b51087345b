"""Runs a tutorial notebook the way a reader would, and gives back what it printed.

The code cells of `docs/tutorials/<name>.ipynb` run in order, as one script, in a fresh Python
process (so each notebook starts from a clean JAX and Keras state), with the working directory
a temporary folder. Lines that are IPython magics or shell escapes (`%...`, `!pip ...`) are
skipped: they set up Colab, not the computation. `FEDERAX_TUTORIAL_FAST=1` is set so a notebook
may shorten its training (fewer rounds, clients or steps) while keeping every printed step; the
notebook reads it as `FAST = os.environ.get("FEDERAX_TUTORIAL_FAST") == "1"`.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "docs" / "tutorials"
SHARED_DATA = ROOT.parent / "shared" / "data"


def source(name: str) -> str:
  """The notebook's code cells joined into one script, magics and shell escapes removed."""
  notebook = json.loads((TUTORIALS / f"{name}.ipynb").read_text())
  cells = []
  for cell in notebook["cells"]:
    if cell["cell_type"] != "code":
      continue
    lines = "".join(cell["source"]).splitlines()
    cells.append("\n".join(l for l in lines if not l.lstrip().startswith(("%", "!"))))
  return "\n\n".join(cells) + "\n"


def run(name: str, tmp_path: pathlib.Path, *, fast: bool = True, timeout: float = 600,
        env: dict | None = None, epilogue: str = "", with_stderr: bool = False):
  """Executes the notebook `name`; returns its stdout, or fails with the end of its stderr.

  `epilogue` is code run after the last cell (to print a value the notebook computed but did
  not print); with `with_stderr=True` the result is `(stdout, stderr)`, e.g. to check that no
  `FallbackWarning` was printed.
  """
  full_env = dict(os.environ, KERAS_BACKEND="jax", FEDERAX_SHARED_DATA=str(SHARED_DATA),
                  PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
  full_env.pop("XLA_FLAGS", None)  # A reader's machine, not the test suite's four devices.
  if fast:
    full_env["FEDERAX_TUTORIAL_FAST"] = "1"
  full_env.update(env or {})
  script = tmp_path / f"{name}.py"
  script.write_text(source(name) + ("\n" + epilogue + "\n" if epilogue else ""))
  done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=full_env,
                        capture_output=True, text=True, timeout=timeout)
  if done.returncode != 0:
    raise AssertionError(f"notebook {name} failed (exit {done.returncode}):\n"
                         f"--- stdout (end) ---\n{done.stdout[-3000:]}\n"
                         f"--- stderr (end) ---\n{done.stderr[-5000:]}")
  return (done.stdout, done.stderr) if with_stderr else done.stdout
