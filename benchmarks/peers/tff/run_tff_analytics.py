"""TensorFlow Federated 0.87 runner of the analytics benchmark (benchmarks/histograms.py).

    benchmarks/peers/tff/.venv/bin/python benchmarks/peers/tff/run_tff_analytics.py \
        --inputs INPUTS.npz --out result.json [--repeats N]

Reads the clients' records and words that federax's side reads (`INPUTS.npz`: `records`
float32 `[clients, n]`, `words` str `[clients, m]`), builds each client's `tf.data.Dataset`
beforehand (as TFF's tutorials do), and times each call of `tff.analytics`'s process `next` /
computation with `time.perf_counter()`: the first call, then `--repeats` more. Runs in TFF's
test C++ execution context, the one TFF's own tests use for secure sums (its default context
rejects them). Writes {"versions", "startup_s", "workloads": {name: {"first_s", "times_s",
"result"}}}.
"""

import time

_T_TOP = time.time()

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--inputs", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()

  import numpy as np
  import tensorflow as tf
  import tensorflow_federated as tff
  from tensorflow_federated.python.core.backends.test import execution_contexts

  execution_contexts.set_sync_test_cpp_execution_context()
  inputs = np.load(args.inputs)
  records = [tf.data.Dataset.from_tensor_slices(row) for row in inputs["records"]]
  words = [list(row) for row in inputs["words"].astype(str)]
  config = json.loads(str(inputs["config"]))
  startup = time.time() - _T_TOP

  def histogram(dp_mechanism):
    process = tff.analytics.build_hierarchical_histogram_process(
        dp_mechanism=dp_mechanism, **config["histogram"])
    state = process.initialize()

    def run():
      out, _ = process.next(state, records)
      return np.asarray(out.aggregated_hierarchical_histogram["flat_values"]).tolist()

    return run

  hll = tff.analytics.count_distinct.create_federated_hyperloglog_computation()
  workloads = {"histogram no-noise": histogram("no-noise"),
               "histogram central-gaussian": histogram("central-gaussian"),
               "hyperloglog": lambda: int(hll(words))}
  results = {}
  for name, run in workloads.items():
    start = time.perf_counter()
    result = run()
    first = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      run()
      times.append(time.perf_counter() - start)
    results[name] = {"first_s": first, "times_s": times, "result": result}
  versions = {"tensorflow": tf.__version__, "tensorflow_federated": tff.__version__}
  with open(args.out, "w") as f:
    json.dump({"versions": versions, "startup_s": startup, "workloads": results}, f)


if __name__ == "__main__":
  main()
