"""Benchmark: a sparse round (`fx.learning.sparse.build_sparse_round`) against the dense
equivalent, on a table of 10^6 rows x 64 where each client touches 1% of the rows.

    python -m benchmarks.sparse            # the full run (a few minutes on 2 cores)
    python -m benchmarks.sparse --smoke    # tiny sizes; checks sparse == dense; writes nothing

Workload: a float32 table `[rows, 64]`; `clients` clients a round, each holding `keys` distinct
row ids (1% of the rows) and a target row for each; local training is 3 SGD steps (rate 0.5)
on `0.5 * ||row - target||^2` for its rows; the server adds the mean update (server rate 1.0).
- sparse: each client `federated_select`s its rows (`keys x 64`), returns `(keys, deltas)`;
  the server segment-sums them (`sparse_sum(mode="stack")`).
- dense: the whole table is broadcast; each client returns a dense `rows x 64` delta (zero off
  its rows); `federated_mean`. The same arithmetic, so the new tables agree (checked in smoke).
Each variant runs in its own process (peak memory = that process's VmHWM, which includes
JAX and the server's table); a round's time is the median of `--rounds` rounds after the first
(compiling) one. Writes benchmarks/results/sparse.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WIDTH, STEPS, LR = 64, 3, 0.5


def client_data(rows: int, keys: int, clients: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  return [(np.sort(rng.choice(rows, keys, replace=False)).astype(np.int32),
           rng.normal(size=(keys, WIDTH)).astype(np.float32)) for _ in range(clients)]


def local_delta(rows, targets):
  """3 SGD steps on 0.5 ||r - t||^2 from `rows`: the trained minus the received rows."""
  trained = rows
  for _ in range(STEPS):
    trained = trained - LR * (trained - targets)
  return trained - rows


def sparse_round(rows: int, keys: int):
  import federax as fx  # pylint: disable=g-import-not-at-top
  data_type = fx.to_type((fx.TensorType(np.int32, [keys]),
                          fx.TensorType(np.float32, [keys, WIDTH])))
  keys_fn = fx.computation(data_type)(lambda d: (d[0], np.int32(keys)))
  update = fx.computation(fx.TensorType(np.float32, [keys, WIDTH]), data_type,
                          fx.TensorType(np.int32, [keys]), np.int32)(
      lambda r, d, k, n: local_delta(r, d[1]))
  round_fn = fx.learning.sparse.build_sparse_round(
      fx.TensorType(np.float32, [rows, WIDTH]), data_type, keys_fn, update)
  return lambda table, data: round_fn(table, data).table


def dense_round(rows: int, keys: int):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import federax as fx  # pylint: disable=g-import-not-at-top
  table_type = fx.TensorType(np.float32, [rows, WIDTH])
  data_type = fx.to_type((fx.TensorType(np.int32, [keys]),
                          fx.TensorType(np.float32, [keys, WIDTH])))

  @fx.computation(table_type, data_type)
  def client_update(table, data):
    tokens, targets = data
    return jnp.zeros_like(table).at[tokens].add(local_delta(table[tokens], targets))

  add = fx.computation(table_type, table_type)(lambda a, b: a + b)

  @fx.federated_computation(fx.FederatedType(table_type, fx.SERVER),
                            fx.FederatedType(data_type, fx.CLIENTS))
  def round_fn(table, data):
    deltas = fx.federated_map(client_update, (fx.federated_broadcast(table), data))
    return fx.federated_map(add, (table, fx.federated_mean(deltas)))

  return round_fn


def run_variant(variant: str, rows: int, keys: int, clients: int, rounds: int) -> dict:
  """One variant's figures, measured in this process."""
  from benchmarks import measure  # pylint: disable=g-import-not-at-top
  data = client_data(rows, keys, clients)
  table = np.zeros((rows, WIDTH), np.float32)
  round_fn = (sparse_round if variant == "sparse" else dense_round)(rows, keys)
  before = measure.rss_mib()
  state = {"table": table}

  def one():
    state["table"] = round_fn(state["table"], data)
    return state["table"]

  timing = measure.timed(one, repeats=rounds)
  return {"variant": variant, "rows": rows, "width": WIDTH, "keys_per_client": keys,
          "clients": clients, "rounds": rounds, "s_per_round": timing["s"],
          "first_round_s": timing["first_s"], "rss_before_mib": before,
          "peak_mib": measure.vm_hwm_mib(),
          "client_download_mib": (keys if variant == "sparse" else rows) * WIDTH * 4 / 2**20,
          "client_upload_mib": (keys * (WIDTH + 1) if variant == "sparse" else rows * WIDTH)
                               * 4 / 2**20}


def child(variant: str, rows: int, keys: int, clients: int, rounds: int) -> dict:
  """`run_variant` in a fresh process, so its peak memory is its own."""
  out = subprocess.run([sys.executable, "-m", "benchmarks.sparse", "--variant", variant,
                        "--rows", str(rows), "--keys", str(keys), "--clients", str(clients),
                        "--rounds", str(rounds)], cwd=ROOT, capture_output=True, text=True,
                       check=False)
  if out.returncode != 0:
    raise RuntimeError(f"{variant} run failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def render(results: list[dict]) -> str:
  lines = ["| variant | rows x width | keys/client | clients | s/round | first round s | "
           "peak MiB (RSS before round 1) | client download MiB | client upload MiB |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in results:
    lines.append(f"| {r['variant']} | {r['rows']:,} x {r['width']} | {r['keys_per_client']:,} | "
                 f"{r['clients']} | {r['s_per_round']:.3f} | {r['first_round_s']:.2f} | "
                 f"{r['peak_mib']:.0f} ({r['rss_before_mib']:.0f}) | "
                 f"{r['client_download_mib']:.2f} | {r['client_upload_mib']:.2f} |")
  return "\n".join(lines)


def smoke() -> None:
  import federax as fx  # pylint: disable=g-import-not-at-top
  rows, keys, clients = 2000, 20, 3
  data = client_data(rows, keys, clients)
  table = np.random.default_rng(1).normal(size=(rows, WIDTH)).astype(np.float32)
  with fx.runtime.vectorized():
    a = np.asarray(sparse_round(rows, keys)(table, data))
    b = np.asarray(dense_round(rows, keys)(table, data))
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  results = [run_variant(v, rows, keys, clients, 1) for v in ("sparse", "dense")]
  print(render(results))
  print("smoke ok")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--variant", choices=["sparse", "dense"])
  parser.add_argument("--rows", type=int, default=1_000_000)
  parser.add_argument("--dense-rows", type=int, default=1_000_000)
  parser.add_argument("--keys", default="1000,10000",
                      help="keys per client, a comma-separated list (sparse runs each)")
  parser.add_argument("--clients", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  if args.smoke:
    smoke()
    return
  keys = [int(k) for k in str(args.keys).split(",")]
  if args.variant:
    print(json.dumps(run_variant(args.variant, args.rows, keys[0], args.clients, args.rounds)))
    return
  from benchmarks import measure  # pylint: disable=g-import-not-at-top
  info = {"machine": measure.machine()}
  results = []
  for k in keys:
    results.append(child("sparse", args.rows, k, args.clients, args.rounds))
    print(render(results[-1:]), flush=True)
  # The dense round's cost is the table's, whatever the keys: one run, at the first count.
  results.append(child("dense", args.dense_rows, keys[0], args.clients, args.rounds))
  print(render(results[-1:]), flush=True)
  command = "python -m benchmarks.sparse" + "".join(
      f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items()
      if k not in ("smoke", "variant") and v != parser.get_default(k))
  info.update({"command": command, "results": results})
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "sparse.json").write_text(json.dumps(info, indent=1) + "\n")
  (RESULTS / "sparse.md").write_text(
      f"`{command}` ({measure.describe(info['machine'])}; vectorized runtime on CPU; medians "
      f"of {args.rounds} rounds after the first; each variant in its own process)\n\n"
      f"{render(results)}\n")


if __name__ == "__main__":
  main()
