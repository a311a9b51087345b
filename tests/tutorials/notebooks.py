"""Runs a tutorial notebook the way a reader would, and gives back what it printed.

The code cells of `docs/tutorials/<name>.ipynb` run in order, as one script, in a fresh Python
process (so each notebook starts from a clean JAX and Keras state), with the working directory
a temporary folder. Lines that are IPython magics or shell escapes (`%...`, `!pip ...`) are
skipped: they set up Colab, not the computation. `FEDERAX_TUTORIAL_FAST=1` is set so a notebook
may shorten its training (fewer rounds, clients or steps) while keeping every printed step; the
notebook reads it as `FAST = os.environ.get("FEDERAX_TUTORIAL_FAST") == "1"`.

`run_cells` runs the cells one at a time instead, as a reader does in Jupyter: each cell's
printed output, final expression (displayed), warnings and error are kept, and a failing cell
does not stop the next ones, so a test can check each step of a notebook on its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "docs" / "tutorials"
SHARED_DATA = ROOT.parent / "shared" / "data"


def code_cells(name: str) -> list[str]:
  """The sources of the notebook's code cells, magics and shell escapes removed."""
  notebook = json.loads((TUTORIALS / f"{name}.ipynb").read_text())
  cells = []
  for cell in notebook["cells"]:
    if cell["cell_type"] != "code":
      continue
    lines = "".join(cell["source"]).splitlines()
    cells.append("\n".join(l for l in lines if not l.lstrip().startswith(("%", "!"))))
  return cells


def source(name: str) -> str:
  """The notebook's code cells joined into one script, magics and shell escapes removed."""
  return "\n\n".join(code_cells(name)) + "\n"


def _environment(fast: bool, env: dict | None) -> dict:
  full_env = dict(os.environ, KERAS_BACKEND="jax", FEDERAX_SHARED_DATA=str(SHARED_DATA),
                  PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
  full_env.pop("XLA_FLAGS", None)  # A reader's machine, not the test suite's four devices.
  if fast:
    full_env["FEDERAX_TUTORIAL_FAST"] = "1"
  full_env.update(env or {})
  return full_env


def run(name: str, tmp_path: pathlib.Path, *, fast: bool = True, timeout: float = 600,
        env: dict | None = None, epilogue: str = "", with_stderr: bool = False):
  """Executes the notebook `name`; returns its stdout, or fails with the end of its stderr.

  `epilogue` is code run after the last cell (to print a value the notebook computed but did
  not print); with `with_stderr=True` the result is `(stdout, stderr)`, e.g. to check that no
  `FallbackWarning` was printed.
  """
  full_env = _environment(fast, env)
  script = tmp_path / f"{name}.py"
  script.write_text(source(name) + ("\n" + epilogue + "\n" if epilogue else ""))
  done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=full_env,
                        capture_output=True, text=True, timeout=timeout)
  if done.returncode != 0:
    raise AssertionError(f"notebook {name} failed (exit {done.returncode}):\n"
                         f"--- stdout (end) ---\n{done.stdout[-3000:]}\n"
                         f"--- stderr (end) ---\n{done.stderr[-5000:]}")
  return (done.stdout, done.stderr) if with_stderr else done.stdout


# --- Cell by cell ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Cell:
  """One code cell as a reader ran it: what it printed, displayed and warned, and its error."""

  source: str
  stdout: str  # Printed output, then the repr of a final expression (as Jupyter displays it).
  error: str | None  # "ErrorType: message" if the cell raised, else None.
  warnings: list[str]  # "Category: message" of every warning the cell issued.


class Cells(list):
  """The cells of a notebook run, found by a piece of their source."""

  def find(self, snippet: str) -> Cell:
    """The one cell whose source contains `snippet` (or, among several, is exactly it)."""
    found = [c for c in self if snippet in c.source]
    if len(found) > 1:
      found = [c for c in found if c.source.strip() == snippet.strip()]
    if len(found) != 1:
      raise KeyError(f"{len(found)} cells contain {snippet!r}")
    return found[0]


_DRIVER = r'''
import ast, contextlib, io, json, sys, traceback, warnings

cells = json.load(open(sys.argv[1]))
env = {"__name__": "__main__"}
results = []
for i, source in enumerate(cells):
  out, caught, error = io.StringIO(), [], None
  with contextlib.redirect_stdout(out), warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
      tree = ast.parse(source, f"<cell {i}>")
      last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
      exec(compile(tree, f"<cell {i}>", "exec"), env)
      if last is not None:
        value = eval(compile(ast.Expression(last.value), f"<cell {i}>", "eval"), env)
        if value is not None:
          print(repr(value))
    except Exception as e:  # A reader sees the traceback and goes on with the next cell.
      error = f"{type(e).__name__}: {e}"
      traceback.print_exc()
  results.append({"stdout": out.getvalue(), "error": error,
                  "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]})
  sys.stdout.write(out.getvalue())
json.dump(results, open(sys.argv[2], "w"))
'''


def run_cells(name: str, tmp_path: pathlib.Path, *, fast: bool = True, timeout: float = 600,
              env: dict | None = None) -> Cells:
  """Runs the notebook's code cells one by one, as a reader does in Jupyter.

  A cell that raises does not stop the run: its error is recorded and the next cell runs
  (later cells may then fail for want of its names). A cell's final expression is displayed
  (its repr printed) as Jupyter does. Same process set-up as `run`.
  """
  cells = code_cells(name)
  (tmp_path / "cells.json").write_text(json.dumps(cells))
  (tmp_path / "driver.py").write_text(_DRIVER)
  full_env = _environment(fast, env)
  done = subprocess.run([sys.executable, "driver.py", "cells.json", "results.json"],
                        cwd=tmp_path, env=full_env, capture_output=True, text=True,
                        timeout=timeout)
  if done.returncode != 0:
    raise AssertionError(f"notebook {name}: the cell driver failed (exit {done.returncode}):\n"
                         f"{done.stderr[-5000:]}")
  results = json.loads((tmp_path / "results.json").read_text())
  return Cells(Cell(source, **r) for source, r in zip(cells, results))
