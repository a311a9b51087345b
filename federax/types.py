"""TFF's `tff.types`: the type classes and the helpers that TFF code calls by this path.

    >>> str(fx.types.at_clients(np.float32))
    '{float32}@CLIENTS'
    >>> str(fx.types.at_server(fx.to_type((np.int32, [2]))))
    'int32[2]@SERVER'
    >>> str(fx.types.tensorflow_to_type({'x': (np.float32, [None, 784])}))
    '<x=float32[?,784]>'
"""

from __future__ import annotations

from typing import Any

from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type
from federax.core.types import FederatedType as FederatedType
from federax.core.types import FunctionType as FunctionType
from federax.core.types import SequenceType as SequenceType
from federax.core.types import StructType as StructType
from federax.core.types import TensorType as TensorType
from federax.core.types import Type as Type


def at_clients(type_spec: Any, all_equal: bool = False) -> FederatedType:
  """`type_spec` placed at CLIENTS (`{T}@CLIENTS`, or `T@CLIENTS` when `all_equal`)."""
  return FederatedType(to_type(type_spec), CLIENTS, all_equal=all_equal)


def at_server(type_spec: Any) -> FederatedType:
  """`type_spec` placed at SERVER (`T@SERVER`)."""
  return FederatedType(to_type(type_spec), SERVER)


def tensorflow_to_type(spec: Any) -> Type:
  """TFF's converter from a `tf.TensorSpec` / `element_spec` structure to a type.

  federax datasets already give federated types as `element_spec`, so this is `fx.to_type`,
  kept under TFF's name so `tff.types.tensorflow_to_type(ds.element_spec)` ports by renaming.
  """
  return to_type(spec)


__all__ = ["at_clients", "at_server", "tensorflow_to_type", "to_type", "FederatedType",
           "FunctionType", "SequenceType", "StructType", "TensorType", "Type"]
