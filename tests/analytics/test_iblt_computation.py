"""`build_iblt_computation` on both runtimes equals exact counting below capacity: Zipf
vocabularies over ragged clients, with each of TFF's contribution rules (all words; the first
batches up to `max_words_per_user`; the most frequent distinct words), against plain Python
counting (`iblt_reference`)."""

import pytest

import federax as fx
from tests.analytics.iblt_reference import runtime  # noqa: F401  (module-scoped: compiles once)
from tests.analytics.iblt_reference import as_dicts, heavy_hitters, run, zipf_clients

iblt = fx.analytics.heavy_hitters.iblt
CLIENTS = zipf_clients(0, 24, 300)
SETTINGS = {"all-words": dict(), "capped": dict(max_words_per_user=7, batch_size=3),
            "top-distinct": dict(max_words_per_user=5, multi_contribution=False)}
COMPUTATIONS = {name: iblt.build_iblt_computation(capacity=300, string_max_bytes=8, seed=5,
                                                  **settings)
                for name, settings in SETTINGS.items()}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_heavy_hitters_equal_exact_counts_below_capacity(runtime, name):
  computation = COMPUTATIONS[name]
  assert str(computation.type_signature) == (
      "({str[?]*}@CLIENTS -> <clients=int32,heavy_hitters=str[?],heavy_hitters_unique_counts="
      "int64[?],heavy_hitters_counts=int64[?],num_not_decoded=int64,round_timestamp=int64>"
      "@SERVER)")
  output = run(computation, CLIENTS)
  unique, total = heavy_hitters(CLIENTS, string_max_bytes=8, **SETTINGS[name])
  assert 30 < len(unique) < 300
  assert as_dicts(output) == (dict(unique), dict(total))
  assert output.num_not_decoded == 0 and output.clients == 24
  counts = output.heavy_hitters_counts.tolist()
  assert counts == sorted(counts, reverse=True)
