"""Federated Stack Overflow (TFF's SQLite release): questions and answers partitioned by user."""

from __future__ import annotations

import collections
import json
import os
from typing import Any, Optional

import numpy as np

from federax.simulation.datasets import download
from federax.simulation.formats.sqlite import sql_client_data
from federax.simulation.formats.tf_example import FixedLenFeature

_BASE = "https://storage.googleapis.com/tff-datasets-public/"

# TFF's current loader reads this LZMA-compressed SQLite file and publishes no checksum for it
# (its `download.get_compressed_file` verifies nothing); the file is checked by the SQLite
# schema validation when opened.
STACKOVERFLOW = download.RemoteFile(url=_BASE + "stackoverflow.sqlite.lzma",
                                    files=("stackoverflow.sqlite",))
# Vocabulary files: URLs and sha256 as published in TFF's stackoverflow loader.
WORD_COUNTS = download.RemoteFile(
    url=_BASE + "stackoverflow.word_count.tar.bz2", files=("stackoverflow.word_count",),
    sha256="1dc00256d6e527c54b9756d968118378ae14e6692c0b3b6cad470cdd3f0c519c")
TAG_COUNTS = download.RemoteFile(
    url=_BASE + "stackoverflow.tag_count.tar.bz2", files=("stackoverflow.tag_count",),
    sha256="6fe281cec490d9384a290d560072438e7e2b377bbb823876ce7bd6f82696772d")

# TFF's parse spec, in its (lexicographic) key order.
ELEMENT_SPEC = collections.OrderedDict(
    creation_date=FixedLenFeature((), np.str_),
    score=FixedLenFeature((), np.int64),
    tags=FixedLenFeature((), np.str_),
    title=FixedLenFeature((), np.str_),
    tokens=FixedLenFeature((), np.str_),
    type=FixedLenFeature((), np.str_),
)
SPLITS = ("train", "heldout", "test")


def load_data(cache_dir: Optional[str | os.PathLike] = None,
              progress: Optional[download.Progress] = None) -> tuple[Any, Any, Any]:
  """Loads federated Stack Overflow as TFF does: (train, held_out, test) `ClientData`.

  One client per Stack Overflow user (users with fewer than 100 sentences dropped); text
  lower-cased, HTML unescaped, punctuation split into tokens, URLs replaced by a token.
  Train: posts before 2018-01-01 by users not held out (342,477 users, 135,818,730 examples);
  held-out: all posts of users with id % 10 == 0 (38,758 users, 16,491,230 examples); test:
  posts from 2018 on by the other users (204,088 users, 16,586,035 examples). The data is
  licensed CC BY-SA 3.0 (Stack Overflow via Kaggle).

  Elements are `OrderedDict(creation_date=str, score=int64, tags=str, title=str, tokens=str,
  type=str)`: tags are '|'-separated, tokens ' '-separated, type 'question' or 'answer'.

  Args:
    cache_dir: where to look for (and download) `stackoverflow.sqlite`; see
      `download.search_dirs`.
    progress: called as `progress(bytes_done, bytes_total)` during a download.

  Returns:
    `(train, held_out, test)`, lazy `ClientData` over the splits 'train', 'heldout', 'test'.

  Raises:
    DataNotFoundError: if the file is absent and cannot be downloaded.
    DatabaseFormatError: if the file is not in TFF's SQLite layout.

  Example:
    Downloads TFF's files on first use::

      train, held_out, test = stackoverflow.load_data()
  """
  directory = download.ensure(STACKOVERFLOW, cache_dir, progress)
  path = directory / STACKOVERFLOW.files[0]
  return tuple(sql_client_data(path, split, ELEMENT_SPEC) for split in SPLITS)


def load_word_counts(cache_dir: Optional[str | os.PathLike] = None,
                     vocab_size: Optional[int] = None,
                     progress: Optional[download.Progress] = None
                     ) -> collections.OrderedDict[str, int]:
  """The number of training users whose posts use each token, most frequent first (as TFF).

  Args:
    cache_dir: where to look for (and download) `stackoverflow.word_count`.
    vocab_size: keep only the `vocab_size` most frequent tokens.
    progress: called as `progress(bytes_done, bytes_total)` during a download.

  Raises:
    TypeError: if `vocab_size` is not None or an int.
    ValueError: if `vocab_size` is not positive.

  Example:
    Downloads TFF's word counts on first use::

      vocab = list(stackoverflow.load_word_counts(vocab_size=10000))
  """
  if vocab_size is not None:
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
      raise TypeError(f"vocab_size must be None or an int, got {vocab_size!r} "
                      f"({type(vocab_size).__name__}).")
    if vocab_size <= 0:
      raise ValueError(f"vocab_size must be positive, got {vocab_size}.")
  directory = download.ensure(WORD_COUNTS, cache_dir, progress)
  counts: collections.OrderedDict[str, int] = collections.OrderedDict()
  with open(directory / WORD_COUNTS.files[0], encoding="utf-8") as f:
    for line in f:
      if vocab_size is not None and len(counts) >= vocab_size:
        break
      word, count = line.split()
      counts[word] = int(count)
  return counts


def load_tag_counts(cache_dir: Optional[str | os.PathLike] = None,
                    progress: Optional[download.Progress] = None
                    ) -> collections.OrderedDict[str, int]:
  """The number of training users with a post under each tag, most frequent first (as TFF).

  Example:
    Downloads TFF's tag counts on first use::

      tags = list(stackoverflow.load_tag_counts())[:500]
  """
  directory = download.ensure(TAG_COUNTS, cache_dir, progress)
  with open(directory / TAG_COUNTS.files[0], encoding="utf-8") as f:
    counts = json.load(f)
  return collections.OrderedDict(sorted(counts.items(), key=lambda kv: kv[1], reverse=True))
