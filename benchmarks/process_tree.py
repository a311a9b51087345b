"""A process and everything it starts: peak proportional set size, and leftovers to stop.

PSS divides each shared page among the processes mapping it, so the sum over a tree (TFF's
`worker_binary`, Ray's raylet and workers, included) counts shared libraries once, unlike RSS.
Linux only (/proc).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Optional


def _stat(pid: int) -> Optional[tuple[int, int, str]]:
  """(parent pid, start time in clock ticks, name) of `pid`, or None if it is gone or a
  zombie (exited, waiting to be reaped: nothing to stop)."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
      text = f.read()
  except OSError:
    return None
  name = text[text.index("(") + 1:text.rindex(")")]
  fields = text[text.rindex(")") + 2:].split()
  if fields[0] in ("Z", "X"):
    return None
  return int(fields[1]), int(fields[19]), name


def _pss_kib(pid: int) -> int:
  try:
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
      return next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
  except (OSError, ValueError):
    return 0


def descendants(root: int) -> dict[int, tuple[int, str]]:
  """Every live process under `root` (itself included): pid -> (start ticks, name)."""
  children: dict[int, list[int]] = {}
  info = {}
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      stat = _stat(int(entry))
      if stat is not None:
        info[int(entry)] = stat
        children.setdefault(stat[0], []).append(int(entry))
  found, todo = {}, [root]
  while todo:
    pid = todo.pop()
    if pid in info:
      found[pid] = info[pid][1:]
      todo.extend(children.get(pid, []))
  return found


class TreeMonitor:
  """Samples the PSS of a process tree every `interval` seconds in a thread; remembers every
  process seen in the tree, so that those still alive after the root exits can be stopped
  (even when they were re-parented to init)."""

  def __init__(self, root: int, interval: float = 0.25):
    self.root = root
    self.interval = interval
    self.peak_mib = 0.0
    self.samples = 0
    self.seen: dict[int, tuple[int, str]] = {}
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def __enter__(self) -> "TreeMonitor":
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    self._thread.join()

  def _run(self) -> None:
    while True:
      tree = descendants(self.root)
      self.seen.update(tree)
      if tree:
        self.peak_mib = max(self.peak_mib, sum(_pss_kib(p) for p in tree) / 1024)
        self.samples += 1
      if self._stop.wait(self.interval):
        return

  def leftovers(self) -> dict[int, str]:
    """Processes seen in the tree that still live (same pid and start time): pid -> name."""
    alive = {}
    for pid, (start, name) in self.seen.items():
      stat = _stat(pid)
      if stat is not None and stat[1] == start and pid != os.getpid():
        alive[pid] = name
    return alive


def stop(processes: dict[int, str], grace: float = 3.0) -> None:
  """SIGTERM, then SIGKILL after `grace` seconds, exactly these processes."""
  for pid in processes:
    try:
      os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
      pass
  deadline = time.monotonic() + grace
  while time.monotonic() < deadline and any(_stat(p) for p in processes):
    time.sleep(0.1)
  for pid in processes:
    if _stat(pid) is not None:
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass


def run_measured(command: list[str], *, env: Optional[dict] = None, timeout: float,
                 log_path: Optional[str] = None) -> dict:
  """Runs `command`, sampling its tree's PSS; stops what it leaves behind.

  Returns {"returncode", "wall_s", "peak_pss_mib", "leftovers": {pid: name}, "output"}.
  """
  start = time.perf_counter()
  with open(log_path or os.devnull, "w", encoding="utf-8") as log:
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    with TreeMonitor(process.pid) as monitor:
      try:
        returncode = process.wait(timeout=timeout)
      except subprocess.TimeoutExpired:
        returncode = None
    wall = time.perf_counter() - start
    leftovers = monitor.leftovers()
    stop(leftovers)
  output = ""
  if log_path:
    with open(log_path, encoding="utf-8", errors="replace") as f:
      output = f.read()
  return {"returncode": returncode, "wall_s": wall, "peak_pss_mib": monitor.peak_mib,
          "leftovers": leftovers, "output": output}
