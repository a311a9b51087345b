"""Terminal plumbing for the live displays: a redrawn line, stream proxies, log handlers.

See `federax.cli.progress` for the behaviour; this module is how it is done.
"""


from __future__ import annotations

import io
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional, TextIO



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


def format_byte_pair(done: float, total: Optional[float]) -> str:
  """'12.3/45.6 MB' (both in the unit of the total), as rich's DownloadColumn."""
  scale, unit = _unit(total if total is not None else done)
  digits = 0 if unit == "bytes" else 1
  total_text = "?" if total is None else f"{total / scale:.{digits}f}"
  return f"{done / scale:.{digits}f}/{total_text} {unit}"


def format_seconds(seconds: Optional[float]) -> str:
  if seconds is None:
    return "-:--:--"
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def is_tty(stream: Any) -> bool:
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError, OSError):
    return False


def _same_terminal(a: Any, b: Any) -> bool:
  """Whether two streams are terminals that draw in the same place (the same object or tty)."""
  if not (is_tty(a) and is_tty(b)):
    return False
  if a is b:
    return True
  try:
    return os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
  except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
    return False


def import_rich() -> Optional[Any]:
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
    return is_tty(self._file)

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


class Live:
  """What both displays share: open/close, the rich or plain backend, the redirects."""

  _speed_estimate_period = 30.0  # rich: seconds of history its speed (so its ETA) averages.

  def __init__(self, enabled: Optional[bool], stream: Optional[TextIO]):
    self._stream = sys.stderr if stream is None else stream
    self.enabled = is_tty(self._stream) if enabled is None else bool(enabled)
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
    rich = import_rich()
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


def with_bar(head: str, fraction: Optional[float], tail: str) -> str:
  """`head [####----] tail`, the bar as wide as the terminal leaves room for (or left out)."""
  room = shutil.get_terminal_size((80, 24)).columns - 1 - len(head) - len(tail) - 4
  width = min(room, 24)
  return f"{head} {_bar(fraction, width)} {tail}" if width >= 8 else f"{head} {tail}"
