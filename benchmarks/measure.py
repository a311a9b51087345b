"""Measurement helpers every benchmark shares: timing, XLA compile events, memory, the machine.

JAX is imported only inside the functions that need it: the harness and the runners import this
module too, and a runner's start-up time counts its imports.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from typing import Any, Callable

# The backend compile of one XLA program. JAX records it also when the persistent cache serves
# the program, so compilations are these events less the cache hits. (Trace events nest: federax
# traces inside its own trace, so they would count twice.)
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
CACHE_MISS_EVENT = "/jax/compilation_cache/cache_misses"


class CompileCounter:
  """Counts XLA compilations, persistent-cache hits and misses, and compile seconds, from
  `jax.monitoring` events. One process-wide instance: JAX listeners cannot be unregistered."""

  def __init__(self):
    self.compile_events = 0
    self.cache_hits = 0
    self.cache_misses = 0
    self.compile_s = 0.0
    self._registered = False

  def register(self) -> "CompileCounter":
    if not self._registered:
      import jax  # pylint: disable=g-import-not-at-top
      jax.monitoring.register_event_listener(self._on_event)
      jax.monitoring.register_event_duration_secs_listener(self._on_duration)
      self._registered = True
    return self

  def _on_event(self, event: str, **_) -> None:
    if event == CACHE_HIT_EVENT:
      self.cache_hits += 1
    elif event == CACHE_MISS_EVENT:
      self.cache_misses += 1

  def _on_duration(self, event: str, duration: float, **_) -> None:
    if event == COMPILE_EVENT:
      self.compile_events += 1
      self.compile_s += duration

  @property
  def compilations(self) -> int:
    """XLA compilations actually run: compile requests the persistent cache did not serve."""
    return self.compile_events - self.cache_hits

  def snapshot(self) -> dict:
    return {"compilations": self.compilations, "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses, "compile_s": self.compile_s}


COMPILES = CompileCounter()


def block(tree: Any) -> Any:
  """Waits for every JAX array in `tree` (other leaves pass through); returns `tree`."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree_util.tree_map(
      lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, tree)


def timed(fn: Callable[[], Any], repeats: int = 0) -> dict:
  """Times `fn()`: the first (compiling) call, and the median of `repeats` more.

  Returns `first_s`, `s` (the median; NaN without repeats), `compile_s` (XLA compile seconds
  during the first call) and `result` (the first call's result).
  """
  COMPILES.register()
  before = COMPILES.compile_s
  start = time.perf_counter()
  result = block(fn())
  first = time.perf_counter() - start
  compile_s = COMPILES.compile_s - before
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    block(fn())
    times.append(time.perf_counter() - start)
  return {"first_s": first, "s": statistics.median(times) if times else float("nan"),
          "compile_s": compile_s, "result": result}


def interleaved(contenders: dict[str, Callable[[], Any]], repeats: int) -> dict:
  """`timed` for several functions at once: after each one's first call, all run in turn
  `repeats` times, so that a burst of load on a shared machine hits them all alike."""
  results = {name: timed(fn) for name, fn in contenders.items()}
  times = {name: [] for name in contenders}
  for _ in range(repeats):
    for name, fn in contenders.items():
      start = time.perf_counter()
      block(fn())
      times[name].append(time.perf_counter() - start)
  for name, ts in times.items():
    results[name]["s"] = statistics.median(ts) if ts else float("nan")
  return results


def _status_mib(field: str) -> float:
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024
  raise RuntimeError(f"no {field} line in /proc/self/status")


def vm_hwm_mib() -> float:
  """Peak resident set of this process (VmHWM). Unlike ru_maxrss, which Linux carries across
  fork and exec, it starts afresh in each new program."""
  return _status_mib("VmHWM")


def rss_mib() -> float:
  """Resident set of this process now (VmRSS)."""
  return _status_mib("VmRSS")


def machine() -> dict:
  """The CPU, memory and load this run had: shared machines make absolute figures noisy."""
  info = {"platform": platform.platform(), "python": platform.python_version(),
          "cpus": os.cpu_count()}
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in lscpu.splitlines():
      key, _, value = line.partition(":")
      if key.strip() in ("Model name", "Hypervisor vendor", "L2 cache", "L3 cache"):
        info[key.strip()] = value.strip()
    with open("/proc/meminfo", encoding="ascii") as f:
      info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    info["load_average_at_start"] = os.getloadavg()
  except OSError:
    pass
  return info


def describe(info: dict) -> str:
  """`machine()` in one line, for a report's header."""
  model = info.get("Model name") or platform.processor() or platform.machine()
  load = info.get("load_average_at_start")
  return (f"{model}, {info['cpus']} CPUs, {info.get('memory_gib', '?')} GiB, {info['platform']}"
          + (f", load average at start {tuple(round(x, 2) for x in load)}" if load else ""))
