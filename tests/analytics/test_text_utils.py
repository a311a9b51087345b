"""Text utilities and TFF's data_processing on the host, against plain Python references."""

import collections

import numpy as np
import pytest

import federax as fx

text = fx.analytics.text
dp = fx.analytics.data_processing
CHARS = list("aZ9 ,.-'") + ["é", "ß", "ж", "日", "🙂", "\u00a0", "\t", "—", "«", "$"]


def reference_prefix(word: str, max_bytes: int) -> bytes:
  out = b""
  for char in word:
    if len(out) + len(char.encode()) > max_bytes:
      break
    out += char.encode()
  return out


def test_truncation_never_splits_a_character():
  rng = np.random.default_rng(0)
  words = ["".join(rng.choice(CHARS, rng.integers(0, 12))) for _ in range(2000)]
  for max_bytes in (0, 1, 2, 3, 4, 5, 9, 40):
    cut = text.truncate_utf8(np.array(words), max_bytes)
    assert cut.tolist() == [reference_prefix(w, max_bytes) for w in words]
  assert text.truncate_utf8("🙂🙂", 7) == "🙂".encode()  # 4 + 4 > 7: one emoji.
  assert text.truncate_utf8(b"abc", 2) == b"ab"


def test_tokenize_splits_folds_case_and_drops_punctuation_only_words():
  lines = ["To be, or not to be -- that is the QUESTION:", "  ’Tis nobler\u00a0in the mind… ",
           "Straße ＡＢ «» $5 &c."]
  assert text.tokenize(lines).tolist() == [
      "to", "be,", "or", "not", "to", "be", "that", "is", "the", "question:", "’tis", "nobler",
      "in", "the", "mind...", "strasse", "ab", "$5", "&c."]
  assert text.tokenize(lines, strip_punct=True).tolist() == [
      "to", "be", "or", "not", "to", "be", "that", "is", "the", "question", "tis", "nobler",
      "in", "the", "mind", "strasse", "ab", "5", "c"]
  assert text.tokenize("Keep CASE", case_fold=False).tolist() == ["Keep", "CASE"]
  assert text.tokenize([]).tolist() == [] and text.tokenize(b"ab cd").tolist() == ["ab", "cd"]
  assert [text.is_punct_or_symbol(w) for w in ["--", "«»", "$", "&c.", "", "a"]] == [
      True, True, True, False, False, False]


BATCHES = [np.array(["the", "cat", "the"]), np.array(["a", "dog", "cat"]),
           np.array(["the", "zebra", "a"]), np.array(["ünïcödé-long-word"])]


def test_data_processing_follows_tffs_rules():
  assert dp.get_all_elements(BATCHES, string_max_bytes=4).tolist() == [
      b"the", b"cat", b"the", b"a", b"dog", b"cat", b"the", b"zebr", b"a", b"\xc3\xbcn"]
  # Capping takes whole batches: 7 words of batches of 3 is two batches.
  assert dp.get_capped_elements(BATCHES, 7, batch_size=3).tolist() == [
      b"the", b"cat", b"the", b"a", b"dog", b"cat"]
  elements, counts = dp.get_capped_elements_with_counts(BATCHES, 7, batch_size=3)
  assert (elements.tolist(), counts.tolist()) == ([b"the", b"cat", b"a", b"dog"], [2, 2, 1, 1])
  assert dp.get_unique_elements(BATCHES, 3).tolist() == [
      b"the", b"cat", b"a", b"dog", b"zeb", b"\xc3\xbcn"]
  # Top 3: 'the' (3), then of the words seen twice ('cat', 'a') both, in first appearance order.
  elements, counts = dp.get_top_elements_with_counts(BATCHES, 3)
  assert (elements.tolist(), counts.tolist()) == ([b"the", b"cat", b"a"], [3, 2, 2])
  assert dp.get_top_elements(BATCHES, 1).tolist() == [b"the"]
  assert dp.get_top_multi_elements(BATCHES, 2).tolist() == [b"the"] * 3 + [b"cat"] * 2
  assert dp.get_all_elements([]).tolist() == []


def test_unique_counts_equal_a_counter_on_random_data():
  rng = np.random.default_rng(1)
  words = ["".join(rng.choice(CHARS[:8], rng.integers(0, 20))) for _ in range(5000)]
  elements, counts = dp.get_unique_elements_with_counts([np.array(words)])
  expected = collections.Counter(w.encode() for w in words)
  assert dict(zip(elements.tolist(), counts.tolist())) == expected
  assert elements.tolist() == list(dict.fromkeys(w.encode() for w in words))  # First seen first.


def test_data_processing_misuse_is_named():
  with pytest.raises(TypeError, match=r"(?s)get_all_elements: the dataset's elements must be "
                     r"strings.*expected: batches of strings.*actual:   elements of dtype int64"):
    dp.get_all_elements([np.array([1, 2])])
  with pytest.raises(ValueError, match=r"(?s)must be 1-D batches.*actual:   an element of shape"):
    dp.get_all_elements([np.array([["a"]])])
  with pytest.raises(ValueError, match=r"(?s)get_capped_elements\(max_user_contribution=...\): "
                     r"`max_user_contribution` must be at least 1"):
    dp.get_capped_elements(BATCHES, 0)
  with pytest.raises(ValueError, match=r"string_max_bytes=...\): `string_max_bytes` must be at "
                     r"least 1 when it is not None"):
    dp.get_unique_elements(BATCHES, 0)
