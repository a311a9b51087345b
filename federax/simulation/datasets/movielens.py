"""MovieLens (GroupLens) ratings as federated data: one client per user, TFF tutorial's way.

GroupLens publishes MovieLens 100K (`u.data`: `user \\t item \\t rating \\t timestamp`) and
MovieLens 1M (`ratings.dat`: `user::item::rating::timestamp`). `load_data` reads either from a
local directory, or downloads GroupLens's zip (checked against its sha256) into the cache and
reads the ratings straight from it. Elements are TFF's tutorial's
`OrderedDict(x=int64[1] movie index, y=float32[1] rating)`; the helpers below do the tutorial's
preprocessing (at most N ratings per user, shuffle, batch; users split 80/10/10) and a per-user
split of ratings by time or by fraction.
"""

from __future__ import annotations

import collections
import os
import pathlib
import zipfile
from typing import Any, NamedTuple, Optional

import numpy as np
from jax.tree_util import tree_leaves as jax_leaves

from federax.simulation.datasets import download
from federax.simulation.formats.errors import DataFormatError, data_format_error

_BASE = "https://files.grouplens.org/datasets/movielens/"

# sha256 and sizes as recorded by TensorFlow Datasets' url_checksums/movielens.txt.
ML_100K = download.RemoteFile(
    url=_BASE + "ml-100k.zip", files=("ml-100k.zip",), size=4924029,
    sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229")
ML_1M = download.RemoteFile(
    url=_BASE + "ml-1m.zip", files=("ml-1m.zip",), size=5917549,
    sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20")

# Where each layout keeps its ratings, and how a line's fields are separated.
_LAYOUTS = {"100k": ("u.data", "\t", ML_100K, "ml-100k"),
            "1m": ("ratings.dat", "::", ML_1M, "ml-1m")}


class Ratings(NamedTuple):
  """Every rating of a MovieLens file, as columns of equal length (in file order).

  Attributes:
    user_id: int64[n] GroupLens user ids (from 1).
    movie_id: int64[n] GroupLens movie ids (from 1).
    rating: float32[n] ratings 1-5.
    timestamp: int64[n] seconds since the epoch.
    source: the file read.
  """
  user_id: np.ndarray
  movie_id: np.ndarray
  rating: np.ndarray
  timestamp: np.ndarray
  source: str


def parse_ratings(text: str, source: str, separator: str) -> Ratings:
  """Parses `user<sep>movie<sep>rating<sep>timestamp` lines (blank lines are skipped).

  Raises:
    DataFormatError: naming `source` and the 1-based line of the first bad line (wrong number
      of fields, a field that is not an integer, an id below 1, a rating outside 1-5).
  """
  rows = []
  for number, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    fields = line.split(separator)
    try:
      if len(fields) != 4:
        raise ValueError(f"{len(fields)} fields")
      user, movie, rating, stamp = (int(f) for f in fields)
    except ValueError:
      raise data_format_error(
          f"{source!r} line {number}", "is not a rating",
          expected=f"4 integers separated by {separator!r} (user, movie, rating, timestamp)",
          found=repr(line[:80]),
          hint="Is this GroupLens's unmodified file?") from None
    if user < 1 or movie < 1 or not 1 <= rating <= 5:
      raise data_format_error(f"{source!r} line {number}", "has an id or a rating out of range",
                              expected="ids >= 1 and a rating in 1..5", found=repr(line[:80]))
    rows.append((user, movie, rating, stamp))
  if not rows:
    raise data_format_error(repr(source), "holds no rating", expected="at least one line")
  table = np.asarray(rows, np.int64)
  return Ratings(table[:, 0], table[:, 1], table[:, 2].astype(np.float32), table[:, 3], source)


def _find_local(data_dir: pathlib.Path) -> tuple[pathlib.Path, str]:
  for layout, (name, separator, _, folder) in _LAYOUTS.items():
    for candidate in (data_dir / name, data_dir / folder / name):
      if candidate.is_file():
        return candidate, separator
  raise download.DataNotFoundError(
      f"movielens.load_data: no MovieLens ratings file under {os.fspath(data_dir)!r}; expected "
      "'u.data' (MovieLens 100K) or 'ratings.dat' (MovieLens 1M), there or in 'ml-100k/' or "
      "'ml-1m/'. Unzip GroupLens's archive there, or pass data_dir=None to download it.")


def read_ratings(data_dir: Optional[str | os.PathLike] = None, variant: str = "100k",
                 cache_dir: Optional[str | os.PathLike] = None,
                 progress: Optional[download.Progress] = None) -> Ratings:
  """The ratings of MovieLens, from `data_dir` or from GroupLens's zip (downloaded once).

  Args:
    data_dir: a directory holding `u.data` or `ratings.dat` (or `ml-100k/`, `ml-1m/`); when
      None, GroupLens's `ml-<variant>.zip` is found in (or downloaded into) the cache.
    variant: '100k' or '1m', for a download.
    cache_dir, progress: as `download.ensure`.

  Raises:
    DataNotFoundError: if no ratings file is found (or can be downloaded).
    DataFormatError: if a line is not a rating (the message names the file and the line).
  """
  if data_dir is not None:
    path, separator = _find_local(pathlib.Path(os.path.expanduser(os.fspath(data_dir))))
    text = path.read_bytes().decode("latin-1")
    return parse_ratings(text, os.fspath(path), separator)
  if variant not in _LAYOUTS:
    raise ValueError(f"movielens.read_ratings: variant must be one of {sorted(_LAYOUTS)}; got "
                     f"{variant!r}.")
  name, separator, remote, folder = _LAYOUTS[variant]
  archive = download.ensure(remote, cache_dir, progress) / remote.files[0]
  member = f"{folder}/{name}"
  try:
    with zipfile.ZipFile(archive) as z:
      text = z.read(member).decode("latin-1")
  except (zipfile.BadZipFile, KeyError) as e:
    raise DataFormatError(f"{os.fspath(archive)!r}: cannot read {member!r} ({e}).") from None
  return parse_ratings(text, f"{os.fspath(archive)}:{member}", separator)


def to_client_data(ratings: Ratings) -> Any:
  """A `ClientData` with one client per user (ids: the GroupLens user id as a string).

  Movies are re-indexed 0..M-1 in the order of their ids, over the movies that have ratings
  (the TFF tutorial's mapping). Each user's ratings are in time order (ties by movie).
  Elements: `OrderedDict(x=int64[1] movie index, y=float32[1] rating)`.
  """
  from federax.data import Dataset  # pylint: disable=g-import-not-at-top
  from federax.data._elements import frozen  # pylint: disable=g-import-not-at-top
  from federax.simulation.client_data import ClientData  # pylint: disable=g-import-not-at-top

  _, movie_index = np.unique(ratings.movie_id, return_inverse=True)
  order = np.lexsort((ratings.movie_id, ratings.timestamp, ratings.user_id))
  users = ratings.user_id[order]
  x = movie_index[order].astype(np.int64)[:, None]
  y = ratings.rating[order].astype(np.float32)[:, None]
  user_ids, starts = np.unique(users, return_index=True)
  ends = np.append(starts[1:], len(users))
  spans = {str(u): (s, e) for u, s, e in zip(user_ids, starts, ends)}

  def create(client_id: str) -> Any:
    s, e = spans[client_id]
    return Dataset.from_tensor_slices(frozen(collections.OrderedDict(x=x[s:e], y=y[s:e])))

  return ClientData.from_clients_and_fn([str(u) for u in user_ids], create)


def load_data(data_dir: Optional[str | os.PathLike] = None, variant: str = "100k",
              cache_dir: Optional[str | os.PathLike] = None,
              progress: Optional[download.Progress] = None) -> Any:
  """Loads MovieLens ratings as a `ClientData` keyed by user id.

  MovieLens 100K: 100,000 ratings by 943 users of 1,682 movies; MovieLens 1M (the TFF
  tutorial's): 1,000,209 ratings by 6,040 users of 3,706 movies.

  Args:
    data_dir: a local directory with GroupLens's unzipped files (read offline); None to use
      the cached or downloaded zip of `variant`.
    variant: '100k' or '1m' (only for a download).
    cache_dir, progress: as `download.ensure`.

  Returns:
    A `ClientData`; elements `OrderedDict(x=int64[1] movie index, y=float32[1] rating)`.

  Raises:
    DataNotFoundError: if no ratings file is found or can be downloaded.
    DataFormatError: naming the file and line of a line that is not a rating.

  Example:
    >>> import os, pathlib
    >>> shared = pathlib.Path(os.environ.get('FEDERAX_SHARED_DATA', '../shared/data'))
    >>> movielens = fx.simulation.datasets.movielens
    >>> users = movielens.load_data(shared / 'movielens-100k')  # doctest: +SKIP
    >>> len(users.client_ids)  # doctest: +SKIP
    943
  """
  return to_client_data(read_ratings(data_dir, variant, cache_dir, progress))


def split_users(client_data: Any, train_fraction: float = 0.8, val_fraction: float = 0.1,
                seed: int = 42) -> tuple[Any, Any, Any]:
  """The TFF tutorial's split *by user*: shuffle the users (NumPy seed 42), then 80/10/10.

  Validation and test users are unseen in training.

  Returns:
    `(train, val, test)` `ClientData`s.

  Example:
    >>> cd = fx.simulation.ClientData.from_dict({str(i): {'x': np.arange(2)} for i in range(10)})
    >>> movielens = fx.simulation.datasets.movielens
    >>> [len(part.client_ids) for part in movielens.split_users(cd)]
    [8, 1, 1]
  """
  from federax.simulation.client_data import ClientData  # pylint: disable=g-import-not-at-top
  ids = list(client_data.client_ids)
  np.random.RandomState(seed).shuffle(ids)  # The tutorial's np.random.seed(42); shuffle.
  train_end = int(len(ids) * train_fraction)
  val_end = int(len(ids) * (train_fraction + val_fraction))
  return tuple(ClientData.from_clients_and_fn(part, client_data.create_dataset)
               for part in (ids[:train_end], ids[train_end:val_end], ids[val_end:]))


def split_ratings(client_data: Any, train_fraction: float = 0.8, val_fraction: float = 0.1,
                  by: str = "time", seed: int = 42) -> tuple[Any, Any, Any]:
  """Splits *each user's* ratings into train/val/test (the same users in all three).

  Args:
    client_data: from `load_data` (each user's ratings in time order).
    train_fraction, val_fraction: the shares of a user's ratings (the rest is test); a
      user's first `floor(n * train_fraction)` ratings train, and so on.
    by: 'time' (the earliest ratings train, the latest test) or 'fraction' (a random
      subset of each user, seeded by `seed`, keeping time order inside each part).
    seed: for `by='fraction'`.

  Returns:
    `(train, val, test)` `ClientData`s with the same client ids.

  Example:
    >>> cd = fx.simulation.ClientData.from_dict({'u': {'x': np.arange(10), 'y': np.ones(10)}})
    >>> train, val, test = fx.simulation.datasets.movielens.split_ratings(cd)
    >>> [next(iter(p.create_dataset('u').batch(10)))['x'].tolist() for p in (val, test)]
    [[8], [9]]
  """
  from federax.data import Dataset  # pylint: disable=g-import-not-at-top
  from federax.data._elements import frozen  # pylint: disable=g-import-not-at-top
  from federax.simulation.client_data import ClientData  # pylint: disable=g-import-not-at-top
  if by not in ("time", "fraction"):
    raise ValueError(f"movielens.split_ratings: by must be 'time' or 'fraction'; got {by!r}.")
  if not (0 <= train_fraction and 0 <= val_fraction and train_fraction + val_fraction <= 1):
    raise ValueError("movielens.split_ratings: fractions must be >= 0 and sum to <= 1; got "
                     f"train_fraction={train_fraction}, val_fraction={val_fraction}.")

  def part(index: int):
    def create(client_id: str) -> Any:
      data = client_data.create_dataset(client_id)
      columns = data.to_stacked()
      n = len(jax_leaves(columns)[0]) if jax_leaves(columns) else 0
      order = np.arange(n)
      if by == "fraction":
        offset = int.from_bytes(client_id.encode()[-4:].rjust(4, b"\0"), "little")
        order = np.random.RandomState((seed + offset) % (1 << 32)).permutation(n)
      cut1, cut2 = int(n * train_fraction), int(n * (train_fraction + val_fraction))
      keep = np.sort(np.split(order, [cut1, cut2])[index])
      return Dataset.from_tensor_slices(frozen(
          collections.OrderedDict((k, np.asarray(v)[keep]) for k, v in columns.items())))
    return ClientData.from_clients_and_fn(client_data.client_ids, create)

  return part(0), part(1), part(2)


def preprocess_for_tutorial(client_data: Any, batch_size: int = 5,
                            max_examples_per_user: Optional[int] = 300, seed: int = 42) -> Any:
  """The TFF tutorial's `create_tf_datasets` pipeline: `take(max).shuffle(max, seed).batch(b)`.

  Example:
    >>> cd = fx.simulation.ClientData.from_dict(
    ...     {'u': {'x': np.arange(12)[:, None], 'y': np.ones((12, 1), np.float32)}})
    >>> prep = fx.simulation.datasets.movielens.preprocess_for_tutorial(cd, 5, 11)
    >>> [len(b['x']) for b in prep.create_dataset('u')]
    [5, 5, 1]
  """
  def pipeline(data):
    if max_examples_per_user is not None:
      data = data.take(max_examples_per_user).shuffle(max_examples_per_user, seed=seed)
    return data.batch(batch_size)
  return client_data.preprocess(pipeline)
