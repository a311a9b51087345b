"""Tests that `fx.data.Dataset` is the core's `StackableDataset` and keeps its former homes."""

import numpy as np

import federax as fx
from federax.core import datasets as core_datasets
from federax.core.datasets import StackableDataset
from federax.core.types import TensorType


def test_dataset_satisfies_the_runtime_protocol():
  ds = fx.data.Dataset.from_tensor_slices({'x': np.arange(6.0, dtype=np.float32)})
  assert isinstance(ds, StackableDataset)
  assert isinstance(ds.repeat().filter(lambda e: e['x'] > 1).masked_batch(4), StackableDataset)


def test_protocol_hooks_behave_as_documented():
  ds = fx.data.Dataset.from_tensor_slices({'x': np.arange(6.0, dtype=np.float32)}).masked_batch(4)
  assert ds.element_spec == {'x': TensorType(np.float32, (4,)), 'mask': TensorType(np.bool_, (4,))}
  assert ds.cardinality() == 2
  stacked = ds.to_stacked()
  assert stacked['x'].shape == (2, 4) and stacked['mask'].tolist() == [[True] * 4, [True, True,
                                                                                    False, False]]
  assert stacked['x'].flags.writeable  # Fresh per call: a runtime must not keep it.
  cached = ds.cache()
  assert cached.to_stacked()['x'] is cached.to_stacked()['x']
  assert not cached.to_stacked()['x'].flags.writeable  # Shared: a runtime may keep it.
  assert ds.repeat().cardinality() == core_datasets.INFINITE_CARDINALITY == -1
  assert ds.filter(lambda e: True).cardinality() == core_datasets.UNKNOWN_CARDINALITY == -2


def test_objects_without_the_hooks_are_not_stackable():
  assert not isinstance([{'x': np.zeros(2)}], StackableDataset)
  assert not isinstance(np.zeros((3, 2)), StackableDataset)


def test_dataset_is_importable_from_its_former_homes():
  from federax.simulation import dataset as former  # pylint: disable=g-import-not-at-top
  assert fx.simulation.Dataset is fx.data.Dataset is former.Dataset
  assert fx.simulation.RaggedElementsError is fx.data.RaggedElementsError
  assert (fx.simulation.INFINITE_CARDINALITY, fx.simulation.UNKNOWN_CARDINALITY) == (
      fx.data.INFINITE_CARDINALITY, fx.data.UNKNOWN_CARDINALITY) == (-1, -2)
  assert "data" in fx.__all__ and set(fx.data.__all__) == set(former.__all__)
