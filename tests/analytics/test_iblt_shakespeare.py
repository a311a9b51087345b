"""Heavy hitters of real clients: Shakespeare's speaking roles (TFF's HDF5 release), tokenized
as TFF's tutorial does, equal exact counting on both runtimes."""

import numpy as np
import pytest

import federax as fx
from tests.analytics.iblt_reference import runtime  # noqa: F401  (module-scoped: compiles once)
from tests.analytics.iblt_reference import as_dicts, heavy_hitters, run

iblt = fx.analytics.heavy_hitters.iblt
BATCH = 5


@pytest.fixture(scope="module")
def clients(shared_data):
  """The first 20 roles' words, in batches of 5 (the tutorial's preprocessing)."""
  train, _ = fx.simulation.datasets.shakespeare.load_data(
      cache_dir=shared_data / "shakespeare-tff")
  out = []
  for client_id in train.client_ids[:20]:
    snippets = [e["snippets"] for e in train.create_tf_dataset_for_client(client_id)]
    words = fx.analytics.text.tokenize(snippets)
    out.append([words[i:i + BATCH] for i in range(0, len(words), BATCH)])
  return out


ALL_WORDS = iblt.build_iblt_computation(capacity=6000, string_max_bytes=12)
TUTORIAL = iblt.build_iblt_computation(
    capacity=100, string_max_bytes=20, max_words_per_user=8, secure_sum_bitwidth=32,
    multi_contribution=False, batch_size=BATCH, max_heavy_hitters=10)


def test_every_word_of_20_roles_is_counted_exactly(runtime, clients):
  unique, total = heavy_hitters(clients, string_max_bytes=12)
  assert 4000 < len(unique) < 6000 and sum(total.values()) > 15_000
  output = run(ALL_WORDS, clients)
  assert output.num_not_decoded == 0 and output.clients == 20
  assert as_dicts(output) == (dict(unique), dict(total))


def test_the_tutorials_settings_count_each_roles_top_words_once(runtime, clients):
  unique, total = heavy_hitters(clients[:10], string_max_bytes=20, max_words_per_user=8,
                                multi_contribution=False, batch_size=BATCH)
  output = run(TUTORIAL, clients[:10])
  assert output.clients == 10 and output.num_not_decoded == 0
  ranked = sorted(total.items(), key=lambda item: (-item[1], item[0]))  # Ties: by bytes.
  assert list(as_dicts(output)[1].items()) == ranked[:10]
  assert as_dicts(output)[0] == as_dicts(output)[1]  # One count per role and word.
