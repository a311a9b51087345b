"""`ClientData`: a lazy, per-client view over federated data, with TFF's API."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Optional

import jax
import numpy as np

from federax.core.computations import LocalComputation, computation
from federax.core.type_conversions import to_type
from federax.core.types import SequenceType
from federax.simulation import _finite
from federax.simulation._row_groups import group_rows, row_group_datasets
from federax.data import Dataset

__all__ = ["ClientData"]


class ClientData:
  """The clients of a federated data set: their ids and a way to create each one's `Dataset`.

  Nothing is loaded until `create_dataset(client_id)` is called, so a `ClientData` over
  thousands of stored clients is cheap to build; nothing but the (small) element spec is
  cached. Mirrors `tff.simulation.datasets.ClientData`.

  Args:
    client_ids: the distinct client ids (str).
    create_dataset_fn: `client_id -> Dataset`.

  Raises:
    TypeError: if an id is not a str.
    ValueError: if ids repeat.

  Example:
    >>> cd = ClientData.from_dict({'a': {'x': np.arange(3)}, 'b': {'x': np.arange(5)}})
    >>> cd.client_ids, len(cd.create_dataset('b'))
    (['a', 'b'], 5)
  """

  __slots__ = ("_client_ids", "_known", "_create", "_spec")

  def __init__(self, client_ids: Sequence[str], create_dataset_fn: Callable[[str], Dataset]):
    ids = list(client_ids)
    bad = [c for c in ids if not isinstance(c, str)]
    if bad:
      raise TypeError(f"ClientData expects str client ids; got {bad[:3]!r} "
                      f"({type(bad[0]).__name__}). Convert them with str().")
    known = frozenset(ids)
    if len(known) != len(ids):
      repeated = sorted({c for c in ids if ids.count(c) > 1})[:5] if len(ids) < 10_000 else []
      raise ValueError(f"ClientData expects distinct client ids; {len(ids) - len(known)} repeat "
                       f"(e.g. {repeated}).")
    object.__setattr__(self, "_client_ids", tuple(ids))
    object.__setattr__(self, "_known", known)
    object.__setattr__(self, "_create", create_dataset_fn)
    object.__setattr__(self, "_spec", [])  # The element spec, once computed (small).

  def __setattr__(self, name, value):
    raise AttributeError("ClientData is immutable; preprocess() returns a new one.")

  # --- Construction ------------------------------------------------------------------------------

  @classmethod
  def from_clients_and_fn(cls, client_ids: Sequence[str],
                          create_dataset_fn: Callable[[str], Dataset]) -> ClientData:
    """A `ClientData` from ids and a function creating a client's dataset (TFF's
    `from_clients_and_tf_fn`)."""
    return cls(client_ids, create_dataset_fn)

  from_clients_and_tf_fn = from_clients_and_fn

  @classmethod
  def from_dict(cls, data: Mapping[str, Any], *, non_finite: str = "raise") -> ClientData:
    """A `ClientData` from `{client_id: features}` (TFF's `TestClientData`).

    Each client's dataset is built (not copied) here, so a client whose features do not slice,
    or whose element structure or dtypes differ from the first client's, fails now, named,
    rather than later inside a training round. Shapes may differ between clients (ragged
    clients are fine); the features and their dtypes may not. A NaN or Inf in a
    floating-point feature is refused, or its example dropped: it might never reach the
    client's update (max pooling never picks a -inf), and the client would train as if clean.

    Args:
      data: maps each client id to a `Dataset`, or to a pytree (usually a dict) of arrays
        sharing a leading example axis, sliced with `Dataset.from_tensor_slices` (only these
        arrays are checked for NaN and Inf; a `Dataset` is read later, lazily).
      non_finite: "raise" (default): a NaN or Inf feature raises, naming the client; "drop":
        the examples holding one are left out, and a `NonFiniteWarning` names their clients.

    Raises:
      ValueError: if a client's features cannot be sliced (scalars, unequal leading axes), or
        hold a NaN or Inf (with `non_finite="raise"`).
      TypeError: if clients' elements differ in structure or dtype.

    Example:
      >>> cd = ClientData.from_dict({'a': {'x': np.zeros([2, 3])}})
      >>> cd.element_type_structure
      {'x': TensorType(np.float64, (3,))}
    """
    where = "ClientData.from_dict(data)"
    _finite.check_policy(where, non_finite)
    datasets: dict[str, Dataset] = {}
    first: Optional[tuple[str, Any]] = None
    dropped: list[tuple[str, int, int]] = []
    for client_id, value in dict(data).items():
      if isinstance(value, Dataset):
        dataset = value
      else:
        try:
          dataset = Dataset.from_tensor_slices(value)
        except ValueError as e:
          raise ValueError(f"ClientData.from_dict(data): client {client_id!r}: {e}") from e
        bad, names = _finite.bad_rows(value)
        if bad is not None:
          if non_finite == "raise":
            raise _finite.refuse(where, client_id, bad, names)
          dropped.append((client_id, int(bad.sum()), bad.size))
          dataset = Dataset.from_tensor_slices(_finite.keep_rows(value, ~bad))
      spec = dataset.element_spec
      if first is None:
        first = (client_id, spec)
      else:
        _check_same_elements(first, (client_id, spec))
      datasets[client_id] = dataset
    _finite.warn_dropped(where, dropped)
    return cls(list(datasets), datasets.__getitem__)

  @classmethod
  def from_arrays(cls, client_ids_array: Any, features: Any, *,
                  non_finite: str = "raise") -> ClientData:
    """Groups the rows of centralized arrays by a client id column.

    Args:
      client_ids_array: `[n]` ids (str, bytes or ints); the client of each row.
      features: a pytree of arrays `[n, ...]`.
      non_finite: "raise" (default): a NaN or Inf in a floating-point feature raises, naming
        the client; "drop": its rows are left out (a client may end up empty), and a
        `NonFiniteWarning` names their clients. See `from_dict`.

    Returns:
      One client per distinct id (in sorted order, as str), holding its rows in their order.

    Raises:
      ValueError: if the lengths differ, or a feature holds a NaN or Inf (with "raise").

    Example:
      >>> cd = ClientData.from_arrays(np.array(['a', 'b', 'a']), {'y': np.array([1, 2, 3])})
      >>> cd.create_dataset('a').to_stacked()['y'].tolist()
      [1, 3]
    """
    where = "ClientData.from_arrays(client_ids_array, features)"
    _finite.check_policy(where, non_finite)
    ids = np.asarray(client_ids_array)
    lengths = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree_util.tree_leaves(features)}
    if ids.ndim != 1 or lengths != {len(ids)}:
      raise ValueError(f"from_arrays() expects client_ids_array of shape [n] and features with "
                       f"leading axis n; got ids of shape {ids.shape} and feature lengths "
                       f"{sorted(lengths, key=str)}.")
    unique, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(-1)
    names = [u.decode() if isinstance(u, bytes) else str(u) for u in unique.tolist()]
    bad, bad_features = _finite.bad_rows(features)
    if bad is None:
      rows = group_rows(inverse, len(unique))
    else:
      per_client = np.bincount(inverse[bad], minlength=len(unique))
      if non_finite == "raise":
        client = int(np.flatnonzero(per_client)[0])
        raise _finite.refuse(where, names[client], bad[inverse == client], bad_features)
      kept = np.flatnonzero(~bad)
      rows = [kept[r] for r in group_rows(inverse[kept], len(unique))]
      sizes = np.bincount(inverse, minlength=len(unique))
      _finite.warn_dropped(where, [(names[c], int(per_client[c]), int(sizes[c]))
                                   for c in np.flatnonzero(per_client)])
    return cls(names, row_group_datasets(features, names, rows))

  # --- Access -----------------------------------------------------------------------------------

  @property
  def client_ids(self) -> list[str]:
    return list(self._client_ids)

  def __len__(self) -> int:
    return len(self._client_ids)

  def __contains__(self, client_id: object) -> bool:
    return client_id in self._known

  def create_dataset(self, client_id: str) -> Dataset:
    """The dataset of one client.

    Raises:
      KeyError: if the id is unknown (with the closest known id as a hint).
      TypeError: if the creating function does not return a `Dataset`.
    """
    if client_id not in self._known:
      close = difflib.get_close_matches(str(client_id), self._client_ids, n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise KeyError(f"Unknown client id {client_id!r}; this ClientData has "
                     f"{len(self._client_ids)} client ids.{hint}")
    dataset = self._create(client_id)
    if not isinstance(dataset, Dataset):
      raise TypeError(f"The dataset function of this ClientData returned a "
                      f"{type(dataset).__name__} for client {client_id!r}; expected a Dataset.")
    return dataset

  create_tf_dataset_for_client = create_dataset

  @property
  def serializable_dataset_fn(self) -> Callable[[str], Dataset]:
    """`client_id -> Dataset` (TFF's name; here the same as `create_dataset`)."""
    return self.create_dataset

  @property
  def element_type_structure(self) -> Any:
    """The element spec of the clients' datasets (read from the first client)."""
    if not self._spec:
      if not self._client_ids:
        raise ValueError("element_type_structure: this ClientData has no clients.")
      self._spec.append(self.create_dataset(self._client_ids[0]).element_spec)
    return self._spec[0]

  @property
  def dataset_computation(self) -> LocalComputation:
    """A computation `(str -> T*)` building a client's dataset from its id, as TFF's.

    A host computation (it takes a string): applied to client ids with `fx.federated_map`, or
    composed with a process by `fx.simulation.compose_dataset_computation_with_*`, it builds
    each client's dataset in Python, and the rest of the round runs compiled.

    Example:
      >>> cd = ClientData.from_dict({'a': {'x': np.arange(3, dtype=np.int32)}})
      >>> str(cd.dataset_computation.type_signature)
      '(str -> <x=int32>*)'
    """
    element_type = to_type(self.element_type_structure)
    return computation(np.str_, result=SequenceType(element_type))(self.create_dataset)

  def preprocess(self, preprocess_fn: Callable[[Dataset], Dataset]) -> ClientData:
    """A new `ClientData` whose datasets are `preprocess_fn(dataset)`, applied lazily.

    Example:
      >>> cd = ClientData.from_dict({'a': {'x': np.arange(50)}})
      >>> [len(b['x']) for b in cd.preprocess(lambda ds: ds.batch(20)).create_dataset('a')]
      [20, 20, 10]
    """
    return ClientData(self._client_ids, lambda cid: preprocess_fn(self.create_dataset(cid)))

  def datasets(self, limit_count: Optional[int] = None,
               seed: Optional[int] = None) -> Iterator[Dataset]:
    """Client datasets in a random order (seeded), at most `limit_count` of them."""
    order = np.random.default_rng(seed).permutation(len(self._client_ids))
    for i in order[:limit_count]:
      yield self.create_dataset(self._client_ids[i])

  def create_dataset_from_all_clients(self, seed: Optional[int] = None) -> Dataset:
    """All clients' examples in one dataset, clients in a random order (seeded).

    Client datasets are created only when the result is read.
    """
    order = np.random.default_rng(seed).permutation(len(self._client_ids))
    parts = [functools.partial(self.create_dataset, self._client_ids[i]) for i in order]
    if not parts:
      raise ValueError("create_dataset_from_all_clients(): this ClientData has no clients.")
    return Dataset.concatenate_lazily(parts)

  create_tf_dataset_from_all_clients = create_dataset_from_all_clients

  @staticmethod
  def train_test_client_split(client_data: ClientData, num_test_clients: int,
                              seed: Optional[int] = None) -> tuple[ClientData, ClientData]:
    """Splits the clients into disjoint train and test `ClientData`s (random, seeded).

    Raises:
      ValueError: unless `1 <= num_test_clients < len(client_data)`.
    """
    n = len(client_data)
    if not 1 <= num_test_clients < n:
      raise ValueError(f"train_test_client_split() expects 1 <= num_test_clients < {n} (the "
                       f"number of clients, so both sides are non-empty); got {num_test_clients}.")
    order = np.random.default_rng(seed).permutation(n)
    ids = client_data.client_ids
    test = [ids[i] for i in sorted(order[:num_test_clients])]
    train = [ids[i] for i in sorted(order[num_test_clients:])]
    return (ClientData(train, client_data.create_dataset),
            ClientData(test, client_data.create_dataset))

  def __repr__(self) -> str:
    shown = ", ".join(map(repr, self._client_ids[:3]))
    more = ", ..." if len(self._client_ids) > 3 else ""
    return f"ClientData({len(self._client_ids)} clients: [{shown}{more}])"


def _check_same_elements(expected: tuple[str, Any], actual: tuple[str, Any]) -> None:
  """Raises TypeError, naming the differing feature paths, unless two clients' specs agree."""
  (id_a, spec_a), (id_b, spec_b) = expected, actual
  paths_a, tree_a = jax.tree_util.tree_flatten_with_path(spec_a)
  paths_b, tree_b = jax.tree_util.tree_flatten_with_path(spec_b)
  hint = ("Every client must yield elements of one structure and dtype; fix the features of "
          f"client {id_b!r} (e.g. rename keys or cast with .astype()).")
  if tree_a != tree_b:
    names_a = {jax.tree_util.keystr(p) or "<element>" for p, _ in paths_a}
    names_b = {jax.tree_util.keystr(p) or "<element>" for p, _ in paths_b}
    missing, extra = sorted(names_a - names_b), sorted(names_b - names_a)
    diff = (f"missing {', '.join(missing) or 'none'}; unexpected {', '.join(extra) or 'none'}"
            if missing or extra else
            f"containers differ: {tree_a} versus {tree_b}")
    raise TypeError(f"ClientData.from_dict(data): client {id_b!r} has elements of another "
                    f"structure than client {id_a!r}: {diff}. {hint}")
  dtypes = [f"{jax.tree_util.keystr(p) or '<element>'}: {a.dtype} versus {b.dtype}"
            for (p, a), (_, b) in zip(paths_a, paths_b) if a.dtype != b.dtype]
  if dtypes:
    raise TypeError(f"ClientData.from_dict(data): client {id_b!r} has other dtypes than client "
                    f"{id_a!r}: {'; '.join(dtypes)}. {hint}")
