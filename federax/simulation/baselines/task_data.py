"""`BaselineTaskDatasets`: a task's train/test/validation data and their preprocessing."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any, Optional, Union

import jax
import numpy as np

from federax.core.types import TensorType
from federax.simulation.baselines._preprocessing import check_seed, derive_seed
from federax.simulation.client_data import ClientData
from federax.data import Dataset
from federax.program.seeds import takes_seed

__all__ = ["BaselineTaskDatasets", "PreprocessFn"]

PreprocessFn = Callable[..., Dataset]
"""`preprocess_fn(dataset, seed=None) -> Dataset`; an int seed seeds every shuffle inside."""

CentralOrClientData = Union[Dataset, ClientData]


def _relax_batch_dimension(spec: Any) -> Any:
  """The element spec with each leaf's leading (batch) dimension unknown, as tf.data's is."""
  def relax(leaf):
    if isinstance(leaf, TensorType) and leaf.shape:
      return TensorType(leaf.dtype, (None,) + tuple(leaf.shape[1:]))
    return leaf
  return jax.tree_util.tree_map(relax, spec)


def _check_data(name: str, data: Any, allow_none: bool) -> None:
  if data is None and allow_none:
    return
  if not isinstance(data, (ClientData, Dataset)):
    raise TypeError(f"BaselineTaskDatasets({name}=...) expects a ClientData or a Dataset"
                    f"{' or None' if allow_none else ''}, got a {type(data).__name__}.")


class BaselineTaskDatasets:
  """A task's data and how to preprocess it: TFF's `tff.simulation.baselines.BaselineTaskDatasets`.

  Preprocess functions take a `Dataset` of raw examples and return batches; they have the
  signature `preprocess_fn(dataset, seed=None)`. With an int seed every shuffle inside is
  seeded from it, so a training loop that passes a seed derived from (run seed, round,
  client) (see `derive_seed`) replays a run bit for bit; with `seed=None` each call draws
  fresh randomness, as in TFF. The baselines batch with `Dataset.masked_batch`, so batches
  have a fixed shape and a bool 'mask' feature marking real rows.

  Args:
    train_data: the training clients (raw examples).
    test_data: the test data: a `ClientData`, or a centralized `Dataset`.
    validation_data: optional validation data, like `test_data`.
    train_preprocess_fn: maps a training client's `Dataset` to batches; None for identity.
    eval_preprocess_fn: the same for evaluation (test and validation) datasets.

  Attributes:
    element_type_structure: the spec of a preprocessed training batch, with the leading
      (batch) dimension unknown (None) as in tf.data: the models' `input_spec`.

  Raises:
    TypeError: if the data are not `ClientData`/`Dataset`s, or a preprocess function is not
      callable.
    ValueError: if test and validation elements differ.

  Example:
    >>> train = ClientData.from_dict({'a': {'x': np.zeros([5, 2], np.float32),
    ...                                     'y': np.zeros(5, np.int32)}})
    >>> datasets = BaselineTaskDatasets(train, train,
    ...     train_preprocess_fn=lambda ds, seed=None: ds.shuffle(5, seed=seed).masked_batch(2))
    >>> datasets.element_type_structure['x']
    TensorType(np.float32, (None, 2))
    >>> [b['mask'].tolist() for b in datasets.sample_train_clients(1, random_seed=0)[0]]
    [[True, True], [True, True], [True, False]]
  """

  def __init__(self, train_data: ClientData, test_data: CentralOrClientData,
               validation_data: Optional[CentralOrClientData] = None,
               train_preprocess_fn: Optional[PreprocessFn] = None,
               eval_preprocess_fn: Optional[PreprocessFn] = None):
    if not isinstance(train_data, ClientData):
      raise TypeError(f"BaselineTaskDatasets(train_data=...) expects a ClientData, got a "
                      f"{type(train_data).__name__}.")
    _check_data("test_data", test_data, allow_none=False)
    _check_data("validation_data", validation_data, allow_none=True)
    for name, fn in (("train_preprocess_fn", train_preprocess_fn),
                     ("eval_preprocess_fn", eval_preprocess_fn)):
      if fn is not None and not callable(fn):
        raise TypeError(f"BaselineTaskDatasets({name}=...) expects None or a function "
                        f"`fn(dataset, seed=None) -> Dataset`, got {fn!r}.")
    self._train_data = train_data
    self._test_data = test_data
    self._validation_data = validation_data
    self._train_preprocess_fn = train_preprocess_fn
    self._eval_preprocess_fn = eval_preprocess_fn
    if len(train_data) == 0:
      raise ValueError("BaselineTaskDatasets(train_data=...) has no clients.")
    seedable = train_preprocess_fn is not None and takes_seed(train_preprocess_fn)
    first = self.create_train_dataset(train_data.client_ids[0], seed=0 if seedable else None)
    self._element_type_structure = _relax_batch_dimension(first.element_spec)
    if validation_data is not None:
      test_spec, validation_spec = _raw_spec(test_data), _raw_spec(validation_data)
      if test_spec != validation_spec:
        raise ValueError(
            "BaselineTaskDatasets: validation_data must have the elements of test_data.\n"
            f"  test elements:       {test_spec}\n  validation elements: {validation_spec}")

  # --- Properties (TFF's names) -----------------------------------------------------------------

  @property
  def train_data(self) -> ClientData:
    return self._train_data

  @property
  def test_data(self) -> CentralOrClientData:
    return self._test_data

  @property
  def validation_data(self) -> Optional[CentralOrClientData]:
    return self._validation_data

  @property
  def train_preprocess_fn(self) -> Optional[PreprocessFn]:
    return self._train_preprocess_fn

  @property
  def eval_preprocess_fn(self) -> Optional[PreprocessFn]:
    return self._eval_preprocess_fn

  @property
  def element_type_structure(self) -> Any:
    return self._element_type_structure

  # --- Preprocessed datasets ----------------------------------------------------------------------

  def create_train_dataset(self, client_id: str, seed: Optional[int] = None) -> Dataset:
    """One training client's preprocessed dataset (its shuffles seeded by `seed`).

    Example:
      The `i`-th client of a round, replayable from the run's seed::

        datasets.create_train_dataset(client_id, seed=derive_seed(run_seed, round_num, i))
    """
    return _preprocess(self._train_preprocess_fn, "train_preprocess_fn",
                       self._train_data.create_dataset(client_id), seed)

  def create_test_dataset(self, client_id: str, seed: Optional[int] = None) -> Dataset:
    """One test client's dataset after `eval_preprocess_fn`.

    Raises:
      TypeError: if the test data are centralized (use `get_centralized_test_data`).
    """
    if not isinstance(self._test_data, ClientData):
      raise TypeError("create_test_dataset(): this task's test data are centralized (a "
                      "Dataset), not per client; use get_centralized_test_data().")
    return _preprocess(self._eval_preprocess_fn, "eval_preprocess_fn",
                       self._test_data.create_dataset(client_id), seed)

  def sample_train_clients(self, num_clients: int, replace: bool = False,
                           random_seed: Optional[int] = None) -> list[Dataset]:
    """Preprocessed datasets of `num_clients` training clients drawn uniformly at random.

    Clients are drawn as TFF draws them (`np.random.RandomState(random_seed).choice`). With
    an int `random_seed`, the i-th drawn client's preprocessing is seeded with
    `derive_seed(random_seed, i)`, so the whole result is reproducible; with None both the
    draw and the shuffles are fresh.

    Args:
      num_clients: how many clients, >= 1.
      replace: whether a client may be drawn twice.
      random_seed: None or a non-negative int.

    Raises:
      ValueError: if `num_clients < 1`, or exceeds the number of clients without replacement.

    Example:
      >>> train = ClientData.from_dict({c: {'x': np.zeros([n, 2], np.float32)}
      ...                               for c, n in [('a', 3), ('b', 5), ('c', 7)]})
      >>> datasets = BaselineTaskDatasets(train, train)
      >>> sorted(len(ds) for ds in datasets.sample_train_clients(3, random_seed=1))
      [3, 5, 7]
    """
    num_clients = operator.index(num_clients)
    random_seed = check_seed(random_seed, "sample_train_clients(random_seed=...)")
    population = self._train_data.client_ids
    if num_clients < 1:
      raise ValueError("sample_train_clients(num_clients=...) expects num_clients >= 1, got "
                       f"{num_clients}.")
    if not replace and num_clients > len(population):
      raise ValueError(f"sample_train_clients(num_clients={num_clients}) draws without "
                       f"replacement from {len(population)} training clients; pass "
                       f"num_clients <= {len(population)}, or replace=True.")
    if random_seed is None or random_seed < 2**32:
      random_state = np.random.RandomState(random_seed)
    else:  # RandomState takes 32-bit seeds; hash larger ones (e.g. from derive_seed) down.
      random_state = np.random.RandomState(
          int(np.random.SeedSequence(random_seed).generate_state(1)[0]))
    chosen = random_state.choice(len(population), size=num_clients, replace=replace)
    return [self.create_train_dataset(
        population[int(k)], None if random_seed is None else derive_seed(random_seed, i))
            for i, k in enumerate(chosen)]

  def get_centralized_test_data(self, seed: Optional[int] = None) -> Dataset:
    """All test data in one dataset, after `eval_preprocess_fn`.

    Federated test data are concatenated in `client_ids` order (deterministic, unlike TFF's
    random client order; the evaluation metrics do not depend on it), then preprocessed.
    """
    test_data = self._test_data
    if isinstance(test_data, ClientData):
      if len(test_data) == 0:
        raise ValueError("get_centralized_test_data(): the test ClientData has no clients.")
      test_data = Dataset.concatenate_lazily(
          [functools.partial(test_data.create_dataset, c) for c in test_data.client_ids])
    return _preprocess(self._eval_preprocess_fn, "eval_preprocess_fn", test_data, seed)

  # --- Summary ------------------------------------------------------------------------------------

  def _rows(self) -> list[list[str]]:
    rows = [["Split", "Dataset Type", "Number of Clients"]]
    for name, data in (("Train", self._train_data), ("Test", self._test_data),
                       ("Validation", self._validation_data)):
      if data is None:
        continue
      if isinstance(data, ClientData):
        rows.append([name, "Federated", str(len(data))])
      else:
        rows.append([name, "Centralized", "N/A"])
    return rows

  def summary(self, print_fn: Callable[[str], Any] = print) -> None:
    """Prints a table of the splits (federated or centralized, number of clients).

    Example:
      >>> train = ClientData.from_dict({c: {'x': np.zeros([2, 1])} for c in ('a', 'b')})
      >>> BaselineTaskDatasets(train, train, train_preprocess_fn=lambda ds, seed=None: ds).summary()
      Split |Dataset Type |Number of Clients |
      ========================================
      Train |Federated    |2                 |
      Test  |Federated    |2                 |
      ________________________________________
      Train Preprocess Function: True
      Eval Preprocess Function: False
    """
    rows = self._rows()
    widths = [max(len(row[j]) for row in rows) + 1 for j in range(len(rows[0]))]
    lines = ["".join(f"{value:<{width}}|" for value, width in zip(row, widths)) for row in rows]
    total = sum(widths) + len(widths)
    lines.insert(1, "=" * total)
    lines.append("_" * total)
    lines.append(f"Train Preprocess Function: {self._train_preprocess_fn is not None}")
    lines.append(f"Eval Preprocess Function: {self._eval_preprocess_fn is not None}")
    for line in lines:
      print_fn(line)

  def __repr__(self) -> str:
    splits = ", ".join(f"{row[0].lower()}={row[1].lower()}"
                       + (f"({row[2]} clients)" if row[2] != "N/A" else "")
                       for row in self._rows()[1:])
    return f"BaselineTaskDatasets({splits})"


def _raw_spec(data: CentralOrClientData) -> Any:
  return data.element_type_structure if isinstance(data, ClientData) else data.element_spec


def _preprocess(fn: Optional[PreprocessFn], name: str, dataset: Dataset,
                seed: Optional[int]) -> Dataset:
  """`fn(dataset, seed=seed)` (or `fn(dataset)` for a seedless call); the identity for None."""
  seed = check_seed(seed, f"{name}(seed=...)")
  if fn is None:
    return dataset
  if seed is None:
    result = fn(dataset)
  elif takes_seed(fn):
    result = fn(dataset, seed=seed)
  else:
    raise TypeError(f"{name} takes no `seed` argument, so it cannot be seeded (seed={seed}). "
                    "Write it as `fn(dataset, seed=None)` and seed its shuffles from `seed`.")
  if not isinstance(result, Dataset):
    raise TypeError(f"{name} must return a Dataset, returned a {type(result).__name__}.")
  return result
