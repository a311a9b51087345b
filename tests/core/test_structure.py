"""`fx.structure`: TFF's `tff.structure` names, `update_struct` on every named container."""

import collections
import dataclasses
import re
from typing import NamedTuple

import numpy as np
import pytest

import federax as fx


class State(NamedTuple):
  weights: int
  round: int


@dataclasses.dataclass(frozen=True)
class Config:
  rate: float
  steps: int


def test_update_struct_replaces_named_fields_of_each_container():
  assert fx.structure.update_struct(State(1, 2), round=3) == State(1, 3)
  assert fx.structure.update_struct({"a": 1, "b": 2}, b=5) == {"a": 1, "b": 5}
  ordered = fx.structure.update_struct(collections.OrderedDict(b=1, a=2), b=7)
  assert type(ordered) is collections.OrderedDict and list(ordered.items()) == [("b", 7), ("a", 2)]
  assert fx.structure.update_struct(Config(0.1, 5), steps=6) == Config(0.1, 6)
  struct = fx.structure.update_struct(fx.structure.Struct([("a", 1), ("b", 2)]), a=0)
  assert struct == fx.Struct([("a", 0), ("b", 2)])


def test_update_struct_leaves_the_original_alone_and_replaces_whole_substructures():
  original = {"model": {"w": 1}, "round": 0}
  updated = fx.structure.update_struct(original, model={"w": 2, "b": 0})
  assert original == {"model": {"w": 1}, "round": 0}
  assert updated == {"model": {"w": 2, "b": 0}, "round": 0}


def test_update_struct_on_a_learning_state_as_tff_tutorials_do():
  # TFF's tutorials replace the model in a learning state this way.
  state = fx.learning.templates.LearningAlgorithmState(
      global_model_weights=1, distributor=(), client_work=(), aggregator=(), finalizer=())
  assert fx.structure.update_struct(state, global_model_weights=2).global_model_weights == 2


def test_update_struct_on_an_attrs_class():
  # attrs is not a dependency; its classes are recognized by what attrs gives every class it
  # makes: `__attrs_attrs__`, one attribute (with a `.name`) per field, in order.
  class A:
    __attrs_attrs__ = (collections.namedtuple("Attribute", "name")("x"),
                       collections.namedtuple("Attribute", "name")("y"))

    def __init__(self, x, y):
      self.x, self.y = x, y

  updated = fx.structure.update_struct(A(1, 2), y=3)
  assert type(updated) is A and (updated.x, updated.y) == (1, 3)


@pytest.mark.parametrize("structure, field, message", [
    (State(1, 2), "rounds",
     "update_struct: State has no field named 'rounds'.\n"
     "  expected: one of ['weights', 'round']\n"
     "  actual:   'rounds'"),
    ({"a": 1}, "b",
     "update_struct: dict has no field named 'b'.\n"
     "  expected: one of ['a']\n"
     "  actual:   'b'"),
    (fx.Struct([("a", 1), (None, 2)]), "c",
     "update_struct: Struct has no field named 'c'.\n"
     "  expected: one of ['a']\n"
     "  actual:   'c'"),
])
def test_update_struct_names_the_missing_field(structure, field, message):
  with pytest.raises(KeyError) as info:
    fx.structure.update_struct(structure, **{field: 0})
  assert info.value.args[0].startswith(message + "\n  at ")


def test_update_struct_refuses_unnamed_structures():
  with pytest.raises(TypeError) as info:
    fx.structure.update_struct((1, 2), a=3)
  assert re.fullmatch(re.escape(
      "update_struct: the structure must have named fields.\n"
      "  expected: a dict, namedtuple, dataclass, attrs class or fx.Struct\n"
      "  actual:   a tuple\n") + r"  at .*", str(info.value))


def test_struct_is_the_core_struct():
  assert fx.structure.Struct is fx.Struct
  assert np.asarray(fx.structure.Struct.named(a=1).a) == 1
