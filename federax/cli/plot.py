"""`federax plot`: loss and accuracy curves per round of one or several runs, as a PNG.

A run directory's `metrics.csv` has a `round` column and one column per metric, named by its
path joined with '/' (`client_work/train/loss`, `evaluation/client_work/eval/
current_round_metrics/sparse_categorical_accuracy`, ...); evaluation columns start with
`evaluation/` and are empty on rounds without an evaluation. `select_metric` picks the columns
to draw, so any set of columns works as long as one names a loss or an accuracy.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from federax.cli._errors import CLIError

FIGSIZE = (12.0, 4.5)  # Inches; with DPI, a 1200 x 450 pixel image.
DPI = 100
METRICS_FILE = "metrics.csv"
DEFAULT_COMPARISON = "comparison.png"  # Default output for several runs, in the working directory.
FORMATS = ("png", "pdf", "svg")
EVALUATION_PREFIX = "evaluation/"
_KINDS = ("loss", "accuracy")


def select_metric(names: Iterable[str], kind: str, *, evaluation: bool = False
                  ) -> Optional[str]:
  """The metric name to show as the loss or the accuracy, among `names`, or None.

  A loss is a name whose last '/'-component ends with 'loss'; an accuracy, one whose last
  component contains 'accuracy'. Evaluation metrics are those under `evaluation/`. When several
  match, preferred are: a training metric under a `train` component, an evaluation metric under
  `current_round_metrics` (not the running total), a last component exactly 'loss' (or an
  accuracy that is not a top-k one), then the shortest name.

  Example:
    >>> select_metric(['round', 'client_work/train/loss', 'evaluation/client_work/eval/'
    ...                'current_round_metrics/loss'], 'loss')
    'client_work/train/loss'
  """
  if kind not in _KINDS:
    raise ValueError(f"select_metric: kind must be one of {_KINDS}, got {kind!r}.")

  def matches(name: str) -> bool:
    last = name.rsplit("/", 1)[-1].lower()
    found = last.endswith("loss") if kind == "loss" else "accuracy" in last
    return found and name.startswith(EVALUATION_PREFIX) == evaluation

  def rank(name: str) -> tuple[Any, ...]:
    parts = name.lower().split("/")
    preferred_part = "current_round_metrics" if evaluation else "train"
    plain = parts[-1] == "loss" if kind == "loss" else "top" not in parts[-1]
    return (preferred_part not in parts, not plain, len(parts), len(name), name)

  candidates = [name for name in names if matches(name)]
  return min(candidates, key=rank) if candidates else None


Series = tuple[list[int], list[float]]  # (rounds, values), empty cells left out.


def read_metrics(run_dir: str | os.PathLike) -> dict[tuple[str, bool], Series]:
  """The loss and accuracy series of a run: `{(kind, evaluation): (rounds, values)}`.

  Rounds come out sorted; empty cells are left out.

  Raises:
    CLIError: if the directory or its metrics.csv is missing or unreadable, the file is not
      UTF-8 CSV, has no `round` column, neither a loss nor an accuracy column, a cell that is not
      a number, or a round that is not a whole number (inf, nan, 1.5).
  """
  run_dir = pathlib.Path(run_dir)
  if not run_dir.is_dir():
    raise CLIError(f"run directory {os.fspath(run_dir)!r} does not exist (expected a directory "
                   "written by `federax train`).")
  path = run_dir / METRICS_FILE
  if not path.is_file():
    raise CLIError(f"{os.fspath(path)!r} not found: expected a run directory written by "
                   f"`federax train`, with a {METRICS_FILE}.")
  try:
    return _read_series(path)
  except UnicodeDecodeError as e:
    raise CLIError(f"{os.fspath(path)!r} is not a CSV file: not UTF-8 text (byte {e.start} is "
                   f"{e.object[e.start:e.start + 1]!r}).") from None
  except csv.Error as e:
    raise CLIError(f"{os.fspath(path)!r} is not a valid CSV file: {e}.") from None
  except OSError as e:
    raise CLIError(f"cannot read {os.fspath(path)!r}: {e.strerror or e}.") from None


def _read_series(path: pathlib.Path) -> dict[tuple[str, bool], Series]:
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    columns = list(reader.fieldnames or [])
    if "round" not in columns:
      raise CLIError(f"{os.fspath(path)!r} has no 'round' column; its columns are "
                     f"{columns[:8]}{' ...' if len(columns) > 8 else ''}.")
    chosen = {(kind, ev): select_metric(columns, kind, evaluation=ev)
              for kind in _KINDS for ev in (False, True)}
    chosen = {key: name for key, name in chosen.items() if name is not None}
    if not chosen:
      raise CLIError(f"{os.fspath(path)!r} has no loss or accuracy column (a name ending in "
                     f"'loss' or containing 'accuracy'); its columns are {columns}.")
    by_round: dict[tuple[str, bool], dict[int, float]] = {key: {} for key in chosen}
    for row in reader:
      where = f"{os.fspath(path)!r}, line {reader.line_num}"
      round_num = _number(row.get("round"), where, "round")
      if round_num is None:
        continue
      if not (math.isfinite(round_num) and round_num == int(round_num)):
        raise CLIError(f"{where}: column 'round' holds {row['round']!r}, expected a whole "
                       "number.")
      for key, name in chosen.items():
        value = _number(row.get(name), where, name)
        if value is not None:  # A round written twice (a resumed run) keeps its last value.
          by_round[key][int(round_num)] = value
  return {key: (sorted(values), [values[r] for r in sorted(values)])
          for key, values in by_round.items()}


def _number(cell: Optional[str], where: str, column: str) -> Optional[float]:
  if cell is None or not cell.strip():
    return None
  try:
    return float(cell)
  except ValueError:
    raise CLIError(f"{where}: column {column!r} holds {cell!r}, expected a number.") from None


def _labels(run_dirs: Sequence[pathlib.Path]) -> list[str]:
  """Each run's directory name; parent/name (then the full path) for names that collide."""
  resolved = [d.resolve() for d in run_dirs]
  labels = [p.name for p in resolved]
  for make in (lambda p: f"{p.parent.name}/{p.name}", str):
    clashing = {label for label in labels if labels.count(label) > 1}
    labels = [make(p) if label in clashing else label for p, label in zip(resolved, labels)]
  return labels


def _import_matplotlib() -> tuple[Any, Any, Any, Any]:
  # Imported here: matplotlib is optional (federax[plot]) and slow to import.
  try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
  except ImportError:
    raise CLIError("plotting needs matplotlib, which is not installed: "
                   "pip install 'federax[plot]'") from None
  return Figure, FigureCanvasAgg, Line2D, MaxNLocator


def plot_runs(run_dirs: Sequence[str | os.PathLike], output_path: str | os.PathLike
              ) -> pathlib.Path:
  """Draws loss and accuracy per round of the runs into one image of FIGSIZE at DPI.

  Two panels, loss and accuracy; training curves solid, evaluation curves dashed with markers;
  one color per run, labelled by its directory name in the legend. The image is written
  atomically (through a temporary file), in the format its suffix names (png, pdf or svg).
  Uses matplotlib's Agg canvas directly, so the process's pyplot backend is left alone.

  Args:
    run_dirs: run directories, each with a metrics.csv.
    output_path: the image to write; parent directories are created.

  Returns:
    `output_path`, as a path.

  Raises:
    CLIError: for a missing run directory or metrics.csv, a CSV without the needed columns, an
      unknown image suffix, an unwritable output, or matplotlib not installed.

  Example:
    With two run directories written by `federax train`::

      plot_runs(['runs/fedavg', 'runs/fedprox'], 'comparison.png')  # PosixPath('comparison.png')
  """
  if not run_dirs:
    raise CLIError("plot_runs expects at least one run directory, got none.")
  output = pathlib.Path(output_path)
  fmt = output.suffix.lower().lstrip(".")
  if fmt not in FORMATS:
    raise CLIError(f"output {os.fspath(output)!r} must end in one of "
                   f"{', '.join('.' + f for f in FORMATS)}.")
  paths = [pathlib.Path(d) for d in run_dirs]
  runs = [read_metrics(d) for d in paths]
  Figure, FigureCanvasAgg, Line2D, MaxNLocator = _import_matplotlib()

  figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
  FigureCanvasAgg(figure)
  axes = dict(zip(_KINDS, figure.subplots(1, 2)))
  styles_used = set()
  for i, series in enumerate(runs):
    color = f"C{i % 10}"
    for (kind, evaluation), (rounds, values) in sorted(series.items()):
      if not rounds:
        continue
      style = dict(linestyle="--", marker="o", markersize=4) if evaluation else dict(
          linestyle="-", marker="." if len(rounds) == 1 else None)
      axes[kind].plot(rounds, values, color=color, **style)
      styles_used.add(evaluation)
  for kind, ax in axes.items():
    ax.set_title(kind.capitalize())
    ax.set_xlabel("round")
    ax.set_ylabel(kind)
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not ax.lines:
      ax.text(0.5, 0.5, f"no {kind} metric", transform=ax.transAxes, ha="center",
              va="center", color="0.5")
  handles = [Line2D([], [], color=f"C{i % 10}", label=label)
             for i, label in enumerate(_labels(paths))]
  if False in styles_used:
    handles.append(Line2D([], [], color="0.35", linestyle="-", label="training"))
  if True in styles_used:
    handles.append(Line2D([], [], color="0.35", linestyle="--", marker="o", markersize=4,
                          label="evaluation"))
  legend_axes = axes["loss"] if axes["loss"].lines else axes["accuracy"]
  legend_axes.legend(handles=handles, fontsize="small")

  partial = output.with_name(output.name + ".part")
  try:
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(partial, format=fmt, dpi=DPI)
    os.replace(partial, output)
  except OSError as e:
    raise CLIError(f"cannot write {os.fspath(output)!r}: {e.strerror or e}.") from None
  return output


def add_parser(subparsers: Any) -> None:
  """Registers `federax plot RUN_DIR [RUN_DIR ...] [-o OUT.png]`."""
  parser = subparsers.add_parser(
      "plot", help="plot loss and accuracy per round of one or several runs",
      description="Draws loss and accuracy per round (training solid, evaluation dashed) from "
      "each run directory's metrics.csv into one image, one color per run.")
  parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                      help="a run directory written by `federax train`")
  parser.add_argument("-o", "--output", metavar="OUT.png",
                      help="the image to write (.png, .pdf or .svg); default RUN_DIR/metrics.png "
                      f"for one run, ./{DEFAULT_COMPARISON} for several")
  parser.set_defaults(func=run, prog=parser.prog)


def run(args: argparse.Namespace) -> int:
  """Runs `federax plot`: writes the image and prints its path."""
  output = args.output
  if output is None:
    output = (pathlib.Path(args.run_dirs[0]) / "metrics.png" if len(args.run_dirs) == 1
              else pathlib.Path(DEFAULT_COMPARISON))
  print(os.fspath(plot_runs(args.run_dirs, output)))
  return 0
