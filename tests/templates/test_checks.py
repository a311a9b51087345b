"""The placement check shared by the aggregators' and the learning templates' processes."""

import re

import numpy as np
import pytest

import federax as fx
from federax.templates._checks import placed_at


@pytest.mark.parametrize("type_spec, placement, expected, actual", [
    (fx.FederatedType(np.float32, fx.SERVER), fx.CLIENTS, "{T}@CLIENTS", "float32@SERVER"),
    (fx.FederatedType(np.float32, fx.CLIENTS), fx.SERVER, "T@SERVER", "{float32}@CLIENTS"),
    (fx.TensorType(np.int32), fx.SERVER, "T@SERVER", "int32"),
])
def test_placed_at_names_the_process_the_part_and_both_placements(type_spec, placement, expected,
                                                                  actual):
  with pytest.raises(fx.FederatedTypeError) as info:
    placed_at("SomeProcess", "the state", type_spec, placement)
  assert re.fullmatch(
      re.escape(f"SomeProcess: the state must be placed at {placement}.\n"
                f"  expected: {expected}\n"
                f"  actual:   {actual}\n"
                f"  at {__file__}:") + r"\d+: " + re.escape(
                    "placed_at(\"SomeProcess\", \"the state\", type_spec, placement)"),
      str(info.value))


def test_placed_at_accepts_the_right_placement():
  placed_at("SomeProcess", "the state", fx.FederatedType(np.float32, fx.SERVER), fx.SERVER)
