"""Federated Core: types, placements, computations and intrinsics."""

from federax.core.computations import Computation as Computation
from federax.core.computations import computation as computation
from federax.core.computations import federated_computation as federated_computation
from federax.core.errors import FederatedTypeError as FederatedTypeError
from federax.core.intrinsics import *  # noqa: F401,F403  (the intrinsics' __all__)
from federax.core.intrinsics import __all__ as _intrinsics
from federax.core.placements import CLIENTS as CLIENTS
from federax.core.placements import SERVER as SERVER
from federax.core.placements import Placement as Placement
from federax.core.sequences import Sequence as Sequence
from federax.core.structure import Struct as Struct
from federax.core.type_conversions import to_type as to_type
from federax.core.type_conversions import type_of as type_of
from federax.core.types import FederatedType as FederatedType
from federax.core.types import FunctionType as FunctionType
from federax.core.types import SequenceType as SequenceType
from federax.core.types import StructType as StructType
from federax.core.types import TensorType as TensorType
from federax.core.types import Type as Type
from federax.core.values import Value as Value

__all__ = [
    "Computation", "computation", "federated_computation", "FederatedTypeError", "CLIENTS",
    "SERVER", "Placement", "Sequence", "Struct", "to_type", "type_of", "FederatedType", "FunctionType",
    "SequenceType", "StructType", "TensorType", "Type", "Value", *_intrinsics,
]
