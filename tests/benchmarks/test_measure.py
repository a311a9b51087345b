"""benchmarks/measure.py: the timing, compile-count and memory helpers every benchmark uses."""

import jax
import jax.numpy as jnp

from benchmarks import measure


def test_timed_reports_the_first_call_the_median_and_the_result():
  calls = []
  t = measure.timed(lambda: calls.append(1) or len(calls), repeats=3)
  assert calls == [1, 1, 1, 1]
  assert t["result"] == 1
  assert t["first_s"] >= 0 and t["s"] >= 0 and t["compile_s"] >= 0


def test_a_new_program_counts_as_one_compilation_and_its_seconds():
  before = measure.compiles().snapshot()
  fn = jax.jit(lambda x: jnp.cos(x) + 1.5)
  t = measure.timed(lambda: fn(jnp.ones(7)), repeats=2)
  after = measure.compiles().snapshot()
  assert after["compilations"] >= before["compilations"] + 1
  assert t["compile_s"] > 0
  again = measure.compiles().snapshot()
  fn(jnp.ones(7)).block_until_ready()  # Compiled already: nothing new.
  assert measure.compiles().snapshot()["compilations"] == again["compilations"]


def test_memory_and_machine():
  assert measure.vm_hwm_mib() >= measure.rss_mib() > 0
  info = measure.machine()
  assert info["cpus"] >= 1
  assert str(info["cpus"]) in measure.describe(info)
