"""Benchmark: reducing `[n, d]` client values over the client axis on XLA:CPU.

    python -m benchmarks.client_reductions           # the full table (a minute)
    python -m benchmarks.client_reductions --smoke   # tiny sizes (the test suite)

Compares `jnp.sum(x, axis=0)` (XLA's reduction) with adding the rows in a `fori_loop` (what
`federax.runtime.vectorized.reductions` does on one CPU device) and with a dot against ones,
for client counts and row widths of federated rounds. Writes
benchmarks/results/client_reductions.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import measure

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
SHAPES = [(10, 1_200_000), (100, 1_000_000), (1000, 1000), (10000, 10), (8, 100)]


def contenders() -> dict:
  def loop(x):
    return jax.lax.fori_loop(1, x.shape[0], lambda i, acc: acc + x[i], x[0])

  return {"jnp.sum": jax.jit(lambda x: jnp.sum(x, axis=0)), "fori_loop": jax.jit(loop),
          "dot": jax.jit(lambda x: jnp.ones(x.shape[0], x.dtype) @ x),
          "jnp.max": jax.jit(lambda x: jnp.max(x, axis=0))}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true")
  args = parser.parse_args()
  shapes = [(4, 5000)] if args.smoke else SHAPES
  rows = []
  for n, d in shapes:
    x = jnp.asarray(np.random.default_rng(0).normal(size=(n, d)).astype(np.float32))
    timed = measure.interleaved({k: (lambda f=f: f(x)) for k, f in contenders().items()},
                                repeats=1 if args.smoke else 5)
    rows.append({"n": n, "d": d, **{k: v["s"] * 1000 for k, v in timed.items()}})
    np.testing.assert_allclose(contenders()["fori_loop"](x), np.sum(np.asarray(x), 0),
                               rtol=1e-4, atol=1e-4)
  lines = ["| clients | row | jnp.sum ms | fori_loop ms | dot ms | jnp.max ms | sum / loop |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    lines.append(f"| {r['n']} | {r['d']} | {r['jnp.sum']:.2f} | {r['fori_loop']:.2f} | "
                 f"{r['dot']:.2f} | {r['jnp.max']:.2f} | {r['jnp.sum'] / r['fori_loop']:.1f} |")
  table = "\n".join(lines)
  print(table)
  if args.smoke:
    print("smoke ok")
    return
  RESULTS.mkdir(exist_ok=True)
  command = "python -m benchmarks.client_reductions"
  info = {"command": command, "machine": measure.machine(), "jax": jax.__version__, "rows": rows}
  (RESULTS / "client_reductions.json").write_text(json.dumps(info, indent=1) + "\n")
  (RESULTS / "client_reductions.md").write_text(f"`{command}` (jax {jax.__version__})\n\n"
                                                f"{table}\n")


if __name__ == "__main__":
  main()
