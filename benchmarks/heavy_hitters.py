"""Benchmark: IBLT heavy hitters over every word of the 715 Shakespeare roles, federax vs TFF.

    python -m benchmarks.heavy_hitters              # capacity 1,000 (the issue's) and 40,000
    python -m benchmarks.heavy_hitters --smoke      # 8 roles, one repeat, no TFF; writes nothing

Every role of TFF's Shakespeare train split (`../shared/data/shakespeare-tff`) is a client; its
words are `fx.analytics.text.tokenize` of its lines (TFF's tutorial preprocessing: whitespace,
case folding, punctuation-only words dropped), in batches of 64. Both systems get the same
batches: federax as lists of NumPy arrays, TFF (0.87, in `benchmarks/peers/tff/.venv`) as
`tf.data` datasets. Each round is `build_iblt_computation(capacity=C, string_max_bytes=10)`
called on all 715 clients: encode on the clients, sum, decode at the server.

TFF runs in a child process (`peers/tff/run_tff_heavy_hitters.py`) that waits for commands, so
the two systems' rounds alternate (`round` there, one here, ...): a burst of load on a shared
machine hits both alike. The first (compiling) call of each is reported apart. The server's
decoding is timed on its own too: the IBLT of the same (client, distinct word) pairs, encoded
by each system's NumPy/TF encoder, decoded by `IbltTensorDecoder` (federax) and by
`decode_iblt_tensor_tf` in a traced `tf.function` (TFF).

At capacity 1,000 the 38,047 distinct words overflow the table, so almost nothing decodes
(TFF's semantics; both report it in `num_not_decoded`); capacity 40,000 decodes every word
(federax only: TFF's one-cell-per-step decoder is timed there only with `--tff-large`).
Writes benchmarks/results/heavy_hitters.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time
import warnings

import numpy as np

import federax as fx
from benchmarks import measure
from benchmarks.tff_peer import TffPeer

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache" / "heavy_hitters"
BATCH = 64
STRING_MAX_BYTES = 10

iblt = fx.analytics.heavy_hitters.iblt


def client_words(data_dir: pathlib.Path, num_clients: int) -> list[np.ndarray]:
  """Each role's words, in order (TFF's tutorial preprocessing)."""
  train, _ = fx.simulation.datasets.shakespeare.load_data(cache_dir=data_dir / "shakespeare-tff")
  return [fx.analytics.text.tokenize([e["snippets"] for e in
                                      train.create_tf_dataset_for_client(client_id)])
          for client_id in train.client_ids[:num_clients]]


def summed_table(words: list[np.ndarray], capacity: int):
  """The IBLT the server receives: every client's distinct words, counted once per client, with
  their counts as values (NumPy's encoder: federax's decoder's input)."""
  pairs, counts = [], []
  for w in words:
    unique, count = fx.analytics.data_processing.get_unique_elements_with_counts(
        [w], STRING_MAX_BYTES)
    pairs.append(unique)
    counts.append(count)
  encoder = iblt.IbltTensorEncoder((1,), capacity, STRING_MAX_BYTES)
  return encoder.compute_iblt(np.concatenate(pairs), np.concatenate(counts)[:, None])



def bench(words: list[np.ndarray], capacity: int, repeats: int, tff: TffPeer | None) -> dict:
  data = [[w[i:i + BATCH] for i in range(0, len(w), BATCH)] for w in words]
  computation = iblt.build_iblt_computation(capacity=capacity, string_max_bytes=STRING_MAX_BYTES)
  start = time.perf_counter()
  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    output = computation(data)
  first = time.perf_counter() - start
  table, values = summed_table(words, capacity)
  decoder = iblt.IbltTensorDecoder(table, values, (1,), capacity, STRING_MAX_BYTES)
  decoded = decoder.decode()
  # The round's result is the decoder's on the same table (k-anonymity 1, no cap).
  assert sorted(output.heavy_hitters.tolist()) == sorted(decoded.strings.tolist())
  assert int(output.num_not_decoded) == decoded.num_not_decoded
  rounds, tff_rounds, decodes, tff_decodes = [], [], [], []
  for _ in range(repeats):
    start = time.perf_counter()
    computation(data)
    rounds.append(time.perf_counter() - start)
    start = time.perf_counter()
    decoder.decode()
    decodes.append(time.perf_counter() - start)
    if tff is not None:
      tff_rounds.append(tff("round")["s"])
      tff_decodes.append(tff("decode"))
  row = {"capacity": capacity, "table_size": decoder.layout.table_size,
         "clients": int(output.clients),
         "heavy_hitters": len(output.heavy_hitters), "num_not_decoded": int(output.num_not_decoded),
         "federax_first_s": first, "federax_round_s": statistics.median(rounds),
         "federax_decode_s": statistics.median(decodes)}
  if tff is not None:
    row.update({"tff_first_s": tff.ready["first_s"], "tff_round_s": statistics.median(tff_rounds),
                "tff_decode_s": statistics.median(d["decode_s"] for d in tff_decodes),
                "tff_heavy_hitters": tff.ready["heavy_hitters"],
                "tff_num_not_decoded": tff.ready["num_not_decoded"]})
    row["speedup_round"] = row["tff_round_s"] / row["federax_round_s"]
    row["speedup_decode"] = row["tff_decode_s"] / row["federax_decode_s"]
  return row


def render(rows: list[dict]) -> str:
  def s(row, key):
    return f"{row[key]:.3f}" if key in row else "-"

  lines = ["| capacity | clients | decoded | not decoded | federax round s | TFF round s | "
           "round speed-up | federax decode s | TFF decode s | decode speed-up | "
           "first call federax / TFF s |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    lines.append(
        f"| {r['capacity']} | {r['clients']} | {r['heavy_hitters']} | {r['num_not_decoded']} | "
        f"{s(r, 'federax_round_s')} | {s(r, 'tff_round_s')} | "
        + (f"{r['speedup_round']:.1f}x" if "speedup_round" in r else "-") + " | "
        f"{s(r, 'federax_decode_s')} | {s(r, 'tff_decode_s')} | "
        + (f"{r['speedup_decode']:.0f}x" if "speedup_decode" in r else "-") + " | "
        f"{r['federax_first_s']:.2f} / " + (f"{r['tff_first_s']:.2f}" if "tff_first_s" in r
                                             else "-") + " |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
  parser.add_argument("--tff-large", action="store_true", help="time TFF at capacity 40,000 too")
  args = parser.parse_args()
  info = {"machine": measure.machine()}
  words = client_words(pathlib.Path(args.data_dir), 8 if args.smoke else 715)
  info["words"] = int(sum(map(len, words)))
  if args.smoke:
    rows = [bench(words, 2000, 1, None)]
    print(render(rows))
    print("smoke ok")
    return
  CACHE.mkdir(parents=True, exist_ok=True)
  words_file = CACHE / "words.npz"
  np.savez(words_file, words=np.concatenate(words), offsets=np.cumsum([0] + list(map(len, words))))
  rows = []
  for capacity in (1000, 40_000):
    tff = (TffPeer("run_tff_heavy_hitters.py", "--words", str(words_file), "--capacity",
                   str(capacity), "--string-max-bytes", str(STRING_MAX_BYTES), "--batch",
                   str(BATCH))
           if capacity == 1000 or args.tff_large else None)
    try:
      rows.append(bench(words, capacity, args.repeats, tff))
    finally:
      if tff is not None:
        info.setdefault("tff_versions", {k: tff.ready[k] for k in ("tensorflow", "tff")})
        tff.close()
    print(render(rows), flush=True)
  command = ("python -m benchmarks.heavy_hitters" + (" --tff-large" if args.tff_large else "")
             + (f" --repeats {args.repeats}" if args.repeats != 5 else ""))
  info.update({"command": command, "rows": rows, "repeats": args.repeats})
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "heavy_hitters.json").write_text(json.dumps(info, indent=1) + "\n")
  (RESULTS / "heavy_hitters.md").write_text(
      f"`{command}` ({measure.describe(info['machine'])}; TFF "
      f"{info.get('tff_versions', {}).get('tff', '?')}; medians of {args.repeats} alternating "
      f"rounds)\n\n{render(rows)}\n")


if __name__ == "__main__":
  main()
