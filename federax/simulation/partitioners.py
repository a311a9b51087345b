"""Partitioners: split centralized data into simulated clients (IID and the usual non-IID schemes).

Each takes a pytree of arrays with a leading example axis `[n, ...]` (or a finite `Dataset`,
stacked first) and returns a `ClientData` with client ids `'0' .. str(num_clients - 1)`. Every
example goes to exactly one client, and a given seed always gives the same partition. Clients
hold their examples in the original order; shuffle them with `ClientData.preprocess`.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import jax
import numpy as np

from federax.simulation._row_groups import group_rows, row_group_datasets
from federax.simulation.client_data import ClientData
from federax.data import Dataset

__all__ = ["iid", "dirichlet", "shards", "quantity_skew", "by_key"]

Data = Union[Any, Dataset]  # A pytree of arrays [n, ...], or a Dataset.
Key = Union[str, int]


def _prepare(data: Data, num_clients: Optional[int], op: str) -> tuple[Any, int]:
  if isinstance(data, Dataset):
    data = data.to_stacked()
  leaves = jax.tree_util.tree_leaves(data)
  lengths = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
  if len(lengths) != 1 or None in lengths:
    raise ValueError(f"{op}() expects arrays sharing a leading example axis; got leading "
                     f"lengths {sorted(lengths, key=str)}.")
  if num_clients is not None and int(num_clients) < 1:
    raise ValueError(f"{op}() expects num_clients >= 1, got {num_clients}.")
  return data, lengths.pop()


def _column(data: Any, key: Key, op: str) -> np.ndarray:
  try:
    column = data[key]
  except (KeyError, IndexError, TypeError) as e:
    keys = list(data) if isinstance(data, dict) else f"positions 0..{len(data) - 1}" if isinstance(
        data, (tuple, list)) else "none (a single array)"
    raise KeyError(f"{op}() looks for the feature {key!r}, but the data has {keys}.") from e
  return np.asarray(column)


def _client_data(data: Any, assignment: np.ndarray, num_clients: int) -> ClientData:
  ids = [str(i) for i in range(num_clients)]
  return ClientData(ids, row_group_datasets(data, ids, group_rows(assignment, num_clients)))


def iid(data: Data, num_clients: int, seed: Optional[int] = None) -> ClientData:
  """Random equal-size clients (sizes differ by at most one).

  Example:
    >>> cd = iid({'x': np.arange(10)}, num_clients=3, seed=0)
    >>> [len(cd.create_dataset(c)) for c in cd.client_ids]
    [4, 3, 3]
  """
  data, n = _prepare(data, num_clients, "iid")
  order = np.random.default_rng(seed).permutation(n)
  assignment = np.empty(n, np.int64)
  assignment[order] = np.arange(n) * num_clients // n if n else order
  return _client_data(data, assignment, num_clients)


def dirichlet(data: Data, num_clients: int, alpha: float, label_key: Key = "label",
              seed: Optional[int] = None, min_examples_per_client: Optional[int] = None,
              max_retries: int = 1000) -> ClientData:
  """Label-skewed clients: each class is split among clients with proportions ~ Dir(alpha).

  The common implementation of Hsu et al. 2019 ("Measuring the Effects of Non-Identical Data
  Distribution", arXiv:1909.06335) as in NIID-Bench (Li et al. 2022): per class, draw
  proportions p ~ Dir(alpha * 1), zero those of clients already holding n / num_clients
  examples (keeping sizes balanced), and cut the shuffled class at the cumulative proportions.
  Redraw the whole partition until every client has `min_examples_per_client` examples.
  Small alpha (0.1) gives few classes per client; large alpha (100) approaches IID.

  Args:
    data: a pytree of arrays `[n, ...]` or a Dataset.
    num_clients: the number of clients.
    alpha: the Dirichlet concentration, > 0.
    label_key: the label feature (a dict key or tuple position).
    seed: the seed.
    min_examples_per_client: default `min(10, n // num_clients)`.
    max_retries: redraws allowed before giving up.

  Raises:
    ValueError: if alpha <= 0, or no draw meets the minimum.
  """
  data, n = _prepare(data, num_clients, "dirichlet")
  if not alpha > 0:
    raise ValueError(f"dirichlet() expects alpha > 0, got {alpha}.")
  labels = _column(data, label_key, "dirichlet")
  minimum = min(10, n // num_clients) if min_examples_per_client is None else min_examples_per_client
  rng = np.random.default_rng(seed)
  classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
  for _ in range(max_retries):
    assignment = np.empty(n, np.int64)
    sizes = np.zeros(num_clients, np.int64)
    for rows in classes:
      rows = rng.permutation(rows)
      p = rng.dirichlet(np.full(num_clients, float(alpha)))
      p = np.where(sizes < n / num_clients, p, 0.0)  # Full clients take no more.
      p = p / p.sum() if p.sum() > 0 else np.full(num_clients, 1.0 / num_clients)
      cuts = (np.cumsum(p) * len(rows)).astype(np.int64)[:-1]
      counts = np.diff(np.concatenate([[0], cuts, [len(rows)]]))
      assignment[rows] = np.repeat(np.arange(num_clients), counts)
      sizes += counts
    if sizes.min() >= minimum:
      return _client_data(data, assignment, num_clients)
  raise ValueError(f"dirichlet(): no partition in {max_retries} draws gave every client at least "
                   f"{minimum} examples (n={n}, num_clients={num_clients}, alpha={alpha}). "
                   "Lower min_examples_per_client or num_clients, or raise alpha.")


def shards(data: Data, num_clients: int, shards_per_client: int = 2, label_key: Key = "label",
           seed: Optional[int] = None) -> ClientData:
  """Pathological non-IID (McMahan et al. 2017): sort by label, cut into
  `num_clients * shards_per_client` shards, and give each client `shards_per_client` of them.

  Examples within a label are shuffled before sorting, so shards hold random examples of
  their label. With equal-size classes whose size is a multiple of the shard size, each client
  sees at most `shards_per_client` labels.

  Raises:
    ValueError: if there are fewer examples than shards.

  Example:
    >>> cd = shards({'label': np.repeat(np.arange(10), 60)}, 30, 2, seed=0)
    >>> max(len(np.unique(cd.create_dataset(c).to_stacked()['label'])) for c in cd.client_ids)
    2
  """
  data, n = _prepare(data, num_clients, "shards")
  num_shards = num_clients * int(shards_per_client)
  if shards_per_client < 1 or n < num_shards:
    raise ValueError(f"shards() cuts {num_clients} x {shards_per_client} = {num_shards} shards, "
                     f"which needs shards_per_client >= 1 and at least that many examples; got "
                     f"{n} examples.")
  labels = _column(data, label_key, "shards")
  rng = np.random.default_rng(seed)
  shuffled = rng.permutation(n)
  by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
  shard_of_position = np.arange(n) * num_shards // n  # Equal-size contiguous shards.
  owner_of_shard = np.empty(num_shards, np.int64)
  owner_of_shard[rng.permutation(num_shards)] = np.arange(num_shards) // shards_per_client
  assignment = np.empty(n, np.int64)
  assignment[by_label] = owner_of_shard[shard_of_position]
  return _client_data(data, assignment, num_clients)


def quantity_skew(data: Data, num_clients: int, alpha: Optional[float] = None,
                  sigma: Optional[float] = None, seed: Optional[int] = None,
                  min_examples_per_client: int = 1) -> ClientData:
  """IID labels, unequal client sizes: proportions ~ Dir(alpha), or lognormal(0, sigma) sizes.

  Dirichlet proportions follow NIID-Bench's quantity skew; lognormal sizes follow LEAF and
  FedProx's synthetic data. Sizes are rounded (largest remainder) to sum to exactly `n`, each at
  least `min_examples_per_client`; examples are assigned at random.

  Args:
    data: a pytree of arrays `[n, ...]` or a Dataset.
    num_clients: the number of clients.
    alpha: Dirichlet concentration (smaller: more skewed). Give exactly one of alpha, sigma.
    sigma: lognormal shape (larger: more skewed).
    seed: the seed.
    min_examples_per_client: the smallest client size.

  Raises:
    ValueError: unless exactly one of alpha and sigma is positive, or if n is below
      `num_clients * min_examples_per_client`.

  Example:
    >>> cd = quantity_skew({'x': np.arange(100)}, 5, alpha=0.5, seed=0)
    >>> sum(len(cd.create_dataset(c)) for c in cd.client_ids)
    100
  """
  data, n = _prepare(data, num_clients, "quantity_skew")
  if (alpha is None) == (sigma is None) or not (alpha or sigma or 0) > 0:
    raise ValueError("quantity_skew() expects exactly one of alpha (Dirichlet) or sigma "
                     f"(lognormal), positive; got alpha={alpha}, sigma={sigma}.")
  spare = n - num_clients * min_examples_per_client
  if spare < 0:
    raise ValueError(f"quantity_skew(): {n} examples cannot give {num_clients} clients "
                     f"{min_examples_per_client} each.")
  rng = np.random.default_rng(seed)
  if alpha is not None:
    p = rng.dirichlet(np.full(num_clients, float(alpha)))
  else:
    weights = rng.lognormal(0.0, float(sigma), num_clients)
    p = weights / weights.sum()
  exact = p * spare
  sizes = np.floor(exact).astype(np.int64)
  sizes[np.argsort(sizes - exact)[:spare - sizes.sum()]] += 1  # Largest remainders get one more.
  sizes += min_examples_per_client
  assignment = np.empty(n, np.int64)
  assignment[rng.permutation(n)] = np.repeat(np.arange(num_clients), sizes)
  return _client_data(data, assignment, num_clients)


def by_key(data: Data, key: Key) -> ClientData:
  """One client per distinct value of a feature (a natural partition, e.g. a writer id).

  Client ids are the values as str, sorted; clients keep every feature, the key included.

  Example:
    >>> cd = by_key({'user': np.array([7, 3, 7]), 'x': np.arange(3)}, 'user')
    >>> cd.client_ids, cd.create_dataset('7').to_stacked()['x'].tolist()
    (['3', '7'], [0, 2])
  """
  data, _ = _prepare(data, None, "by_key")
  return ClientData.from_arrays(_column(data, key, "by_key"), data)
