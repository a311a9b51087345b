"""The sparse tag-prediction notebook (federated_select + sparse sum): what it prints, checked
for meaning."""

import re

import numpy as np

from tutorials import notebooks


def test_sparse_federated_learning(tmp_path):
  out = notebooks.run("sparse_federated_learning", tmp_path)
  # Client 1's tokens by example count (TFF's check: tokens [0, 1, 4, 8], 4 of them).
  keys = re.search(r"keys: \[([\d ]+)\] actual_num_tokens: (\d+)", out)
  assert sorted(int(k) for k in keys.group(1).split()[:4]) == [0, 1, 4, 8]
  assert keys.group(2) == "4"
  assert ("(<table=float32[13,4]@SERVER,client_data={<tokens=int32[13],tags=float32[4]>*}"
          "@CLIENTS> -> <table=float32[13,4]@SERVER,metrics=<num_clients=float32,"
          "num_updated_rows=int32>@SERVER>)") in out
  before = [float(x) for x in re.findall(r"Client \d: loss=([\d.]+)", out)[:3]]
  after = [float(x) for x in re.findall(r"Client \d: loss=([\d.]+)", out)[3:]]
  np.testing.assert_allclose(before, np.log(2), atol=0.005)  # zero weights: p = 0.5
  assert len(after) == 3 and all(a < b for a, b in zip(after, before))
  # broccoli (5) and tuna (9) occur only on client 3, once each; its 6 keys go to the tokens
  # counted twice (salmon, OOV) and the lowest ids of the ties: so their rows never move.
  assert "rows never updated: [5, 9]" in out
