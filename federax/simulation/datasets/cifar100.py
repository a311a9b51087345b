"""Federated CIFAR-100 (TFF's HDF5 release): CIFAR-100 partitioned by a Pachinko allocation."""

from __future__ import annotations

import collections
import os
from typing import Any, Optional

import numpy as np

from federax.simulation.datasets import _elements, download
from federax.simulation.formats.hdf5 import hdf5_client_data

# URL and sha256 as published in TFF's cifar100 loader (HDF5 release).
FED_CIFAR100 = download.RemoteFile(
    url="https://storage.googleapis.com/tff-datasets-public/fed_cifar100.tar.bz2",
    files=("fed_cifar100_train.h5", "fed_cifar100_test.h5"),
    sha256="e8575e22c038ecef1ce6c7d492d7abee7da13b1e1ba9b70a7fc18531ba7590de")


def to_elements(features: dict[str, np.ndarray]) -> collections.OrderedDict[str, np.ndarray]:
  """TFF's CIFAR-100 elements: `coarse_label` int64, `image` uint8[32,32,3], `label` int64.

  Raises:
    DataFormatError: if a feature is missing, of the wrong kind or shape, outside its range
      (labels 0..99, coarse labels 0..19, pixels 0..255), or the lengths differ.
  """
  elements = collections.OrderedDict(
      coarse_label=_elements.column(features, "coarse_label", "int", np.int64, bounds=(0, 20)),
      image=_elements.column(features, "image", "int", np.uint8, (32, 32, 3), bounds=(0, 256)),
      label=_elements.column(features, "label", "int", np.int64, bounds=(0, 100)))
  _elements.same_length(**elements)
  return elements


def load_data(cache_dir: Optional[str | os.PathLike] = None,
              progress: Optional[download.Progress] = None) -> tuple[Any, Any]:
  """Loads federated CIFAR-100 as TFF does: (train, test) `ClientData`.

  CIFAR-100's train split over 500 clients (ids '0'..'499') and its test split over 100
  ('0'..'99'), 100 images each, drawn by a two-level LDA (Pachinko allocation): a client's
  coarse-label distribution ~ Dirichlet(0.1), each coarse-to-fine distribution ~ Dirichlet(10).

  Elements are `OrderedDict(coarse_label=int64[], image=uint8[32, 32, 3], label=int64[])`.

  Args:
    cache_dir: where to look for (and download) the files; see `download.search_dirs`.
    progress: called as `progress(bytes_done, bytes_total)` during a download.

  Returns:
    `(train, test)`, lazy `ClientData`.

  Raises:
    DataNotFoundError: if the files are absent and cannot be downloaded.
    ImportError: if h5py is not installed.

  Example:
    Downloads TFF's files on first use::

      train, test = cifar100.load_data()
      len(train.client_ids), len(test.client_ids)  # (500, 100)
  """
  directory = download.ensure(FED_CIFAR100, cache_dir, progress)
  train_file, test_file = FED_CIFAR100.files
  return (hdf5_client_data(directory / train_file, to_elements),
          hdf5_client_data(directory / test_file, to_elements))
