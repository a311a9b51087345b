"""Local computations: results come back in the user's containers, on both runtimes."""

import collections
import dataclasses
from typing import NamedTuple

import numpy as np
import pytest

import federax as fx


@dataclasses.dataclass
class Scaled:
  value: np.ndarray
  double: np.ndarray


class Pair(NamedTuple):
  low: np.ndarray
  high: np.ndarray


@pytest.mark.parametrize("make", [fx.runtime.vectorized, fx.runtime.sequential])
def test_results_keep_dataclass_namedtuple_and_ordered_dict_containers(make):
  @fx.computation(np.float32)
  def scaled(x):
    return Scaled(value=x, double=x * 2)

  @fx.computation(np.float32)
  def pair(x):
    return Pair(x - 1, x + 1)

  @fx.computation(np.float32)
  def ordered(x):
    return collections.OrderedDict(z=x, a=x * 3)

  assert str(scaled.type_signature) == "(float32 -> <value=float32,double=float32>)"
  assert str(ordered.type_signature) == "(float32 -> <z=float32,a=float32>)"
  with make():
    result = scaled(2.0)
    assert isinstance(result, Scaled) and (result.value, result.double) == (2.0, 4.0)
    assert pair(2.0) == Pair(1.0, 3.0) and isinstance(pair(2.0), Pair)
    assert list(ordered(1.0).items()) == [("z", 1.0), ("a", 3.0)]


def test_unknown_dimensions_that_follow_the_input_stay_unknown():
  @fx.computation((np.float32, [None, 3]))
  def column_sums_and_rows(x):
    return x.sum(axis=0), x * 2

  assert str(column_sums_and_rows.type_signature) == (
      "(float32[?,3] -> <float32[3],float32[?,3]>)")
