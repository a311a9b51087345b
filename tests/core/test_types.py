"""Types print as TFF prints them and follow TFF's assignability rules."""

import collections
import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx


class Point(NamedTuple):
  x: np.ndarray
  y: np.ndarray


@dataclasses.dataclass
class Batch:
  pixels: np.ndarray
  label: np.ndarray


@pytest.mark.parametrize("type_spec, expected", [
    (fx.TensorType(np.float32), "float32"),
    (fx.TensorType(np.int32, [None, 1]), "int32[?,1]"),
    (fx.TensorType(np.float32, [3, 5]), "float32[3,5]"),
    (fx.TensorType(str), "str"),
    (fx.StructType([("a", np.float32), ("b", np.float32)]), "<a=float32,b=float32>"),
    (fx.StructType([np.float32, np.int32]), "<float32,int32>"),
    (fx.StructType([]), "<>"),
    (fx.SequenceType(np.float32), "float32*"),
    (fx.SequenceType(fx.StructType([("x", np.float32)])), "<x=float32>*"),
    (fx.FederatedType(np.float32, fx.CLIENTS), "{float32}@CLIENTS"),
    (fx.FederatedType(np.float32, fx.SERVER), "float32@SERVER"),
    (fx.FederatedType(np.float32, fx.CLIENTS, all_equal=True), "float32@CLIENTS"),
    (fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS), "{float32*}@CLIENTS"),
    (fx.FunctionType(np.float32, np.float32), "(float32 -> float32)"),
    (fx.FunctionType(None, fx.FederatedType(np.float32, fx.SERVER)), "( -> float32@SERVER)"),
])
def test_compact_representation_matches_tff(type_spec, expected):
  assert str(type_spec) == expected
  assert type_spec.compact_representation() == expected


def test_formatted_representation_indents_structs_two_spaces():
  model = fx.StructType([("weights", (np.float32, [784, 10])), ("bias", (np.float32, [10]))])
  batch = fx.StructType([("x", (np.float32, [None, 784])), ("y", (np.int32, [None]))])
  fn = fx.FunctionType(
      fx.StructType([("model", fx.FederatedType(model, fx.SERVER)),
                     ("data", fx.FederatedType(fx.SequenceType(batch), fx.CLIENTS))]),
      fx.FederatedType(np.float32, fx.SERVER))
  assert fn.formatted_representation() == "\n".join([
      "(<",
      "  model=<",
      "    weights=float32[784,10],",
      "    bias=float32[10]",
      "  >@SERVER,",
      "  data={<",
      "    x=float32[?,784],",
      "    y=int32[?]",
      "  >*}@CLIENTS",
      "> -> float32@SERVER)",
  ])


def test_federated_type_defaults_all_equal_by_placement():
  assert fx.FederatedType(np.float32, fx.SERVER).all_equal
  assert not fx.FederatedType(np.float32, fx.CLIENTS).all_equal


@pytest.mark.parametrize("target, source, assignable", [
    (fx.TensorType(np.int32, [None]), fx.TensorType(np.int32, [3]), True),
    (fx.TensorType(np.int32, [3]), fx.TensorType(np.int32, [None]), False),
    (fx.TensorType(np.int32, None), fx.TensorType(np.int32, [2, 2]), True),
    (fx.TensorType(np.int32), fx.TensorType(np.float32), False),
    (fx.StructType([np.int32]), fx.StructType([("a", np.int32)]), True),
    (fx.StructType([("a", np.int32)]), fx.StructType([("b", np.int32)]), False),
    (fx.StructType([("a", np.int32)]), fx.StructType([np.int32, np.int32]), False),
    (fx.FederatedType(np.int32, fx.CLIENTS), fx.FederatedType(np.int32, fx.CLIENTS, True), True),
    (fx.FederatedType(np.int32, fx.CLIENTS, True), fx.FederatedType(np.int32, fx.CLIENTS), False),
    (fx.FederatedType(np.int32, fx.CLIENTS), fx.FederatedType(np.int32, fx.SERVER), False),
    (fx.SequenceType((np.int32, [None])), fx.SequenceType((np.int32, [4])), True),
    (fx.FunctionType((np.int32, [3]), (np.int32, [None])),
     fx.FunctionType((np.int32, [None]), (np.int32, [3])), True),
    (fx.FunctionType((np.int32, [None]), np.int32),
     fx.FunctionType((np.int32, [3]), np.int32), False),
])
def test_assignability_follows_tff(target, source, assignable):
  assert target.is_assignable_from(source) is assignable


def test_types_are_immutable_hashable_and_compare_by_value():
  a = fx.TensorType(np.float32, [2])
  assert a == fx.TensorType("float32", (2,)) and hash(a) == hash(fx.TensorType(np.float32, [2]))
  with pytest.raises(AttributeError, match="immutable"):
    a.dtype = np.int32
  assert {fx.StructType([("a", np.int32)]): 1}[fx.StructType([("a", np.int32)])] == 1


def test_struct_type_element_access():
  s = fx.StructType([("a", np.float32), ("b", (np.int32, [2]))])
  assert s.a == fx.TensorType(np.float32) and s["b"] == s[1] == fx.TensorType(np.int32, [2])
  assert s.names() == ("a", "b") and len(s) == 2
  with pytest.raises(AttributeError, match="no element named 'c'"):
    _ = s.c


def test_to_type_conversions():
  assert str(fx.to_type(np.int32)) == "int32"
  assert str(fx.to_type(jnp.bfloat16)) == "bfloat16"
  assert str(fx.to_type((np.int32, [None, 1]))) == "int32[?,1]"
  assert str(fx.to_type(jax.ShapeDtypeStruct((2, 3), jnp.float32))) == "float32[2,3]"
  assert str(fx.to_type({"x": (np.float32, [784]), "y": np.int32})) == "<x=float32[784],y=int32>"
  point = fx.to_type(Point(np.float32, np.float32))
  assert str(point) == "<x=float32,y=float32>" and point.container_type is Point
  assert fx.to_type([np.int32, np.int32]).container_type is list
  with pytest.raises(TypeError, match="Cannot convert"):
    fx.to_type(object())


def test_type_of_python_numpy_jax_and_containers():
  assert str(fx.type_of(1)) == "int32"
  assert str(fx.type_of(2**40)) == "int64"
  assert str(fx.type_of(1.0)) == "float32"
  assert str(fx.type_of(True)) == "bool"
  assert str(fx.type_of("hello")) == "str"
  assert str(fx.type_of(np.zeros([2, 3], np.int32))) == "int32[2,3]"
  assert str(fx.type_of(jnp.ones(4))) == "float32[4]"
  assert str(fx.type_of({"a": 1.0, "b": [1, 2]})) == "<a=float32,b=<int32,int32>>"
  batch = fx.type_of(Batch(np.zeros([2, 784], np.float32), np.zeros([2], np.int32)))
  assert str(batch) == "<pixels=float32[2,784],label=int32[2]>" and batch.container_type is Batch
  od = fx.type_of(collections.OrderedDict(b=1, a=2.0))
  assert str(od) == "<b=int32,a=float32>"  # Insertion order, as TFF keeps it.


def test_struct_value_container():
  s = fx.Struct([("a", 1), (None, 2)])
  assert s.a == 1 and s[1] == 2 and list(s) == [1, 2] and s["a"] == 1
  leaves, tree = jax.tree_util.tree_flatten(s)
  assert leaves == [1, 2] and jax.tree_util.tree_unflatten(tree, [3, 4]).a == 3
  with pytest.raises(AttributeError, match="no element named 'z'"):
    _ = s.z


def test_mapping_order_is_aligned_to_the_expected_type():
  import collections as c
  expected = fx.to_type({"mask": np.bool_, "x": np.float32})
  actual = fx.to_type(c.OrderedDict(x=np.float32, mask=np.bool_))
  assert not expected.is_assignable_from(actual)
  from federax.core.types import aligned_like
  assert expected.is_assignable_from(aligned_like(expected, actual))
  unnamed = fx.to_type((np.bool_, np.float32))
  assert aligned_like(expected, unnamed) == unnamed  # Tuples keep their positions.
