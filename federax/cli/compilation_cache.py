"""JAX's persistent compilation cache for `federax train`/`resume`, and a count of compilations.

A run's first round compiles its programs (seconds for a conv model on CPU). With the cache on,
a later process running the same programs loads them from disk instead. On by default, in
`$XDG_CACHE_HOME/federax/jax` (or `~/.cache/federax/jax`); `--compilation-cache DIR` or the
`FEDERAX_COMPILATION_CACHE` environment variable chooses another directory, `none` turns it off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
from collections.abc import Iterator
from typing import Optional

ENV_VAR = "FEDERAX_COMPILATION_CACHE"
OFF = "none"

# The backend compile of one XLA program. JAX records it also when the persistent cache serves
# the program, so compilations actually run are these events less the cache hits.
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
CACHE_MISS_EVENT = "/jax/compilation_cache/cache_misses"
# What a warm cache does not save: tracing to jaxprs and lowering them to MLIR.
TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
LOWER_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"


def default_dir() -> pathlib.Path:
  base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base) / "federax" / "jax"


def resolve(option: Optional[str]) -> Optional[pathlib.Path]:
  """The cache directory from the option, else the environment variable, else the default;
  None when either says `none`."""
  value = option if option is not None else os.environ.get(ENV_VAR, "")
  if value.strip().lower() == OFF:
    return None
  return pathlib.Path(value).expanduser() if value.strip() else default_dir()


def add_argument(parser) -> None:
  """`--compilation-cache DIR|none`, for the commands that train."""
  parser.add_argument("--compilation-cache", metavar="DIR", default=None,
                      help=f"JAX's persistent compilation cache directory, or {OFF!r} (default: "
                           f"${ENV_VAR}, else $XDG_CACHE_HOME/federax/jax or ~/.cache/federax/jax)")


# A federax run compiles several small programs (a round, an evaluation, aggregation steps).
# JAX's default caches only programs that took over a second to compile, and W1's six take
# about a second together (benchmarks/results/first_round.md). Every program goes in, whatever
# its compile time or size.
SETTINGS = {"jax_persistent_cache_min_compile_time_secs": 0.0,
            "jax_persistent_cache_min_entry_size_bytes": -1}


@contextlib.contextmanager
def enabled(directory: Optional[pathlib.Path]) -> Iterator[Optional[pathlib.Path]]:
  """JAX's persistent compilation cache in `directory` for the block, or off (None: also a
  cache that JAX_COMPILATION_CACHE_DIR set); yields the directory in use, or None.

  The previous settings come back afterwards, and JAX's cache object is reset both ways, so that
  runs in one process (the tests) each use their own directory.
  """
  if directory is not None:
    try:
      directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # A read-only home, say: training goes on, compiling without a cache.
      logging.getLogger("federax").warning("No compilation cache in %s: %s", directory, e)
      directory = None
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
  settings = ({"jax_enable_compilation_cache": False} if directory is None else
              {"jax_enable_compilation_cache": True, "jax_compilation_cache_dir": str(directory),
               **SETTINGS})
  previous = {name: jax.config.values[name] for name in settings}
  compilation_cache.reset_cache()  # JAX opens its cache once, in the first directory it sees.
  for name, value in settings.items():
    jax.config.update(name, value)
  try:
    yield directory
  finally:
    for name, value in previous.items():
      jax.config.update(name, value)
    compilation_cache.reset_cache()


class CompileCounter:
  """Counts XLA compilations, persistent-cache hits and misses, and compile seconds while it
  is entered (from `jax.monitoring` events)."""

  def __init__(self):
    self.compile_events = 0
    self.cache_hits = 0
    self.cache_misses = 0
    self.compile_s = 0.0
    self.trace_s = 0.0
    self.lower_s = 0.0

  def __enter__(self) -> "CompileCounter":
    import jax  # pylint: disable=g-import-not-at-top
    jax.monitoring.register_event_listener(self._on_event)
    jax.monitoring.register_event_duration_secs_listener(self._on_duration)
    return self

  def __exit__(self, *exc) -> None:
    import jax  # pylint: disable=g-import-not-at-top
    jax.monitoring.unregister_event_listener(self._on_event)
    jax.monitoring.unregister_event_duration_listener(self._on_duration)

  def _on_event(self, event: str, **_) -> None:
    if event == CACHE_HIT_EVENT:
      self.cache_hits += 1
    elif event == CACHE_MISS_EVENT:
      self.cache_misses += 1

  def _on_duration(self, event: str, duration: float, **_) -> None:
    if event == COMPILE_EVENT:
      self.compile_events += 1
      self.compile_s += duration
    elif event == TRACE_EVENT:
      self.trace_s += duration
    elif event == LOWER_EVENT:
      self.lower_s += duration

  @property
  def compilations(self) -> int:
    """XLA compilations actually run: compile requests the persistent cache did not serve."""
    return self.compile_events - self.cache_hits

  def snapshot(self) -> dict:
    return {"compilations": self.compilations, "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses, "compile_s": self.compile_s,
            "trace_s": self.trace_s, "lower_s": self.lower_s}
