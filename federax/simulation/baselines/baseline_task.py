"""`BaselineTask`: a task's datasets plus the function building its model."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from federax.core import types as t
from federax.core.errors import format_message, user_location
from federax.core.type_conversions import to_type
from federax.learning.models import FunctionalModel
from federax.simulation.baselines.task_data import BaselineTaskDatasets

__all__ = ["BaselineTask"]


def _named_fields(type_spec: t.Type) -> dict | None:
  """`{name: type}` of a struct whose elements all have names, else None."""
  if isinstance(type_spec, t.StructType) and all(type_spec.names()):
    return dict(type_spec.items())
  return None


def _accepts(model_type: t.Type, data_type: t.Type) -> bool:
  """Whether batches of `data_type` fit `model_type`, matching named fields by name (the
  runtime does: a model spec `<mask,x,y>` takes batches `<x,y,mask>`)."""
  model_fields, data_fields = _named_fields(model_type), _named_fields(data_type)
  if model_fields is None or data_fields is None:
    return model_type.is_assignable_from(data_type)
  return model_fields.keys() == data_fields.keys() and all(
      _accepts(model_fields[name], data_fields[name]) for name in model_fields)


def _differences(model_type: t.Type, data_type: t.Type) -> list[tuple[str, Any, Any]]:
  """`(field, model's type, dataset's type)` for each field whose types differ; none when the
  structures are unnamed (then the whole types are shown)."""
  model_fields, data_fields = _named_fields(model_type), _named_fields(data_type)
  if model_fields is None or data_fields is None:
    return []
  differences = []
  for name in sorted(set(model_fields) | set(data_fields)):
    m, d = model_fields.get(name), data_fields.get(name)
    if m is None or d is None or not _accepts(m, d):
      differences.append((name, m if m is not None else "nothing",
                          d if d is not None else "nothing"))
  return differences


@dataclasses.dataclass(frozen=True)
class BaselineTask:
  """A learning task for simulations: TFF's `tff.simulation.baselines.BaselineTask`.

  Attributes:
    datasets: the `BaselineTaskDatasets` (data and preprocessing).
    model_fn: a zero-argument function returning the task's `FunctionalModel`; its
      `input_spec` must accept `datasets.element_type_structure`. It returns the same initial
      weights on every call (they come from the task's seed).

  Raises:
    TypeError: if `datasets` is not a `BaselineTaskDatasets`, `model_fn` is not callable or
      does not return a `FunctionalModel`.
    ValueError: if the model's `input_spec` does not accept the preprocessed batches.

  Example:
    >>> from federax.simulation import baselines
    >>> task = baselines.create_task('synthetic', baselines.ClientSpec(20, 10))
    >>> process = fx.learning.algorithms.build_weighted_fed_avg(
    ...     task.model_fn(), fx.learning.optimizers.build_sgdm(0.01))
    >>> state = process.initialize()
    >>> state, metrics = process.next(state, task.datasets.sample_train_clients(10, random_seed=0))
  """

  datasets: BaselineTaskDatasets
  model_fn: Callable[[], FunctionalModel]

  def __post_init__(self):
    if not isinstance(self.datasets, BaselineTaskDatasets):
      raise TypeError(f"BaselineTask(datasets=...) expects a BaselineTaskDatasets, got a "
                      f"{type(self.datasets).__name__}.")
    if not callable(self.model_fn):
      raise TypeError(f"BaselineTask(model_fn=...) expects a zero-argument function returning "
                      f"a FunctionalModel, got {self.model_fn!r}.")
    model = self.model_fn()
    if not isinstance(model, FunctionalModel):
      raise TypeError(f"BaselineTask(model_fn=...) must return a "
                      f"fx.learning.models.FunctionalModel, returned a {type(model).__name__}.")
    model_type = to_type(model.input_spec)
    data_type = to_type(self.datasets.element_type_structure)
    if not _accepts(model_type, data_type):
      raise ValueError(format_message(
          "BaselineTask", "the model's input_spec does not accept the task's preprocessed "
          "batches (datasets.element_type_structure).", expected=f"input_spec {model_type}",
          actual=f"batches {data_type}", differences=_differences(model_type, data_type),
          hint="build the model with input_spec=datasets.element_type_structure.",
          location=user_location()))
