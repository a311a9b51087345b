"""Federated EMNIST (TFF's HDF5 release): handwritten characters partitioned by writer."""

from __future__ import annotations

import collections
import functools
import os
from typing import Any, Optional

import numpy as np

from federax.simulation.datasets import _elements, download
from federax.simulation.formats.hdf5 import hdf5_client_data

_BASE = "https://storage.googleapis.com/tff-datasets-public/"

# URLs and sha256 of the archives as published in TFF's emnist loader (the HDF5 release, read by
# `tf.keras.utils.get_file(..., file_hash=...)`); each holds <prefix>_train.h5 and _test.h5.
DIGITS_ONLY = download.RemoteFile(
    url=_BASE + "fed_emnist_digitsonly.tar.bz2",
    files=("fed_emnist_digitsonly_train.h5", "fed_emnist_digitsonly_test.h5"),
    sha256="55333deb8546765427c385710ca5e7301e16f4ed8b60c1dc5ae224b42bd5b14b")
ALL_CHARACTERS = download.RemoteFile(
    url=_BASE + "fed_emnist.tar.bz2",
    files=("fed_emnist_train.h5", "fed_emnist_test.h5"),
    sha256="fe1ed5a502cea3a952eb105920bff8cffb32836b5173cb18a57a32c3606f3ea0")


def to_elements(features: dict[str, np.ndarray], num_classes: int = 62
                ) -> collections.OrderedDict[str, np.ndarray]:
  """A client's HDF5 features as TFF's EMNIST elements: `label` int32, `pixels` float32[28,28].

  Raises:
    DataFormatError: if a feature is missing, of the wrong kind or shape, a pixel is not
      finite, a label is outside `[0, num_classes)`, or the two lengths differ.
  """
  label = _elements.column(features, "label", "int", np.int32, bounds=(0, num_classes))
  pixels = _elements.column(features, "pixels", "float", np.float32, (28, 28))
  _elements.same_length(label=label, pixels=pixels)
  return collections.OrderedDict(label=label, pixels=pixels)


def load_data(only_digits: bool = True, cache_dir: Optional[str | os.PathLike] = None,
              progress: Optional[download.Progress] = None) -> tuple[Any, Any]:
  """Loads Federated EMNIST as TFF does: (train, test) `ClientData`, one client per writer.

  Derived by LEAF from NIST SD19 via EMNIST. Each writer's examples are split between train
  and test. With `only_digits=True`: 3,383 writers, 10 classes, 341,873 train and 40,832 test
  examples; otherwise 3,400 writers, 62 classes (0-9 digits, 10-35 upper case, 36-61 lower
  case), 671,585 train and 77,483 test examples.

  Elements are `OrderedDict(label=int32[], pixels=float32[28, 28])`; pixels are in [0, 1] with
  1.0 the background (the inverse of MNIST's usual convention).

  Args:
    only_digits: the 10-class digits-only version, or all 62 classes.
    cache_dir: where to look for (and download) the files; see `download.search_dirs`.
    progress: called as `progress(bytes_done, bytes_total)` during a download.

  Returns:
    `(train, test)`, lazy `ClientData` (a writer is read from disk when asked for).

  Raises:
    DataNotFoundError: if the files are absent and cannot be downloaded.
    ImportError: if h5py is not installed.

  Example:
    Downloads TFF's files on first use::

      train, test = emnist.load_data()
      train.create_dataset(train.client_ids[0]).element_spec
  """
  remote = DIGITS_ONLY if only_digits else ALL_CHARACTERS
  directory = download.ensure(remote, cache_dir, progress)
  train_file, test_file = remote.files
  element_fn = functools.partial(to_elements, num_classes=10 if only_digits else 62)
  return (hdf5_client_data(directory / train_file, element_fn),
          hdf5_client_data(directory / test_file, element_fn))
