"""Federated Shakespeare (TFF's HDF5 release): lines partitioned by play and speaking role."""

from __future__ import annotations

import collections
import os
from typing import Any, Optional

import numpy as np

from federax.simulation.datasets import _elements, download
from federax.simulation.formats.hdf5 import hdf5_client_data

# URL and archive sha256 as published in TFF's shakespeare loader (HDF5 release). The extracted
# files' sha256 and sizes are those of TFF's published HDF5 files, as recorded with this
# project's offline copy (shared/data/README.md); extraction stops past those sizes.
SHAKESPEARE = download.RemoteFile(
    url="https://storage.googleapis.com/tff-datasets-public/shakespeare.tar.bz2",
    files=("shakespeare_train.h5", "shakespeare_test.h5"),
    sha256="0285be9906cb5f268092eee4edeeacfc2af4574f2941f7cc2f08a321d7f5c707",
    file_sha256={
        "shakespeare_train.h5":
            "67100f52adfb6d5ece73c1a942b6863731a477bf09421a3c79c9937612895344",
        "shakespeare_test.h5":
            "55d3a635bffe5c4f71610a8d0cf86c1b369bfd7793e0635b5a83cde1f195689e",
    },
    file_sizes={"shakespeare_train.h5": 4_035_752, "shakespeare_test.h5": 2_745_814})


def to_elements(features: dict[str, np.ndarray]) -> collections.OrderedDict[str, np.ndarray]:
  """A client's HDF5 features as TFF's elements: `snippets`, one string per example.

  Raises:
    DataFormatError: if `snippets` is missing or does not hold one string per example.
  """
  return collections.OrderedDict(
      snippets=_elements.column(features, "snippets", "str", np.str_))


def load_data(cache_dir: Optional[str | os.PathLike] = None,
              progress: Optional[download.Progress] = None) -> tuple[Any, Any]:
  """Loads federated Shakespeare as TFF does: (train, test) `ClientData`, one client per role.

  Derived by LEAF from the Complete Works of Shakespeare: 715 clients (a speaking role in a
  play, e.g. 'ALL_S_WELL_THAT_ENDS_WELL_ADAM'), 16,068 train and 2,356 test examples; each
  client's snippets are split between train and test. Elements are
  `OrderedDict(snippets=str)`, a run of contiguous lines spoken by the role.

  Uses `shakespeare_train.h5` and `shakespeare_test.h5` from the first searched directory that
  holds both (see `download.search_dirs`), downloading TFF's archive only if none does.

  Args:
    cache_dir: where to look for (and download) the files.
    progress: called as `progress(bytes_done, bytes_total)` during a download.

  Returns:
    `(train, test)`, lazy `ClientData`.

  Raises:
    DataNotFoundError: if the files are absent and cannot be downloaded.
    ImportError: if h5py is not installed.

  Example:
    Downloads TFF's files into `data/shakespeare-tff` on first use::

      train, test = shakespeare.load_data(cache_dir='data/shakespeare-tff')
      len(train.client_ids)  # 715
  """
  directory = download.ensure(SHAKESPEARE, cache_dir, progress)
  return (hdf5_client_data(directory / "shakespeare_train.h5", to_elements),
          hdf5_client_data(directory / "shakespeare_test.h5", to_elements))
