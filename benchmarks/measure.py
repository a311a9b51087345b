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

_compiles = []


def compiles():
  """The process-wide count of XLA compilations, cache hits and compile seconds: the counter
  `federax train` reports from (`federax.cli.compilation_cache.CompileCounter`), entered on
  the first call and kept for the life of the process."""
  if not _compiles:
    from federax.cli.compilation_cache import CompileCounter  # pylint: disable=g-import-not-at-top
    _compiles.append(CompileCounter().__enter__())
  return _compiles[0]


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
  before = compiles().compile_s
  start = time.perf_counter()
  result = block(fn())
  first = time.perf_counter() - start
  compile_s = compiles().compile_s - before
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
