"""Client preprocessing for Shakespeare next-character prediction, as TFF's baselines do it.

A client's snippets are shuffled, repeated and cut (TFF's order), then each snippet becomes
`[bos] + character ids + [eos]`, zero-padded to a multiple of `sequence_length + 1`; the
tokens are cut into chunks of `sequence_length + 1`, each split into the input (all but the
last token) and the target (all but the first), and the chunks are batched. TFF does this with
tf.data ops; here it is NumPy, run when the preprocessing function is called.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

import numpy as np

from federax.simulation.baselines._preprocessing import (check_client_spec, check_seed,
                                                        shuffle_repeat_take)
from federax.simulation.baselines.client_spec import ClientSpec
from federax.simulation.baselines.task_data import PreprocessFn
from federax.data import Dataset

__all__ = [
    "CHAR_VOCAB", "DEFAULT_SEQUENCE_LENGTH", "DEFAULT_SHUFFLE_BUFFER_SIZE", "VOCAB_SIZE",
    "create_preprocess_fn", "get_special_tokens", "to_sequences", "tokenize",
]

DEFAULT_SEQUENCE_LENGTH = 80  # McMahan et al. (AISTATS 2017).
DEFAULT_SHUFFLE_BUFFER_SIZE = 50

# The vocabulary of TFF's "Federated Learning for Text Generation" tutorial, in its order:
# character CHAR_VOCAB[i] has id i + 1 (0 is the padding).
CHAR_VOCAB = list(
    "dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#'/37;?bfjnrvzBFJNRVZ\"&*.26:\naeimquyAEIMQUY]!%)-159\r")
VOCAB_SIZE = len(CHAR_VOCAB) + 4
"""86 characters plus the pad, out-of-vocabulary, beginning and end tokens: 90."""


def get_special_tokens() -> tuple[int, int, int, int]:
  """`(pad, oov, bos, eos)` = (0, 87, 88, 89), TFF's ids.

  Example:
    >>> get_special_tokens()
    (0, 87, 88, 89)
  """
  n = len(CHAR_VOCAB)
  return 0, n + 1, n + 2, n + 3


def _byte_table() -> np.ndarray:
  """Token id of each byte value: TFF splits snippets into bytes, each unknown byte is oov."""
  _, oov, _, _ = get_special_tokens()
  table = np.full(256, oov, np.int32)
  for i, char in enumerate(CHAR_VOCAB):
    table[ord(char)] = i + 1
  return table


_BYTE_TO_TOKEN = _byte_table()


def tokenize(snippet: str | bytes, split_length: int = DEFAULT_SEQUENCE_LENGTH + 1) -> np.ndarray:
  """`[bos] + ids of the snippet's bytes + [eos]`, zero-padded to a multiple of `split_length`.

  Example:
    >>> tokenize('ab', split_length=6).tolist()
    [88, 64, 42, 89, 0, 0]
  """
  data = snippet.encode("utf-8") if isinstance(snippet, str) else bytes(snippet)
  _, _, bos, eos = get_special_tokens()
  n = len(data) + 2
  tokens = np.zeros(-(-n // split_length) * split_length, np.int32)
  tokens[0], tokens[n - 1] = bos, eos
  tokens[1:n - 1] = _BYTE_TO_TOKEN[np.frombuffer(data, np.uint8)]
  return tokens


def to_sequences(snippets: Iterable[str | bytes],
                 sequence_length: int = DEFAULT_SEQUENCE_LENGTH) -> tuple[np.ndarray, np.ndarray]:
  """The snippets as `(x, y)` int32 `[n, sequence_length]`: inputs and next-character targets.

  Example:
    >>> x, y = to_sequences(['ab'], sequence_length=5)
    >>> x.tolist(), y.tolist()
    ([[88, 64, 42, 89, 0]], [[64, 42, 89, 0, 0]])
  """
  split = sequence_length + 1
  parts = [tokenize(s, split) for s in snippets]
  tokens = np.concatenate(parts) if parts else np.zeros(0, np.int32)
  chunks = tokens.reshape(-1, split)
  return np.ascontiguousarray(chunks[:, :-1]), np.ascontiguousarray(chunks[:, 1:])


def create_preprocess_fn(preprocess_spec: ClientSpec,
                         sequence_length: int = DEFAULT_SEQUENCE_LENGTH) -> PreprocessFn:
  """The preprocessing of Shakespeare client datasets (TFF's `create_preprocess_fn`).

  Shuffle the snippets (buffer `shuffle_buffer_size`, default 50), repeat `num_epochs`, take
  `max_elements` snippets, tokenize and cut into sequences, batch with `masked_batch`.

  Args:
    preprocess_spec: the `ClientSpec`.
    sequence_length: characters per example, >= 1.

  Returns:
    `preprocess_fn(dataset, seed=None)` mapping a dataset of `{'snippets': str}` to batches
    `{'x': int32[B, L], 'y': int32[B, L], 'mask': bool[B]}`.

  Raises:
    TypeError: if `preprocess_spec` is not a `ClientSpec`.
    ValueError: if `sequence_length < 1`.

  Example:
    >>> preprocess = create_preprocess_fn(ClientSpec(num_epochs=1, batch_size=4))
    >>> client = fx.simulation.Dataset.from_tensor_slices(
    ...     {'snippets': np.array(['To be, or not to be', 'that is the question'])})
    >>> [(b['x'].shape, int(b['mask'].sum())) for b in preprocess(client, seed=0)]
    [((4, 80), 2)]
  """
  check_client_spec(preprocess_spec)
  if int(sequence_length) < 1:
    raise ValueError(f"create_preprocess_fn(sequence_length=...) expects a positive int, got "
                     f"{sequence_length}.")
  sequence_length = int(sequence_length)

  def preprocess_fn(dataset: Dataset, seed: Optional[int] = None) -> Dataset:
    seed = check_seed(seed, "Shakespeare preprocess_fn(seed=...)")
    dataset = shuffle_repeat_take(dataset, preprocess_spec, DEFAULT_SHUFFLE_BUFFER_SIZE, seed)
    snippets = dataset.to_stacked()["snippets"]
    x, y = to_sequences(snippets.reshape(-1).tolist(), sequence_length)
    return Dataset.from_tensor_slices({"x": x, "y": y}).masked_batch(preprocess_spec.batch_size)

  return preprocess_fn
