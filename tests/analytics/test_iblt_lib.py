"""IBLTs on their own: field, hashes, chunks, encoders and the peeling decoder, against exact
counting (`collections.Counter`) and Python's integers."""

import collections
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.analytics.heavy_hitters.iblt import _field, _sketch, hyperedge_hashers
from federax.analytics.heavy_hitters.iblt.iblt_lib import Layout

iblt = fx.analytics.heavy_hitters.iblt
P = 2**31 - 1
ALPHABET = list("abcdefghijklmnopqrstuvwxyz") + ["é", "ß", "ж", "日", "🙂"]


def vocabulary(rng, size: int) -> list[str]:
  """`size` distinct random words of 1-12 characters, some of them multi-byte."""
  words = set()
  while len(words) < size:
    words.add("".join(rng.choice(ALPHABET, rng.integers(1, 13))))
  return sorted(words)


def zipf_sample(rng, words: list[str], n: int, a: float = 1.2) -> list[str]:
  """`n` draws from `words` with Zipf(a) frequencies."""
  p = 1.0 / np.arange(1, len(words) + 1) ** a
  return [words[i] for i in rng.choice(len(words), n, p=p / p.sum())]


def utf8_prefix(word: str, max_bytes: int) -> bytes:
  """The longest prefix of whole characters within `max_bytes` bytes (reference)."""
  out = b""
  for char in word:
    if len(out) + len(char.encode()) > max_bytes:
      break
    out += char.encode()
  return out


# --- Field, hashes, chunks -----------------------------------------------------------------------


def test_field_arithmetic_equals_python_integers():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 2**32, 10_000, dtype=np.uint64).astype(np.uint32)
  y = rng.integers(0, 2**32, 10_000, dtype=np.uint64).astype(np.uint32)
  a = rng.integers(0, P, 10_000).astype(np.uint32)
  b = rng.integers(0, P, 10_000).astype(np.uint32)
  for xp, f in ((np, lambda g, *v: g(*v, np)), (jnp, lambda g, *v: np.asarray(
      jax.jit(lambda *u: g(*u, jnp))(*v)))):
    assert [int(v) for v in f(_field.reduce, x)] == [int(v) % P for v in x]
    assert [int(v) for v in f(_field.add, a, b)] == [(int(u) + int(v)) % P for u, v in zip(a, b)]
    assert [int(v) for v in f(_field.from_limbs, x, y)] == [
        (int(h) * 2**16 + int(lo)) % P for lo, h in zip(x, y)]


def test_numpy_and_jax_hash_every_string_to_the_same_cells():
  rng = np.random.default_rng(1)
  chunks = rng.integers(0, 2**24, (5000, 4)).astype(np.uint32)
  for family, params in (("random", None), ("coupled", {"rescale_factor": 10.0})):
    layout = Layout("test", 1000, 12, seed=7, hash_family=family, hash_family_params=params)
    on_host = layout.indices(chunks, np), layout.checks(chunks, np)
    compiled = jax.jit(lambda c: (layout.indices(c, jnp), layout.checks(c, jnp)))(chunks)
    np.testing.assert_array_equal(on_host[0], compiled[0])
    np.testing.assert_array_equal(on_host[1], compiled[1])
    assert on_host[0].min() >= 0 and on_host[0].max() < layout.table_size
    assert on_host[1].max() < P
  # Uniform cells: the counts per cell have the binomial's spread.
  counts = np.bincount(Layout("test", 1000, 12).indices(chunks, np)[:, 0], minlength=458)
  assert abs(counts.std() - np.sqrt(5000 / 458)) < 0.6


def test_chunks_round_trip_strings_cut_on_a_character_boundary():
  rng = np.random.default_rng(2)
  words = vocabulary(rng, 300) + ["", "a" * 40, "日本語のテキスト"]
  chunker = iblt.create_chunker(string_max_bytes=7)
  assert chunker.get_num_chunks() == 3  # 3 bytes per chunk in the field 2**31 - 1.
  chunks, trimmed = chunker.encode_python(np.array(words))
  assert chunks.max() < 2**24
  expected = [utf8_prefix(w, 7) for w in words]
  assert trimmed.tolist() == expected
  assert chunker.decode_python(chunks).tolist() == expected
  for w, t in zip(words, expected):
    t.decode("utf-8")  # Whole characters only.


# --- Encoding and peeling ------------------------------------------------------------------------


def test_decoder_recovers_exact_counts_below_capacity():
  rng = np.random.default_rng(3)
  sample = zipf_sample(rng, vocabulary(rng, 3000), 20_000)
  expected = collections.Counter(utf8_prefix(w, 10).decode() for w in sample)
  assert len(expected) < 2000
  table = iblt.IbltEncoder(capacity=2000, string_max_bytes=10, seed=3).compute_iblt(
      np.array(sample))
  assert table.shape == (3, int(1.1 * 1.222 * 2000 / 3 + 10), 6)
  assert iblt.IbltDecoder(table, 2000, 10, seed=3).get_freq_estimates() == dict(expected)
  # With counts per string (TFF's iblt_lib.IbltEncoder): the same as repeating them.
  words, counts = zip(*expected.items())
  table = iblt.IbltEncoder(2000, 10).compute_iblt(np.array(words), np.array(counts))
  strings, decoded, not_decoded = iblt.decode_iblt(table, 2000, 10)
  assert not_decoded == 0
  assert dict(zip((s.decode() for s in strings), decoded.tolist())) == dict(expected)
  assert list(decoded) == sorted(decoded, reverse=True)  # Largest first.


def test_above_capacity_nothing_decoded_is_wrong_and_the_rest_is_counted():
  rng = np.random.default_rng(4)
  words = vocabulary(rng, 1500)
  counts = rng.integers(1, 50, len(words))
  table = iblt.IbltEncoder(500, 12).compute_iblt(np.array(words), counts)
  strings, decoded, not_decoded = iblt.decode_iblt(table, 500, 12)
  truth = {utf8_prefix(w, 12): c for w, c in zip(words, counts)}
  assert 0 < len(strings) < len(words)
  assert all(truth[s] == c for s, c in zip(strings, decoded))
  assert not_decoded == sum(counts) - sum(decoded)  # The undecoded counts, exactly.
  assert iblt.IbltDecoder(table, 500, 12).get_freq_estimates()[None] == not_decoded


@pytest.mark.parametrize("capacity", [50_000, 100_000])  # Random hashes, then coupled ones.
def test_decoding_scales_to_tens_of_thousands(capacity):
  words = np.array([f"w{i}" for i in range(int(capacity * 0.9))])
  counts = np.arange(words.size) % 97 + 1
  table = iblt.IbltEncoder(capacity, 8).compute_iblt(words, counts)
  start = time.perf_counter()
  decoded = iblt.IbltDecoder(table, capacity, 8).decode()
  seconds = time.perf_counter() - start
  assert decoded.num_not_decoded == 0 and decoded.strings.size == words.size
  assert dict(zip(decoded.strings, decoded.counts)) == {
      w.encode(): c for w, c in zip(words, counts)}
  assert seconds < 10  # About 0.4 s (50,000) and 1 s (100,000) on one core.


def test_tensor_encoder_carries_values_through_peeling():
  rng = np.random.default_rng(5)
  words = vocabulary(rng, 200)
  values = rng.integers(0, 1000, (200, 2, 3))
  encoder = iblt.IbltTensorEncoder((2, 3), capacity=300, string_max_bytes=12)
  table, table_values = encoder.compute_iblt(np.array(words), values)
  assert table_values.shape == (3, encoder.table_size, 2, 3)
  strings, counts, decoded, not_decoded = iblt.decode_iblt_tensor(
      table, table_values, 300, 12, (2, 3))
  assert not_decoded == 0 and set(counts) == {1}
  truth = {utf8_prefix(w, 12): v for w, v in zip(words, values)}
  assert len(strings) == 200
  for s, v in zip(strings, decoded):
    np.testing.assert_array_equal(v, truth[s])


def test_tables_summed_in_the_field_decode_to_the_union():
  rng = np.random.default_rng(6)
  vocab = vocabulary(rng, 400)
  clients = [zipf_sample(rng, vocab, 60) for _ in range(30)]
  encoder = iblt.IbltEncoder(500, 12)
  total = sum(encoder.compute_iblt(np.array(sorted(set(c)))) for c in clients) % P
  expected = collections.Counter(utf8_prefix(w, 12).decode() for c in clients for w in set(c))
  assert iblt.IbltDecoder(total, 500, 12).get_freq_estimates() == dict(expected)


def test_the_compiled_client_sketch_equals_the_numpy_encoder():
  rng = np.random.default_rng(7)
  words = vocabulary(rng, 700)
  counts = rng.integers(1, 9, len(words))
  layout = Layout("test", 1000, 10, seed=11)
  chunks, _ = layout.chunker.encode_python(np.array(words))
  blocks = _sketch.blocks(chunks, counts, 256)
  assert len(blocks) == 3 and blocks[-1]["counts"][700 - 512:].sum() == 0  # Padded.

  @jax.jit
  def sketch(blocks):
    table = _sketch.zero(layout)
    for block in blocks:
      table = _sketch.add_block(layout, table, block)
    return _sketch.finish(layout, table)

  table, values = sketch(blocks)
  encoder = iblt.IbltTensorEncoder((1,), 1000, 10, seed=11)
  ref_table, ref_values = encoder.compute_iblt(np.array(words), counts[:, None])
  np.testing.assert_array_equal(np.asarray(table), ref_table)
  np.testing.assert_array_equal(np.asarray(values), ref_values[..., 0])


def test_a_decoder_of_other_parameters_is_refused():
  table = iblt.IbltEncoder(100, 10).compute_iblt(np.array(["a"]))
  with pytest.raises(ValueError, match=r"(?s)IbltDecoder: the IBLT's shape does not fit.*"
                     r"expected: \(3, 63, 6\).*actual:   \(3, 54, 6\).*capacity"):
    iblt.IbltDecoder(table, 120, 10)
  with pytest.raises(ValueError, match=r"IbltEncoder\(repetitions=...\): repetitions must be"):
    iblt.IbltEncoder(100, 10, repetitions=2)
