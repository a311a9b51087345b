"""Benchmark: the pieces of the robust, secure and compression aggregators' cost, alone.

    python -m benchmarks.aggregator_pieces            # 7 repeats (about a minute on 2 cores)
    python -m benchmarks.aggregator_pieces --smoke    # tiny sizes, one repeat (the test suite)

Each piece runs on the largest tensor of the MLP in benchmarks.aggregators (784 x 1024) at 100
clients, stacked `[100, 802816]`, as one `jax.jit` program, the pieces interleaved; the figure
is the best of the repeats. What is timed, and how the aggregators run it now (or ran it
before, where named so):
- `mean_sum`: the weighted mean's work: the weighted values written out, then added client
  after client (`reductions.client_sum`).
- `norms_one_pass`: zeroing's L-inf and clipping's L2 norm of each client as the aggregators
  take them now, one variadic reduction per tensor (`_one_pass`), vmapped as the runtime runs
  it; before: `norms_loop`, the two as two reductions, one client after another
  (`plan.step_reductions`), and `norms_vmapped`, vmapped.
- `extremes_one_pass`: a client's largest and smallest entry (SecureSumFactory's adaptive
  bounds and clipped counts) in one reduction, vmapped; `extremes_loop`: as two reductions,
  one client after another (before).
- `secure_sum`: the secure sum's loop as the runtime fuses it: each client's 32-bit encoding
  recomputed, its four 8-bit limbs added in two uint32 words (16-bit lanes), four clients a
  step, no range check for masked limbs; `secure_sum_before`: four words and a range (OR)
  accumulator, one client a step.
- `compression_loop`: EncodedSumFactory's loop: each client's min and max (one reduction), the
  8-bit stochastic rounding with the counter hash, decoding and adding, four clients a step;
  `compression_minmax` (two reductions, before), `compression_extremes` (one) and
  `compression_hash`: its min and max, and its hashed uniforms, alone.
Writes benchmarks/results/aggregator_pieces.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import measure
from federax.aggregators import _hash_random, _one_pass, _secure_encoding as enc
from federax.aggregators.robust import _global_norms
from federax.runtime.vectorized import execution

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def pieces(n: int) -> dict:
  """name -> the function of the stacked values `x` ([n, d]) and weights `w` ([n]) it times."""
  lo, hi = jnp.float32(-0.05), jnp.float32(0.05)
  key = jax.random.PRNGKey(1)
  levels = np.float32(255)

  def mean_sum(x, w):
    y = x * w[:, None]
    return jax.lax.fori_loop(1, n, lambda i, a: a + y[i], y[0])

  def two_norms(r):
    return jnp.sqrt(jnp.sum(jnp.square(r))), jnp.max(jnp.abs(r), initial=0.0)

  def limbs(r):
    return enc.split(enc.quantize(r, lo, hi), 32)

  def secure_sum(x, w):
    def add(i, acc):
      l = limbs(x[i])
      return [acc[0] + (l[0] | (l[1] << 16)), acc[1] + (l[2] | (l[3] << 16))]
    l = limbs(x[0])
    return execution._fori_several(n, add, [l[0] | (l[1] << 16), l[2] | (l[3] << 16)], start=1)

  def secure_sum_before(x, w):
    def add(i, acc):
      l = limbs(x[i])
      return [a + b for a, b in zip(acc[0], l)], acc[1] | l[0] | l[1] | l[2] | l[3]
    l = limbs(x[0])
    return jax.lax.fori_loop(1, n, add, (list(l), l[0] | l[1] | l[2] | l[3]))

  def encode_decode(r, k):
    low, high = _one_pass.extremes(r)
    span = high - low
    scaled = jnp.where(span > 0, (r - low) / jnp.where(span > 0, span, 1), 0) * levels
    floor = jnp.floor(scaled)
    uniform = _hash_random.uniform(k, r.shape)
    q = (floor + (uniform < scaled - floor).astype(jnp.float32)).astype(jnp.uint8)
    return q.astype(jnp.float32) / levels * (high - low) + low

  def client_keys():
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))

  def compression_loop(x, w):
    keys = client_keys()
    return execution._fori_several(n, lambda i, a: a + encode_decode(x[i], keys[i]),
                                   jnp.zeros(x.shape[1:]))

  def compression_hash(x, w):
    keys = client_keys()
    return execution._fori_several(
        n, lambda i, a: a + _hash_random.uniform(keys[i], x.shape[1:]), jnp.zeros(x.shape[1:]))

  def compression_minmax(x, w):
    return jax.lax.fori_loop(0, n, lambda i, a: a + jnp.max(x[i]) - jnp.min(x[i]), 0.0)

  def compression_extremes(x, w):
    def step(i, a):
      low, high = _one_pass.extremes(x[i])
      return a + high - low
    return jax.lax.fori_loop(0, n, step, 0.0)

  return {
      "mean_sum": mean_sum,
      "norms_one_pass": lambda x, w: jax.vmap(lambda r: _global_norms(r, (math.inf, 2.0)))(x),
      "norms_loop": lambda x, w: jax.lax.map(two_norms, x),
      "norms_vmapped": lambda x, w: jax.vmap(two_norms)(x),
      "extremes_one_pass": lambda x, w: jax.vmap(_one_pass.extremes)(x),
      "extremes_loop": lambda x, w: jax.lax.map(
          lambda r: (jnp.max(r, initial=-jnp.inf), jnp.min(r, initial=jnp.inf)), x),
      "secure_sum": secure_sum,
      "secure_sum_before": secure_sum_before,
      "compression_loop": compression_loop,
      "compression_minmax": compression_minmax,
      "compression_extremes": compression_extremes,
      "compression_hash": compression_hash,
  }


def bench(n: int, d: int, repeats: int) -> dict:
  x = jax.random.normal(jax.random.PRNGKey(0), (n, d)) * 1e-2
  w = jnp.linspace(1.0, 2.0, n)
  fns = {name: jax.jit(fn) for name, fn in pieces(n).items()}
  for fn in fns.values():
    measure.block(fn(x, w))
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      measure.block(fn(x, w))
      times[name].append(time.perf_counter() - start)
  return {name: {"best_ms": 1e3 * min(ts), "median_ms": 1e3 * float(np.median(ts))}
          for name, ts in times.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  n, d = (3, 4096) if args.smoke else (100, 784 * 1024)
  repeats = 1 if args.smoke else args.repeats
  command = "python -m benchmarks.aggregator_pieces" + (" --smoke" if args.smoke else "")
  if not args.smoke and args.repeats != parser.get_default("repeats"):
    command += f" --repeats {args.repeats}"
  report = {"command": command, "machine": measure.machine(), "clients": n, "elements": d,
            "pieces": bench(n, d, repeats)}
  report["load_average_at_end"] = list(os.getloadavg())
  lines = ["| piece | best ms | median ms |", "| --- | --- | --- |"]
  lines += [f"| {name} | {r['best_ms']:.1f} | {r['median_ms']:.1f} |"
            for name, r in report["pieces"].items()]
  table = "\n".join(lines)
  print(table)
  if args.smoke:
    print("smoke ok")
    return
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / "aggregator_pieces.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
  (RESULTS / "aggregator_pieces.md").write_text(f"`{command}`\n\n{table}\n")


if __name__ == "__main__":
  main()
