"""Exact heavy-hitter counts in plain Python, the reference for the IBLT computation's tests,
and what those tests share."""

import collections

import pytest


def utf8_prefix(word, max_bytes: int) -> bytes:
  """The longest prefix of whole characters of `word` within `max_bytes` UTF-8 bytes."""
  word = word.decode() if isinstance(word, bytes) else str(word)
  out = b""
  for char in word:
    if len(out) + len(char.encode()) > max_bytes:
      break
    out += char.encode()
  return out


def client_contribution(batches, *, string_max_bytes, max_words_per_user=None,
                        multi_contribution=True, batch_size=1) -> dict:
  """`{word: count}` one client adds, as TFF's `build_iblt_computation` defines it."""
  if max_words_per_user is not None and multi_contribution:
    batches = batches[:max_words_per_user // batch_size]  # Whole batches (TFF's `take`).
  words = [utf8_prefix(w, string_max_bytes) for batch in batches for w in batch]
  counts = collections.Counter(words)
  if max_words_per_user is not None and not multi_contribution:
    first = {w: i for i, w in reversed(list(enumerate(words)))}
    ranked = sorted(counts, key=lambda w: (-counts[w], first[w]))
    counts = {w: counts[w] for w in ranked[:max_words_per_user]}
  if not multi_contribution:
    counts = {w: 1 for w in counts}
  return dict(counts)


def heavy_hitters(clients, **kwargs) -> tuple[collections.Counter, collections.Counter]:
  """`(clients per word, total count per word)` over all clients."""
  unique, total = collections.Counter(), collections.Counter()
  for batches in clients:
    for word, count in client_contribution(batches, **kwargs).items():
      unique[word] += 1
      total[word] += count
  return unique, total


# --- Shared by the computation's tests -----------------------------------------------------------

ALPHABET = list("abcdefghij") + ["é", "ж", "日", "🙂"]


def zipf_clients(seed: int, num_clients: int, vocabulary: int, batch_size: int = 3):
  """Ragged clients (0-40 words) drawing Zipf-distributed words, as batches of strings."""
  import numpy as np
  rng = np.random.default_rng(seed)
  vocab = sorted({"".join(rng.choice(ALPHABET, rng.integers(1, 9))) for _ in range(vocabulary)})
  p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
  clients = []
  for _ in range(num_clients):
    words = [vocab[i] for i in rng.choice(len(vocab), rng.integers(0, 41), p=p / p.sum())]
    clients.append([np.array(words[i:i + batch_size]) for i in range(0, len(words), batch_size)])
  return clients


def as_dicts(output) -> tuple[dict, dict]:
  """`({string: clients}, {string: count})` of a `ServerOutput`."""
  strings = list(output.heavy_hitters)
  return (dict(zip(strings, output.heavy_hitters_unique_counts.tolist())),
          dict(zip(strings, output.heavy_hitters_counts.tolist())))


def run(computation, clients):
  """Calls the computation with any fallback to client-by-client execution an error."""
  import warnings
  import federax as fx
  with warnings.catch_warnings():
    warnings.simplefilter("error", fx.runtime.FallbackWarning)
    return computation(clients)


@pytest.fixture(scope="module", params=["vectorized", "sequential"])
def runtime(request):
  """Each runtime once per test module (tests/conftest.py's `runtime`, module-scoped): its
  compiled programs then serve every test of the module, where a fresh runtime per test would
  compile each computation again."""
  import federax as fx
  with getattr(fx.runtime, request.param)() as rt:
    yield rt
