"""docs/porting_from_tff.md: every federax, JAX and jax.numpy name its tables give exists.

Each table row's second column names the counterpart of TFF's API; every `fx.`, `jax.` and
`jnp.` name there must resolve, and a call shown with keywords (`f(a=..., b=...)`) must take
them. A row the guide marks "pending (issue 14 item N)" is an expected failure (strict): when
the name lands, the test fails until the mark is removed from the guide.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import re

import pytest

GUIDE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "porting_from_tff.md"
NAME = re.compile(r"\b(?:fx|jax|jnp)\.[A-Za-z_][\w.]*[A-Za-z_0-9]")
CALL = re.compile(r"\b((?:fx|jax|jnp)\.[\w.]+)\(([^`]*)\)")
PENDING = re.compile(r"pending \(issue 14 item (\d+)\)")


def rows() -> list[tuple[str, str, str]]:
  """(TFF, federax, notes) of every table row whose federax column names something."""
  found = []
  for line in GUIDE.read_text().splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if not line.startswith("|") or len(cells) != 3 or set(cells[1]) <= {"-", " "}:
      continue
    if cells[1] in ("federax", "JAX") or not NAME.search(cells[1]):
      continue
    found.append((cells[0], cells[1], cells[2]))
  return found


def resolve(name: str):
  """The object a dotted name denotes after `import federax as fx`, `import jax` and
  `import jax.numpy as jnp`: attributes only, as a user reaches them."""
  root, *path = name.split(".")
  obj = importlib.import_module({"fx": "federax", "jax": "jax", "jnp": "jax.numpy"}[root])
  for part in path:
    obj = getattr(obj, part)
  return obj


def missing(federax_column: str) -> list[str]:
  """The names of the column that do not resolve, and the keywords their calls lack."""
  problems = []
  for name in NAME.findall(federax_column):
    try:
      resolve(name)
    except AttributeError as e:
      problems.append(f"{name}: {e}")
  for name, args in CALL.findall(federax_column):
    try:
      parameters = inspect.signature(resolve(name)).parameters
    except (AttributeError, TypeError, ValueError):
      continue  # Reported above, or not introspectable.
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
      continue
    problems += [f"{name}: no keyword {kw}" for kw in re.findall(r"(\w+)=", args)
                 if kw not in parameters]
  return problems


def params():
  for tff, federax, notes in rows():
    pending = PENDING.search(notes)
    marks = [pytest.mark.xfail(strict=True, reason=f"issue 14 item {pending.group(1)}")] if (
        pending) else []
    yield pytest.param(federax, id=NAME.search(federax).group(0) + f" ({tff[:40]})",
                       marks=marks)


def test_the_guide_has_the_tables():
  names = {NAME.search(federax).group(0) for _, federax, _ in rows()}
  # One name of each section.
  assert {"fx.federated_computation", "fx.federated_select", "fx.templates.AggregationProcess",
          "fx.aggregators.MeanFactory", "fx.learning.algorithms.build_weighted_fed_avg",
          "fx.learning.models.FunctionalModel", "fx.learning.optimizers.build_sgdm",
          "fx.simulation.ClientData", "fx.program.FileProgramStateManager",
          "fx.data.Dataset.from_tensor_slices", "jnp.add"} <= names
  assert len(rows()) > 100


@pytest.mark.parametrize("federax_column", list(params()))
def test_federax_names_exist(federax_column):
  assert missing(federax_column) == []


def test_the_check_finds_what_is_missing():
  assert missing("`fx.federated_map`, `jnp.mean`, `jax.random.split`") == []
  assert missing("`fx.federated_nonexistent`") == [
      "fx.federated_nonexistent: module 'federax' has no attribute 'federated_nonexistent'"]
  assert missing("`fx.data.Dataset.batch(batch_size=..., drop=...)`") == [
      "fx.data.Dataset.batch: no keyword drop"]
