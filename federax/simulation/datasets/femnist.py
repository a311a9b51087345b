"""FEMNIST from LEAF's own output: handwritten characters partitioned by writer."""

from __future__ import annotations

import collections
import os
from typing import Any

import numpy as np

from federax.simulation.datasets import _elements
from federax.simulation.formats import leaf
from federax.simulation.formats.errors import DataFormatError

NUM_DIGITS = 10
NUM_CLASSES = 62


def to_elements(features: dict[str, np.ndarray]) -> collections.OrderedDict[str, np.ndarray]:
  """LEAF's `{'x': float[n, 784], 'y': int[n]}` as EMNIST's `label` int32, `pixels` [28, 28].

  Raises:
    DataFormatError: if `x` or `y` is missing, of the wrong kind or shape, a pixel is not
      finite, a label is outside 0..61, or the two lengths differ.
  """
  label = _elements.column(features, "y", "int", np.int32, bounds=(0, NUM_CLASSES))
  pixels = _elements.column(features, "x", "float", np.float32, (28, 28))
  _elements.same_length(y=label, x=pixels)
  return collections.OrderedDict(label=label, pixels=pixels)


def _digits(elements: collections.OrderedDict) -> collections.OrderedDict:
  keep = elements["label"] < NUM_DIGITS
  return collections.OrderedDict((k, v[keep]) for k, v in elements.items())


def load_data(data_dir: str | os.PathLike, only_digits: bool = False,
              cache_bytes: int = leaf.DEFAULT_CACHE_BYTES) -> tuple[Any, Any]:
  """Loads FEMNIST from a LEAF output directory (or several LEAF samples) as (train, test).

  LEAF's FEMNIST holds 62 classes (0-9 digits, 10-35 upper case, 36-61 lower case) with pixels
  in [0, 1], 1.0 the white background, the same convention as TFF's EMNIST; elements are
  EMNIST's `OrderedDict(label=int32[], pixels=float32[28, 28])` (LEAF's 784 values reshaped
  row-major). LEAF must be run by the user (it is not redistributed as files); point `data_dir`
  at its output, e.g. `leaf/data/femnist/data` with `train/` and `test/` shards, or at a
  directory of several such samples: writers found in more than one sample are kept once, from
  the first sample in sorted folder order that holds their train part (see
  `formats.leaf.read_leaf_splits`).

  Args:
    data_dir: a LEAF output directory, or a directory of them.
    only_digits: keep only labels 0-9 and drop writers left with no example. Knowing who is
      left needs every shard's labels, read at load time by a scan that skips the pixels
      (about 1 s for the three LEAF samples in `../shared/data`; a full parse takes 15 s).
    cache_bytes: the budget for parsed shards kept in memory.

  Returns:
    `(train, test)`, lazy `ClientData` keyed by writer id (e.g. 'f3241_49').

  Raises:
    FileNotFoundError: if no LEAF output directory is found under `data_dir`.

  Example:
    With LEAF's FEMNIST output in `femnist-leaf/flic`::

      train, test = femnist.load_data('femnist-leaf/flic')
      len(train.client_ids)  # 110
  """
  from federax.simulation.client_data import ClientData  # pylint: disable=g-import-not-at-top
  from federax.data import Dataset  # pylint: disable=g-import-not-at-top
  from federax.data._elements import frozen  # pylint: disable=g-import-not-at-top

  splits = leaf.read_leaf_splits(data_dir, cache_bytes)

  def client_data(source: leaf.LeafClientSource):
    def elements(client_id: str) -> collections.OrderedDict:
      features = source.read(client_id)
      try:
        result = to_elements(features)
      except DataFormatError as e:
        raise leaf.in_user(source, client_id, e) from None
      return _digits(result) if only_digits else result

    client_ids = source.client_ids
    if only_digits:
      client_ids = [c for c in client_ids
                    if np.any(source.read_feature(c, "y") < NUM_DIGITS)]
    return ClientData.from_clients_and_fn(
        client_ids, lambda client_id: Dataset.from_tensor_slices(frozen(elements(client_id))))

  return client_data(splits["train"]), client_data(splits["test"])
