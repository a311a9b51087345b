"""Benchmark: building clients' data for TFF's seed-tutorial chain on real FEMNIST (LEAF).

    python -m benchmarks.data_pipeline            # the full run (about a minute)
    python -m benchmarks.data_pipeline --smoke    # tiny and fast (the test suite runs this)

Data: FEMNIST writers from ../shared/data/femnist-leaf, the three LEAF samples merged. Measured:

- one round's data for 10 and for 100 clients: `ds.repeat(5).shuffle(100, seed=1)
  .masked_batch(20).to_stacked()` per client (what the vectorized runtime consumes), and plain
  iteration of `ds.repeat(5).shuffle(100, seed=1).batch(20)`; "cold" includes parsing the LEAF
  shards (first touch), "warm" is the median of repeats with the shards cached;
- one full pass over all train writers (`to_stacked()` of each client's dataset, cold), in a
  fresh process, with its time and peak resident memory (VmHWM from /proc/self/status).

tf.data is compared when TensorFlow is importable (it is not a federax dependency). Prints a table
and writes benchmarks/results/data_pipeline.{json,md} (not with --smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

import federax as fx
from benchmarks import measure
from federax.simulation.datasets import femnist

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "femnist-leaf"
EPOCHS, BUFFER, BATCH, SEED = 5, 100, 20, 1


def stacked_round(train, client_ids) -> int:
  """The seed-tutorial chain as masked batches, stacked per client; returns the real examples."""
  total = 0
  for cid in client_ids:
    ds = train.create_dataset(cid).repeat(EPOCHS).shuffle(BUFFER, seed=SEED)
    total += int(ds.masked_batch(BATCH).to_stacked()["mask"].sum())
  return total


def iterated_round(train, client_ids) -> int:
  """The seed-tutorial chain as plain batches, iterated batch by batch; returns the examples."""
  total = 0
  for cid in client_ids:
    for batch in train.create_dataset(cid).repeat(EPOCHS).shuffle(BUFFER, seed=SEED).batch(BATCH):
      total += len(batch["label"])
  return total


def tf_round(train, client_ids) -> int:
  """The same chain in tf.data, from the same NumPy arrays (only when TensorFlow is present)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  total = 0
  for cid in client_ids:
    arrays = train.create_dataset(cid).to_stacked()
    ds = tf.data.Dataset.from_tensor_slices(dict(arrays)).repeat(EPOCHS).shuffle(
        BUFFER, seed=SEED).batch(BATCH)
    for batch in ds:
      total += int(batch["label"].shape[0])
  return total


def timed(fn, repeats: int) -> dict:
  """Cold (first call) and warm (median of `repeats` more) seconds, and fn's result."""
  t = measure.timed(fn, repeats)
  return {"cold_s": t["first_s"], "warm_s": t["s"], "examples": t["result"]}


def full_pass(data_dir: str, limit: int | None) -> dict:
  """One cold pass over the train writers (each client's dataset stacked): time and peak RSS."""
  before = measure.vm_hwm_mib()
  start = time.perf_counter()
  train, _ = femnist.load_data(data_dir)
  ids = train.client_ids[:limit]
  examples = sum(len(train.create_dataset(c).to_stacked()["label"]) for c in ids)
  seconds = time.perf_counter() - start
  return {"writers": len(ids), "examples": examples, "seconds": seconds,
          "vm_hwm_before_mib": before, "vm_hwm_mib": measure.vm_hwm_mib()}


def tiny_leaf_fixture(directory: str) -> str:
  """A small LEAF directory (12 writers), for --smoke when the shared data is absent."""
  from federax.simulation.formats import write_leaf_shard  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  sizes = rng.integers(30, 60, 12)
  users = {f"f{i:04d}": {"x": rng.random((n, 784)).round(3), "y": rng.integers(0, 62, n)}
           for i, n in enumerate(sizes)}
  write_leaf_shard(os.path.join(directory, "train", "s.json.gz"), users)
  write_leaf_shard(os.path.join(directory, "test", "s.json.gz"), dict(list(users.items())[:2]))
  return directory


def tensorflow_version() -> str | None:
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return tf.__version__


def render(report: dict) -> str:
  lines = [f"# Data pipeline benchmark ({report['date']})", "",
           f"Machine: {report['machine']}.", f"Versions: {report['versions']}.",
           f"Command: `{report['command']}`.", f"Data: {report['data']}.", "",
           f"Chain: `{report['chain']}`; cold = first build (parses LEAF shards), "
           "warm = median of repeats (shards cached).", "",
           "| pipeline | clients | examples (5 epochs) | cold s | warm s | warm examples/s |",
           "|---|---:|---:|---:|---:|---:|"]
  for r in report["rounds"]:
    rate = r["examples"] / r["warm_s"] if r["warm_s"] > 0 else float("nan")
    lines.append(f"| {r['pipeline']} | {r['clients']} | {r['examples']:,} | {r['cold_s']:.3f} | "
                 f"{r['warm_s']:.4f} | {rate:,.0f} |")
  f = report["full_pass"]
  lines += ["", f"Full pass over the train writers (fresh process, cold): {f['writers']} writers, "
            f"{f['examples']:,} examples in {f['seconds']:.2f} s; peak RSS (VmHWM) "
            f"{f['vm_hwm_mib']:.0f} MiB ({f['vm_hwm_before_mib']:.0f} MiB after imports).",
            "", f"tf.data: {report['tf_data']}", ""]
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true", help="tiny sizes; writes no results")
  parser.add_argument("--data-dir", default=str(DATA))
  parser.add_argument("--full-pass", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.full_pass:  # The child process: one cold pass, reported as JSON.
    print(json.dumps(full_pass(args.data_dir, args.limit)))
    return

  with tempfile.TemporaryDirectory() as scratch:
    data_dir = args.data_dir
    if not os.path.isdir(data_dir):
      if not args.smoke:
        sys.exit(f"No FEMNIST LEAF data at {data_dir!r}; pass --data-dir (or run --smoke).")
      data_dir = tiny_leaf_fixture(scratch)
    sizes, repeats = ((2, 4), 1) if args.smoke else ((10, 100), 5)
    train, _ = femnist.load_data(data_dir)
    order = np.random.default_rng(0).permutation(len(train.client_ids))
    has_tf = tensorflow_version() is not None
    rounds = []
    for n in sizes:
      ids = [train.client_ids[i] for i in order[:n]]
      pipelines = [("masked_batch+to_stacked", stacked_round), ("batch, iterated", iterated_round)]
      if has_tf:
        pipelines.append(("tf.data batch, iterated", tf_round))
      for name, fn in pipelines:
        fresh, _ = femnist.load_data(data_dir)  # An empty shard cache: "cold" parses the shards.
        row = {"pipeline": name, "clients": n, **timed(lambda fn=fn, t=fresh: fn(t, ids), repeats)}
        rounds.append(row)
        print(json.dumps(row), flush=True)

    command = [sys.executable, "-m", "benchmarks.data_pipeline", "--full-pass",
               "--data-dir", data_dir] + (["--limit", "3"] if args.smoke else [])
    child = subprocess.run(command, capture_output=True, text=True, check=True,
                           cwd=pathlib.Path(__file__).resolve().parents[1])
    full = json.loads(child.stdout.strip().splitlines()[-1])

  for r in rounds:
    per = r["examples"] / EPOCHS / r["clients"]
    assert r["examples"] % EPOCHS == 0, r  # Every example five times.
    assert per > 0, r
  tf_note = ("compared (rows 'tf.data ...')" if has_tf else
             "not compared: TensorFlow is not installed in this environment (not installed "
             "for this benchmark on purpose).")
  print(f"tf.data: {tf_note}")
  report = {
      "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": measure.describe(measure.machine()),
      "versions": {"federax": fx.__version__, "jax": jax.__version__, "numpy": np.__version__,
                   "python": platform.python_version(), "tensorflow": tensorflow_version()},
      "command": "python -m benchmarks.data_pipeline" + (" --smoke" if args.smoke else ""),
      "data": ("femnist-leaf (flic, leaf-torch, wenzhu merged), train split"
               if data_dir == str(DATA) else data_dir),
      "chain": f"ds.repeat({EPOCHS}).shuffle({BUFFER}, seed={SEED}).masked_batch({BATCH})"
               f".to_stacked() / .batch({BATCH})",
      "rounds": rounds, "full_pass": full, "tf_data": tf_note,
  }
  text = render(report)
  print(text)
  if args.smoke:
    print("smoke ok")
    return
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "data_pipeline.json").write_text(json.dumps(report, indent=2))
  (RESULTS / "data_pipeline.md").write_text(text)


if __name__ == "__main__":
  main()
