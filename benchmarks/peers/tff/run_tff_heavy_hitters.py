"""TensorFlow Federated 0.87 side of benchmarks/heavy_hitters.py: IBLT heavy hitters on given words.

    benchmarks/peers/tff/.venv/bin/python benchmarks/peers/tff/run_tff_heavy_hitters.py \
        --words benchmarks/.cache/heavy_hitters/words.npz --capacity 1000

Reads every client's words (`words`, concatenated, and `offsets`), makes each client a
`tf.data.Dataset` of them in batches of `--batch`, builds
`tff.analytics.heavy_hitters.iblt.build_iblt_computation(capacity, string_max_bytes)` and runs it
in TFF's test execution context (the local C++ runtime). Then it serves the driver, one command
per stdin line, answering one JSON line each:

- `round`: one call of the computation (encode, sum, decode), timed with `time.perf_counter()`;
- `decode`: the server's decoding alone, `decode_iblt_tensor_tf` in a `tf.function` (traced
  beforehand) on the IBLT of the same (client, distinct word) pairs (found with NumPy), built
  by TFF's `IbltTensorEncoder`;
- `quit`.

The first line it prints is `{"ready": ...}` with its start-up and first-call seconds.
"""

import time

_T_TOP = time.time()

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--words", required=True)
  p.add_argument("--capacity", type=int, default=1000)
  p.add_argument("--string-max-bytes", type=int, default=10)
  p.add_argument("--batch", type=int, default=64)
  args = p.parse_args()

  import numpy as np
  import tensorflow as tf
  import tensorflow_federated as tff

  tff.backends.test.set_sync_test_cpp_execution_context()
  data = np.load(args.words)
  words, offsets = data["words"], data["offsets"]
  clients = [words[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
  datasets = [tf.data.Dataset.from_tensor_slices(np.char.encode(c, "utf-8") if c.size
                                                 else np.zeros(0, "S1")).batch(args.batch)
              for c in clients]
  iblt = tff.analytics.heavy_hitters.iblt
  computation = iblt.build_iblt_computation(capacity=args.capacity,
                                            string_max_bytes=args.string_max_bytes)
  start = time.perf_counter()
  output = computation(datasets)
  first = time.perf_counter() - start
  print(json.dumps({"ready": True, "startup_s": time.time() - _T_TOP - first, "first_s": first,
                    "tensorflow": tf.__version__, "tff": tff.__version__,
                    "clients": int(output.clients),
                    "heavy_hitters": len(output.heavy_hitters),
                    "num_not_decoded": int(output.num_not_decoded)}), flush=True)

  decode = None
  for line in sys.stdin:
    command = line.strip()
    if command == "round":
      start = time.perf_counter()
      output = computation(datasets)
      print(json.dumps({"s": time.perf_counter() - start}), flush=True)
    elif command == "decode":
      if decode is None:
        pairs, counts = [], []
        for c in clients:  # Each client's distinct words (cut as TFF's substr), and counts.
          cut = np.array([w.encode("utf-8")[:args.string_max_bytes] for w in c.tolist()],
                         dtype=object)
          w, n = np.unique(cut, return_counts=True) if cut.size else (cut, np.zeros(0, int))
          pairs.append(tf.constant(w.astype(bytes) if w.size else np.zeros(0, "S1")))
          counts.append(tf.constant(n.astype(np.int64)))
        encoder = iblt.IbltTensorEncoder(capacity=args.capacity,
                                         string_max_bytes=args.string_max_bytes,
                                         value_shape=(1,))
        sketch, values = encoder.compute_iblt(tf.concat(pairs, 0),
                                              tf.reshape(tf.concat(counts, 0), [-1, 1]))
        decode = tf.function(lambda s, v: iblt.decode_iblt_tensor_tf(
            s, v, capacity=args.capacity, string_max_bytes=args.string_max_bytes,
            value_shape=(1,)))
        decode(sketch, values)  # Traced once, as inside the computation.
      start = time.perf_counter()
      strings, _, _, not_decoded = decode(sketch, values)
      print(json.dumps({"decode_s": time.perf_counter() - start, "decoded": int(strings.shape[0]),
                        "num_not_decoded": int(not_decoded)}), flush=True)
    elif command == "quit":
      break


if __name__ == "__main__":
  main()
