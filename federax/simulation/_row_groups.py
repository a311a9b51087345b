"""Row groups: the rows of centralized arrays split among clients, without a per-row loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from federax.data import Dataset
from federax.data._elements import frozen


def group_rows(assignment: np.ndarray, num_groups: int) -> list[np.ndarray]:
  """The row indices of each group, rows in their original order.

  Args:
    assignment: `int[n]`, the group in `[0, num_groups)` of each row.
    num_groups: the number of groups (a group may be empty).

  Returns:
    `num_groups` index arrays; array g holds the rows with `assignment == g`, ascending.
  """
  order = np.argsort(assignment, kind="stable")
  bounds = np.cumsum(np.bincount(assignment, minlength=num_groups))[:-1]
  return np.split(order, bounds)


def row_group_datasets(data: Any, client_ids: Sequence[str],
                       rows: Sequence[np.ndarray]) -> Callable[[str], Dataset]:
  """`client_id -> Dataset` of the rows `rows[i]` of the arrays in `data`, for `client_ids[i]`.

  Args:
    data: a pytree of arrays `[n, ...]`.
    client_ids: the client ids, one per row group.
    rows: the row indices of each client, as from `group_rows`.

  Returns:
    A function creating a client's dataset only when called (a `ClientData`'s
    `create_dataset_fn`).
  """
  by_id = dict(zip(client_ids, rows))

  def create(client_id: str) -> Dataset:
    return Dataset.from_tensor_slices(
        frozen(jax.tree_util.tree_map(lambda a: np.asarray(a)[by_id[client_id]], data)))

  return create
