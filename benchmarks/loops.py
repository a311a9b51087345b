"""Benchmark: a TFF-style `for batch in dataset:` client update, compiled vs run in Python.

    python -m benchmarks.loops           # the table (under a minute)
    python -m benchmarks.loops --smoke   # tiny sizes

A FedAvg-like round (broadcast, a local loop of SGD steps on a softmax regression, mean) whose
client update iterates its dataset with a Python `for` loop. On the vectorized runtime the loop
compiles into the round's program (`federax/core/loops.py`); the same loop with an `else:`
clause cannot, so that round runs on the sequential runtime, as every such loop did before.
Both start from the same weights; the table gives the median round time of interleaved repeats
and the largest difference of the results. Writes benchmarks/results/loops.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import federax as fx
from benchmarks import measure

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
SIZES = [(16, 20), (64, 20)]  # (clients, most batches per client); batches of 20 x 784.


def loss(w, x, y):
  logits = x @ w["kernel"] + w["bias"]
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))


def client_update(dataset, w):
  for batch in dataset:
    w = jax.tree.map(lambda a, g: a - 0.1 * g, w, jax.grad(loss)(w, batch["x"], batch["y"]))
  return w


def client_update_in_python(dataset, w):
  for batch in dataset:
    w = jax.tree.map(lambda a, g: a - 0.1 * g, w, jax.grad(loss)(w, batch["x"], batch["y"]))
  else:  # Not compiled: the round falls back to the sequential runtime.
    pass
  return w


def build_round(fn, rows: int):
  batch = fx.to_type(collections.OrderedDict(x=(np.float32, [rows, 784]),
                                             y=(np.int32, [rows])))
  weights = fx.to_type({"kernel": (np.float32, [784, 10]), "bias": (np.float32, [10])})
  local = fx.computation(fx.SequenceType(batch), weights)(fn)

  @fx.federated_computation(fx.FederatedType(fx.SequenceType(batch), fx.CLIENTS),
                            fx.FederatedType(weights, fx.SERVER))
  def round_(data, w):
    return fx.federated_mean(fx.federated_map(local, (data, fx.federated_broadcast(w))))
  return round_


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true")
  args = parser.parse_args()
  warnings.simplefilter("ignore", fx.runtime.FallbackWarning)
  rows = 4 if args.smoke else 20
  table = []
  for clients, most in ([(3, 2)] if args.smoke else SIZES):
    rng = np.random.default_rng(0)
    data = [[collections.OrderedDict(x=rng.normal(size=(rows, 784)).astype(np.float32),
                                     y=rng.integers(0, 10, rows).astype(np.int32))
             for _ in range(n)] for n in rng.integers(most // 4, most + 1, clients)]
    w = {"kernel": np.zeros((784, 10), np.float32), "bias": np.zeros(10, np.float32)}
    rounds = {"compiled": build_round(client_update, rows),
              "python": build_round(client_update_in_python, rows)}
    with fx.runtime.vectorized():
      timed = measure.interleaved({k: (lambda r=r: r(data, w)) for k, r in rounds.items()},
                                  repeats=1 if args.smoke else 5)
    difference = max(float(np.max(np.abs(timed["compiled"]["result"][k]
                                         - timed["python"]["result"][k]))) for k in w)
    assert difference < 1e-5, difference
    table.append({"clients": clients, "batches": int(sum(map(len, data))),
                  "compiled_s": timed["compiled"]["s"], "python_s": timed["python"]["s"],
                  "compiled_first_s": timed["compiled"]["first_s"],
                  "largest_difference": difference})
  lines = ["| clients | batches | compiled s/round | in Python s/round | ratio | first compiled "
           "call s | largest difference |", "| --- | --- | --- | --- | --- | --- | --- |"]
  lines += [f"| {r['clients']} | {r['batches']} | {r['compiled_s']:.3f} | {r['python_s']:.3f} | "
            f"{r['python_s'] / r['compiled_s']:.1f}x | {r['compiled_first_s']:.2f} | "
            f"{r['largest_difference']:.1e} |" for r in table]
  print("\n".join(lines))
  if args.smoke:
    print("smoke ok")
    return
  command = "python -m benchmarks.loops"
  info = {"command": command, "machine": measure.machine(), "jax": jax.__version__,
          "rows": table}
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "loops.json").write_text(json.dumps(info, indent=1) + "\n")
  (RESULTS / "loops.md").write_text(f"`{command}` (jax {jax.__version__}; "
                                    f"{measure.describe(info['machine'])})\n\n"
                                    + "\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
