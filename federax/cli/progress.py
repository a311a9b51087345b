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

import io
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional, TextIO

from federax.cli.plot import select_metric

_DOWNLOAD_REDRAW_S = 0.1  # Plain mode: redraw a download line at most this often.


def _unit(n: float) -> tuple[float, str]:
  for i, unit in enumerate(("bytes", "kB", "MB", "GB", "TB")):
    if abs(n) < 1000 ** (i + 1) or unit == "TB":
      return 1000.0 ** i, unit
  raise AssertionError("unreachable")


def format_bytes(n: Optional[float]) -> str:
  """A byte count in decimal units, as rich shows them: '950 bytes', '12.3 MB', '?' for None."""
  if n is None:
    return "?"
  scale, unit = _unit(n)
  return f"{n:.0f} {unit}" if unit == "bytes" else f"{n / scale:.1f} {unit}"


def _format_byte_pair(done: float, total: Optional[float]) -> str:
  """'12.3/45.6 MB' (both in the unit of the total), as rich's DownloadColumn."""
  scale, unit = _unit(total if total is not None else done)
  digits = 0 if unit == "bytes" else 1
  total_text = "?" if total is None else f"{total / scale:.{digits}f}"
  return f"{done / scale:.{digits}f}/{total_text} {unit}"


def _format_seconds(seconds: Optional[float]) -> str:
  if seconds is None:
    return "-:--:--"
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _is_tty(stream: Any) -> bool:
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError, OSError):
    return False


def _same_terminal(a: Any, b: Any) -> bool:
  """Whether two streams are terminals that draw in the same place (the same object or tty)."""
  if not (_is_tty(a) and _is_tty(b)):
    return False
  if a is b:
    return True
  try:
    return os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
  except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
    return False


def _import_rich() -> Optional[Any]:
  """The `rich` package with its console, progress and table modules loaded, or None."""
  try:  # Imported here: rich is optional.
    import rich.console
    import rich.progress
    import rich.table
    import rich.text
  except ImportError:
    return None
  return rich


class _PlainLine:
  """One status line on a terminal, redrawn in place with `\\r` (no ANSI codes needed)."""

  def __init__(self, stream: TextIO):
    self.stream = stream
    self.lock = threading.RLock()
    self._text = ""
    self._drawn = 0  # Characters now on the line, to blank out when it is rewritten.

  def show(self, text: str) -> None:
    width = shutil.get_terminal_size((80, 24)).columns - 1  # A wrapped line cannot be redrawn.
    with self.lock:
      self._text = text[:max(width, 10)]
      self._draw()

  def _draw(self) -> None:
    pad = " " * max(self._drawn - len(self._text), 0)
    self.stream.write("\r" + self._text + pad)
    self.stream.flush()
    self._drawn = len(self._text)

  def clear(self) -> None:
    with self.lock:
      if self._drawn:
        self.stream.write("\r" + " " * self._drawn + "\r")
        self._drawn = 0

  def redraw(self) -> None:
    with self.lock:
      if self._text:
        self._draw()

  def close(self) -> None:
    """Leaves the last state on screen and moves to the next line."""
    with self.lock:
      if self._drawn:
        self.stream.write("\n")
        self.stream.flush()
      self._text, self._drawn = "", 0


class _LineProxy(io.TextIOBase):
  """Stands in for sys.stdout/sys.stderr while a plain line is shown: complete lines are written
  above the status line (clear, write, redraw); a partial line waits for its newline."""

  def __init__(self, file: TextIO, line: _PlainLine):
    super().__init__()
    self._file, self._line, self._buffer = file, line, ""

  def write(self, text: str) -> int:
    with self._line.lock:
      self._buffer += text
      if "\n" in self._buffer:
        complete, self._buffer = self._buffer.rsplit("\n", 1)
        self._line.clear()
        self._line.stream.flush()
        self._file.write(complete + "\n")
        self._file.flush()
        self._line.redraw()
    return len(text)

  def flush(self) -> None:
    self._file.flush()

  def release(self) -> None:
    """Writes a pending partial line (called once the status line is gone)."""
    if self._buffer:
      self._file.write(self._buffer)
      self._file.flush()
      self._buffer = ""

  def writable(self) -> bool:
    return True

  def isatty(self) -> bool:
    return _is_tty(self._file)

  def fileno(self) -> int:
    return self._file.fileno()

  def __getattr__(self, name: str) -> Any:  # buffer, errors, name, ...: the real stream's.
    if name.startswith("_"):
      raise AttributeError(name)
    return getattr(self._file, name)

  @property
  def encoding(self) -> str:  # type: ignore[override]
    return getattr(self._file, "encoding", "utf-8")


def _all_stream_handlers() -> list[logging.StreamHandler]:
  loggers = [logging.getLogger()] + [
      logger for logger in logging.Logger.manager.loggerDict.values()
      if isinstance(logger, logging.Logger)]
  return [h for logger in loggers for h in logger.handlers
          if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


def _point_handlers(replacements: Mapping[int, TextIO]) -> Callable[[], None]:
  """Points the stream handlers that hold a replaced stream at its stand-in; returns the undo."""
  moved = []
  for handler in _all_stream_handlers():
    new = replacements.get(id(handler.stream))
    if new is not None:
      moved.append((handler, handler.setStream(new), new))

  def restore() -> None:
    for handler, old, new in moved:
      if handler.stream is new:
        handler.setStream(old)
  return restore


class _Live:
  """What both displays share: open/close, the rich or plain backend, the redirects."""

  _speed_estimate_period = 30.0  # rich: seconds of history its speed (so its ETA) averages.

  def __init__(self, enabled: Optional[bool], stream: Optional[TextIO]):
    self._stream = sys.stderr if stream is None else stream
    self.enabled = _is_tty(self._stream) if enabled is None else bool(enabled)
    self._progress: Any = None  # A rich.progress.Progress while shown with rich.
    self._task: Any = None
    self._line: Optional[_PlainLine] = None  # While shown without rich.
    self._proxies: list[tuple[str, TextIO, _LineProxy]] = []
    self._restore_handlers: Optional[Callable[[], None]] = None

  @property
  def active(self) -> bool:
    return self._progress is not None or self._line is not None

  def _rich_columns(self, rich_progress: Any) -> Sequence[Any]:
    raise NotImplementedError

  def _open(self, total: Optional[float], completed: float, **fields: Any) -> None:
    """Starts the display (a no-op when disabled or already open)."""
    if not self.enabled or self.active:
      return
    originals = {"stdout": sys.stdout, "stderr": sys.stderr}
    redirect = {name: _same_terminal(s, self._stream) for name, s in originals.items()}
    rich = _import_rich()
    if rich is not None:
      self._progress = rich.progress.Progress(
          *self._rich_columns(rich.progress), console=rich.console.Console(file=self._stream),
          redirect_stdout=redirect["stdout"], redirect_stderr=redirect["stderr"],
          speed_estimate_period=self._speed_estimate_period)
      self._task = self._progress.add_task("", total=total, completed=completed, **fields)
      self._progress.start()
    else:
      self._line = _PlainLine(self._stream)
      for name, original in originals.items():
        if redirect[name]:
          proxy = _LineProxy(original, self._line)
          self._proxies.append((name, original, proxy))
          setattr(sys, name, proxy)
    replaced = {id(s): getattr(sys, name) for name, s in originals.items()
                if getattr(sys, name) is not s}
    self._restore_handlers = _point_handlers(replaced)

  def close(self) -> None:
    """Stops the display, leaving its last state on screen (safe to call more than once)."""
    if self._restore_handlers is not None:
      self._restore_handlers()
      self._restore_handlers = None
    if self._progress is not None:
      self._progress.stop()
      self._progress = self._task = None
    if self._line is not None:
      self._line.close()
      for name, original, proxy in reversed(self._proxies):
        if getattr(sys, name) is proxy:
          setattr(sys, name, original)
        proxy.release()
      self._proxies.clear()
      self._line = None

  def __enter__(self):
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self.close()


def _bar(fraction: Optional[float], width: int) -> str:
  if fraction is None:
    return "[" + "?" * width + "]"
  filled = int(round(min(max(fraction, 0.0), 1.0) * width))
  return "[" + "#" * filled + "-" * (width - filled) + "]"


def _with_bar(head: str, fraction: Optional[float], tail: str) -> str:
  """`head [####----] tail`, the bar as wide as the terminal leaves room for (or left out)."""
  room = shutil.get_terminal_size((80, 24)).columns - 1 - len(head) - len(tail) - 4
  width = min(room, 24)
  return f"{head} {_bar(fraction, width)} {tail}" if width >= 8 else f"{head} {tail}"


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
  flat: dict[str, float] = {}
  for key, value in metrics.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(_flatten(value, name + "/"))
    elif getattr(value, "ndim", 0) == 0:
      try:
        flat[name] = float(value)
      except (TypeError, ValueError):
        pass  # Not a scalar (an array, a string): nothing to show on one line.
  return flat


class RoundProgress(_Live):
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
    >>> with RoundProgress(total_rounds=10) as progress:
    ...   for round_num in range(1, 11):
    ...     state, metrics = process.next(state, data)
    ...     progress.update(round_num, flat_metrics)
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
    self._remember(_flatten(metrics))
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

  def _metrics_text(self) -> str:
    """'loss 0.4123 acc 0.8712 | eval loss 0.45 acc 0.85', with what is known so far."""
    groups = []
    for evaluation in (False, True):
      shown = [f"{label} {self._shown[kind, evaluation]:.4g}"
               for kind, label in (("loss", "loss"), ("accuracy", "acc"))
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
    tail = f"{_format_seconds(elapsed)} eta {_format_seconds(eta)}  {self._metrics_text()}"
    return _with_bar(f"round {round_num}/{self.total_rounds}", fraction, tail.rstrip())


class DownloadProgress(_Live):
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
    >>> with DownloadProgress('emnist') as progress:
    ...   directory = download.ensure(emnist.DIGITS_ONLY, progress=progress)
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
    return _with_bar(self.description, fraction,
                     f"{_format_byte_pair(done, total)} {percent}{format_bytes(speed)}/s "
                     f"eta {_format_seconds(eta)}")


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
  rich = _import_rich() if _is_tty(stream) else None
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
