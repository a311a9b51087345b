"""`build_iblt_computation` on both runtimes: above capacity nothing wrong is decoded and the
rest is counted; k-anonymity, `max_heavy_hitters` and the postprocessor; UTF-8-safe truncation;
the clients and the round's timestamp. Every call has 4 clients of one block each, so that each
computation compiles once per runtime."""

import numpy as np

import federax as fx
from tests.analytics.iblt_reference import runtime  # noqa: F401  (module-scoped: compiles once)
from tests.analytics.iblt_reference import as_dicts, heavy_hitters, run, utf8_prefix

iblt = fx.analytics.heavy_hitters.iblt
SMALL = iblt.build_iblt_computation(capacity=60, string_max_bytes=5)
FILTERED = iblt.build_iblt_computation(
    capacity=20, k_anonymity=2, max_heavy_hitters=2,
    string_postprocessor=lambda s: np.array([w.upper() for w in s], object))


def test_above_capacity_nothing_decoded_is_wrong_and_the_rest_is_counted(runtime):
  clients = [[np.array([f"w{i}" for i in range(c, 120, 4)] + ["common"])] for c in range(4)]
  output = run(SMALL, clients)
  unique, total = heavy_hitters(clients, string_max_bytes=5)
  decoded_unique, decoded_total = as_dicts(output)
  assert 0 < len(decoded_unique) < len(unique)
  assert all(unique[w] == c for w, c in decoded_unique.items())
  assert all(total[w] == c for w, c in decoded_total.items())
  # Undecoded client contributions, exactly (TFF's definition).
  assert output.num_not_decoded == sum(unique.values()) - sum(decoded_unique.values()) > 0


def test_k_anonymity_top_heavy_hitters_and_postprocessing(runtime):
  clients = [[np.array(["a", "a", "b", "c"])], [np.array(["a", "b", "d", "d", "d"])],
             [np.array(["a", "b", "e"])], []]
  output = run(FILTERED, clients)
  # 'd' (3) is sent by one client only: k-anonymity drops it; 'a' (4) and 'b' (3) are the top.
  assert output.heavy_hitters.tolist() == [b"A", b"B"]
  assert output.heavy_hitters_counts.tolist() == [4, 3]
  assert output.heavy_hitters_unique_counts.tolist() == [3, 3]


def test_long_strings_are_cut_on_a_utf8_boundary(runtime):
  words = ["naïveté", "日本語です", "abcdefgh", "ab"]
  output = run(SMALL, [[np.array(words)], [], [], []])
  expected = sorted(utf8_prefix(w, 5) for w in words)
  assert sorted(output.heavy_hitters.tolist()) == expected == [
      b"ab", b"abcde", b"na\xc3\xafv", b"\xe6\x97\xa5"]
  for s in output.heavy_hitters:
    s.decode("utf-8")  # Whole characters only.


def test_clients_and_the_round_timestamp(runtime, monkeypatch):
  # The body reads the clock at each call (not once, when the computation was traced).
  monkeypatch.setattr(iblt.iblt_tff.time, "time", lambda: 1_700_000_123.9)
  output = run(SMALL, [[], [np.array(["x"])], [np.array([], str)], []])
  assert output.clients == 4 and output.heavy_hitters.tolist() == [b"x"]
  assert output.round_timestamp == 1_700_000_123 and output.round_timestamp.dtype == np.int64
