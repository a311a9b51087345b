"""Live progress on a terminal (training rounds, downloads) and tables, with or without rich.

Both displays draw one line on `stream` (default `sys.stderr`) while they are open: with `rich`
installed, a `rich.progress.Progress`; without it, a plain line redrawn with `\\r`. They draw only
when `stream` is a terminal (unless `enabled=` says otherwise): piped into a file or a CI log, they
write nothing at all, so logs stay clean.

Logs and prints stay readable while a line is shown, in both modes. With rich this relies on
`rich.live.Live`'s `redirect_stdout`/`redirect_stderr`: while the display is live, `sys.stdout`
and `sys.stderr` are replaced by `rich.file_proxy.FileProxy` objects that print each complete line
above the bar. The plain mode does the same with its own proxy (clear the line, write, redraw).
Either way only the streams drawn on the same terminal as the bar are redirected, so output piped
to a file is never diverted. `logging.StreamHandler`s keep the stream they were given when they
were made (`logging.basicConfig` gives `sys.stderr`), which a redirect of `sys.stderr` does not
reach: while a display is open, handlers holding a redirected stream are pointed at its proxy, and
pointed back when the display closes. One display may be open at a time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Optional, TextIO

from federax.cli._terminal import (Live, format_byte_pair, format_bytes, format_seconds,
                                   import_rich, is_tty, with_bar)
from federax.cli.plot import select_metric
from federax.program import flatten
from federax.program.training_loop import PRIVACY_METRICS_KEY

_DOWNLOAD_REDRAW_S = 0.1  # Plain mode: redraw a download line at most this often.
PRIVACY_EPSILON = f"{PRIVACY_METRICS_KEY}/epsilon"


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
  """The metrics' scalar leaves by path; arrays and strings have no place on one line."""
  flat = {}
  for name, value in flatten(metrics).items():
    if getattr(value, "ndim", 0) == 0:
      try:
        flat[name] = float(value)
      except (TypeError, ValueError):
        pass
  return flat


class RoundProgress(Live):
  """Training rounds on one live line: round i/N, a bar, elapsed, ETA, latest loss and accuracy.

  Shows the training loss and accuracy of the latest round and, once an evaluation has run, the
  latest evaluation loss and accuracy (metric names are picked as `federax plot` picks its
  columns: a name ending in 'loss', a name containing 'accuracy'). The ETA extrapolates from the
  rounds timed since the first update, so a first round slowed by compilation does not count.
  Writes nothing unless enabled (by default: only when `stream` is a terminal).

  Args:
    total_rounds: the last round to run (N).
    start_round: the first round this session runs (greater than 1 when resuming).
    enabled: draw the display; None means only when `stream` is a terminal.
    stream: where to draw; default `sys.stderr`.

  Example:
    In a terminal (it draws nothing when the stream is not one)::

      with RoundProgress(total_rounds=10) as progress:
        for round_num in range(1, 11):
          state, metrics = process.next(state, data)
          progress.update(round_num, flat_metrics)
  """

  _speed_estimate_period = 7 * 24 * 3600.0  # Rounds can take minutes: average over them all.

  def __init__(self, total_rounds: int, start_round: int = 1, *, enabled: Optional[bool] = None,
               stream: Optional[TextIO] = None):
    if total_rounds < 0 or not 1 <= start_round <= total_rounds + 1:
      raise ValueError(f"RoundProgress expects 1 <= start_round <= total_rounds + 1; got "
                       f"start_round={start_round}, total_rounds={total_rounds}.")
    super().__init__(enabled, stream)
    self.total_rounds, self.start_round = total_rounds, start_round
    self._shown: dict[tuple[str, bool], float] = {}  # (kind, evaluation) -> latest value
    self._start_time = time.monotonic()
    self._first: Optional[tuple[float, int]] = None  # (time, round) of the first update.

  def __enter__(self) -> RoundProgress:
    self._start_time = time.monotonic()
    self._open(total=self.total_rounds, completed=self.start_round - 1, metrics="")
    if self._line is not None:
      self._line.show(self._plain_text(self.start_round - 1))
    return self

  def _rich_columns(self, rp: Any) -> Sequence[Any]:
    return (rp.TextColumn("round {task.completed:.0f}/{task.total:.0f}"), rp.BarColumn(),
            rp.TimeElapsedColumn(), rp.TextColumn("eta"), rp.TimeRemainingColumn(),
            rp.TextColumn("{task.fields[metrics]}", markup=False))

  def update(self, round_num: int, metrics: Mapping[str, Any]) -> None:
    """Shows that round `round_num` is done, with its metrics (a flat or nested mapping)."""
    if not self.enabled:
      return
    if not self.active:
      self.__enter__()
    now = time.monotonic()
    if self._first is None:
      self._first = (now, round_num)
    self._remember(_scalars(metrics))
    text = self._metrics_text()
    if self._progress is not None:
      self._progress.update(self._task, completed=round_num, metrics=text, refresh=True)
    elif self._line is not None:
      self._line.show(self._plain_text(round_num, now))

  def _remember(self, flat: Mapping[str, float]) -> None:
    for kind in ("loss", "accuracy"):
      for evaluation in (False, True):
        name = select_metric(flat, kind, evaluation=evaluation)
        if name is not None:
          self._shown[kind, evaluation] = flat[name]
    if PRIVACY_EPSILON in flat:  # DP training: the privacy spent so far.
      self._shown["epsilon", False] = flat[PRIVACY_EPSILON]

  def _metrics_text(self) -> str:
    """'loss 0.4123 acc 0.8712 ε 1.23 | eval loss 0.45 acc 0.85', with what is known so far."""
    groups = []
    for evaluation in (False, True):
      shown = [f"{label} {self._shown[kind, evaluation]:.4g}"
               for kind, label in (("loss", "loss"), ("accuracy", "acc"), ("epsilon", "ε"))
               if (kind, evaluation) in self._shown]
      if shown:
        groups.append(("eval " if evaluation else "") + " ".join(shown))
    return " | ".join(groups)

  def _plain_text(self, round_num: int, now: Optional[float] = None) -> str:
    now = time.monotonic() if now is None else now
    elapsed = now - self._start_time
    eta = None
    if self._first is not None:
      first_time, first_round = self._first
      if round_num > first_round:
        per_round = (now - first_time) / (round_num - first_round)
      else:  # One round timed so far: it includes compiling, but it is all there is.
        per_round = elapsed / max(round_num - self.start_round + 1, 1)
      eta = per_round * max(self.total_rounds - round_num, 0)
    fraction = round_num / self.total_rounds if self.total_rounds else 1.0
    tail = f"{format_seconds(elapsed)} eta {format_seconds(eta)}  {self._metrics_text()}"
    return with_bar(f"round {round_num}/{self.total_rounds}", fraction, tail.rstrip())


class DownloadProgress(Live):
  """A download's bytes done and total, speed and ETA on one live line; a `download.Progress`.

  Call it as `progress(bytes_done, bytes_total)` (what `download.ensure` and `download.download`
  do). The line appears on the first call and closes itself once `bytes_done` reaches a known
  `bytes_total`; use it as a context manager so that it also closes on errors and when the total
  is unknown. Writes nothing unless enabled (by default: only when `stream` is a terminal).

  Args:
    description: what is downloading, shown first on the line.
    enabled: draw the display; None means only when `stream` is a terminal.
    stream: where to draw; default `sys.stderr`.

  Example:
    In a terminal, while downloading::

      with DownloadProgress('emnist') as progress:
        directory = download.ensure(emnist.DIGITS_ONLY, progress=progress)
  """

  def __init__(self, description: str, *, enabled: Optional[bool] = None,
               stream: Optional[TextIO] = None):
    super().__init__(enabled, stream)
    self.description = description
    self._first: Optional[tuple[float, int]] = None  # (time, bytes) when the line opened.
    self._last_draw = 0.0

  def __enter__(self) -> DownloadProgress:
    return self

  def _rich_columns(self, rp: Any) -> Sequence[Any]:
    text = self.description.replace("{", "{{").replace("}", "}}")  # A format string.
    return (rp.TextColumn(text, markup=False), rp.BarColumn(), rp.DownloadColumn(),
            rp.TransferSpeedColumn(), rp.TextColumn("eta"), rp.TimeRemainingColumn())

  def __call__(self, bytes_done: int, bytes_total: Optional[int]) -> None:
    if not self.enabled:
      return
    now = time.monotonic()
    if not self.active:
      self._first = (now, bytes_done)
      self._open(total=bytes_total, completed=bytes_done)
    finished = bytes_total is not None and bytes_done >= bytes_total
    if self._progress is not None:
      self._progress.update(self._task, completed=bytes_done, total=bytes_total)
    elif self._line is not None and (finished or now - self._last_draw >= _DOWNLOAD_REDRAW_S):
      self._last_draw = now
      self._line.show(self._plain_text(bytes_done, bytes_total, now))
    if finished:
      self.close()

  def _plain_text(self, done: int, total: Optional[int], now: float) -> str:
    first_time, first_done = self._first or (now, done)
    seconds = now - first_time
    speed = (done - first_done) / seconds if seconds > 0 and done > first_done else None
    fraction = done / total if total else None
    eta = (total - done) / speed if speed and total is not None else None
    percent = f"{fraction:.0%} " if fraction is not None else ""
    return with_bar(self.description, fraction,
                     f"{format_byte_pair(done, total)} {percent}{format_bytes(speed)}/s "
                     f"eta {format_seconds(eta)}")


def _cell(value: Any) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.6g}"
  return str(value)


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                stream: Optional[TextIO] = None) -> None:
  """Prints a table: rich's on a terminal when rich is installed, aligned plain text otherwise.

  Always prints (it is output, not progress). Columns whose values are all numbers are
  right-aligned; floats show 6 significant digits, None an empty cell.

  Args:
    title: a line above the table.
    columns: the column headers.
    rows: one sequence of values per row, as many as `columns`.
    stream: where to print; default `sys.stdout`.

  Raises:
    ValueError: if a row does not have one value per column.
  """
  stream = sys.stdout if stream is None else stream
  for i, row in enumerate(rows):
    if len(row) != len(columns):
      raise ValueError(f"print_table: row {i} has {len(row)} values, expected {len(columns)} "
                       f"(one per column of {list(columns)}).")
  numeric = [bool(rows) and all(_is_number(r[j]) or r[j] is None for r in rows)
             for j in range(len(columns))]
  cells = [[_cell(v) for v in row] for row in rows]
  rich = import_rich() if is_tty(stream) else None
  if rich is not None:
    table = rich.table.Table(title=title)
    for name, right in zip(columns, numeric):
      table.add_column(name, justify="right" if right else "left")
    for row in cells:
      table.add_row(*(rich.text.Text(c) for c in row))  # Text: no markup in the values.
    rich.console.Console(file=stream).print(table)
    return
  widths = [max([len(c)] + [len(row[j]) for row in cells]) for j, c in enumerate(columns)]

  def line(values: Sequence[str]) -> str:
    return "  ".join(v.rjust(w) if right else v.ljust(w)
                     for v, w, right in zip(values, widths, numeric)).rstrip()

  stream.write(title + "\n")
  stream.write(line(columns) + "\n")
  stream.write(line(["-" * w for w in widths]) + "\n")
  for row in cells:
    stream.write(line(row) + "\n")
  stream.flush()
