"""Import directions: every `federax` import points down the layers of DESIGN.md.

The modules are parsed, not imported, so an import inside a function (a lazy import) counts as
much as one at the top of a module: both tie the layers together.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "federax"

_BELOW_SIMULATION = {"core", "runtime", "templates", "data", "aggregators", "learning", "program",
                     "privacy", "analytics"}

# Layer (a package under federax/, or a subpackage with its own rule) -> the layers it may
# import, besides itself and `federax._checks` (which imports nothing from federax).
ALLOWED = {
    "core": set(),
    "runtime": {"core"},
    "templates": {"core"},
    "data": {"core"},
    "aggregators": {"core", "templates"},
    "learning": {"aggregators", "core", "templates", "data"},
    # TFF's `tff.learning.programs`: the learning-specific wiring (`train_model`) of the
    # program layer's loop and data sources. Nothing else in learning imports program.
    "learning.programs": {"aggregators", "core", "templates", "data", "program"},
    # The loop and data sources need the core only (`_flatten` and the release managers read
    # its `Struct`). `templates` would be allowed if a program had to build a process; none does.
    "program": {"core"},
  # Accounting reads the aggregators' DP events and the program layer's samplers.
  "privacy": {"core", "templates", "aggregators", "program"},
  # Analytics are federated computations built like aggregators (secure sums, DP noise).
  "analytics": {"core", "templates", "aggregators", "privacy"},
    "types": {"core"},  # TFF's `tff.types` path over the core's types.
    "simulation": _BELOW_SIMULATION,
    "cli": _BELOW_SIMULATION | {"simulation", "federax"},  # "federax": `import federax as fx`.
}

# Modules outside the layers: the top-level package assembles every layer, and `_checks`
# may be imported by any layer because it imports nothing from federax (checked below).
EXEMPT = {"federax", "federax._checks"}


def module_name(path: pathlib.Path, package: pathlib.Path) -> str:
  parts = list(path.relative_to(package.parent).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def federax_imports(source: str, module: str, is_package: bool, package: pathlib.Path):
  """`(line, imported name)` for each import of federax in `source`, at any nesting level.

  `from federax import x` names `federax.x` when x is a subpackage or module (it loads it),
  else `federax` (a name the top-level package re-exports); relative imports are resolved.
  """
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.split(".")[0] == "federax":
          yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        here = module.split(".") if is_package else module.split(".")[:-1]
        here = here[:len(here) - (node.level - 1)]
        base = ".".join(here + ([node.module] if node.module else []))
      if base.split(".")[0] != "federax":
        continue
      if base == "federax":
        for alias in node.names:
          sub = package.joinpath(alias.name)
          is_module = sub.is_dir() or sub.with_suffix(".py").exists()
          yield node.lineno, f"federax.{alias.name}" if is_module else "federax"
      else:
        yield node.lineno, base


def layer_of(module: str) -> str:
  """The most specific rule in ALLOWED for a module (`learning.programs` before `learning`)."""
  parts = module.split(".")[1:]
  for n in range(len(parts), 0, -1):
    if ".".join(parts[:n]) in ALLOWED:
      return ".".join(parts[:n])
  raise KeyError(f"{module}: no rule in ALLOWED for the package {parts[0]!r}; add its layer "
                 "(see DESIGN.md, section Layers).")


def target_of(imported: str) -> str:
  parts = imported.split(".")
  return "federax" if len(parts) == 1 else parts[1]


def violations(package: pathlib.Path = PACKAGE, known=frozenset()):
  """`(file:line: import, (module, imported))` for every import against ALLOWED, sorted."""
  found = []
  for path in sorted(package.rglob("*.py")):
    module = module_name(path, package)
    if module in EXEMPT:
      continue
    layer = layer_of(module)
    allowed = ALLOWED[layer] | {layer.split(".")[0], "_checks"}
    for line, imported in federax_imports(path.read_text(), module, path.name == "__init__.py",
                                          package):
      if target_of(imported) not in allowed and (module, imported) not in known:
        where = f"{path.relative_to(package.parent)}:{line}"
        found.append((f"{where}: import {imported}  ({layer} may import: "
                       f"{', '.join(sorted(allowed))})", (module, imported)))
  return found


def test_imports_point_down_the_layers():
  found = violations()
  assert not found, ("Imports against the layers of DESIGN.md:\n" +
                     "\n".join(line for line, _ in found))


def test_checks_imports_nothing_from_federax():
  path = PACKAGE / "_checks.py"
  assert not list(federax_imports(path.read_text(), "federax._checks", False, PACKAGE))


def test_every_package_has_a_rule():
  for path in PACKAGE.iterdir():
    if path.is_dir() and (path / "__init__.py").exists():
      assert path.name in ALLOWED, f"federax/{path.name}: add its layer to ALLOWED"


def _package(tmp_path, files):
  for name, source in files.items():
    path = tmp_path / "federax" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
  return tmp_path / "federax"


def test_the_checker_reports_bad_imports_at_any_depth(tmp_path):
  package = _package(tmp_path, {
      "__init__.py": "from federax import simulation\n",
      "_checks.py": "",
      "core/__init__.py": "",
      "core/types.py": "def f():\n  if True:\n    from federax.learning import models\n",
      "data/__init__.py": "",
      "data/dataset.py": "from ..simulation import client_data\nfrom federax.core import types\n",
      "learning/__init__.py": "from federax import simulation, data\n",
      "learning/programs/__init__.py": "import federax.program.training_loop\n",
      "program/__init__.py": "from federax import learning\n",
      "simulation/__init__.py": "import federax\nfrom federax import _checks, program\n",
      "simulation/client_data.py": "",
  })
  found = [line.split("  (")[0] for line, _ in violations(package)]
  assert found == [
      "federax/core/types.py:3: import federax.learning",
      "federax/data/dataset.py:1: import federax.simulation",
      "federax/learning/__init__.py:1: import federax.simulation",
      "federax/program/__init__.py:1: import federax.learning",
      "federax/simulation/__init__.py:1: import federax",
  ]
  assert violations(package, known={("federax.core.types", "federax.learning")})[0][1] == (
      "federax.data.dataset", "federax.simulation")


def test_the_checker_refuses_a_package_without_a_rule(tmp_path):
  package = _package(tmp_path, {"__init__.py": "", "telemetry/__init__.py": ""})
  with pytest.raises(KeyError, match="no rule in ALLOWED for the package 'telemetry'"):
    violations(package)


def test_model_weights_knows_no_kind_of_model():
  # The wrappers (_functional, _keras, Flax) build ModelWeights and register how to read and
  # write their models' weights; _weights importing them back made a cycle.
  path = PACKAGE / "learning" / "models" / "_weights.py"
  module = "federax.learning.models._weights"
  imported = {name for _, name in federax_imports(path.read_text(), module, False, PACKAGE)}
  assert imported == {"federax.learning.models._common"}
