"""Helpers the compression aggregators share: a typed value's tensors in order, seeded PRNG
keys kept in a state, and the argument checks their constructors and `create`s make."""

from __future__ import annotations

import math
import numbers
import zlib
from typing import Any, Optional

import jax
import numpy as np

from federax.core import types as t
from federax.core.computations import computation
from federax.core.errors import error
from federax.core.intrinsics import KEY_TYPE
from federax.core.type_conversions import elements_of, make_container
from federax.aggregators.factory import (AggregationFactory, UnweightedAggregationFactory,
                                         WeightedAggregationFactory)

# --- A typed value's tensors ---------------------------------------------------------------------


def tensor_types(value_type: t.Type) -> list[t.TensorType]:
  """The tensor types of `value_type`, depth first in the type's order."""
  if isinstance(value_type, t.TensorType):
    return [value_type]
  return [leaf for element in value_type for leaf in tensor_types(element)]


def flatten(value: Any, value_type: t.Type) -> list:
  """The tensors of a local value of `value_type` (a user's container), in the type's order.

  Read by the type, not by `jax.tree_util`, whose order of a dict's keys is sorted.
  """
  if isinstance(value_type, t.TensorType):
    return [value]
  return [leaf for element_type, element in zip(value_type, elements_of(value, value_type))
          for leaf in flatten(element, element_type)]


def unflatten(leaves: list, value_type: t.Type) -> Any:
  """The inverse of `flatten`: the tensors put back in `value_type`'s containers."""
  leaves = list(leaves)

  def build(ts: t.Type) -> Any:
    if isinstance(ts, t.TensorType):
      return leaves.pop(0)
    return make_container(tuple(build(element) for element in ts), ts)

  return build(value_type)


def num_elements(tensor_type: t.TensorType) -> int:
  return math.prod(tensor_type.shape)


def check_tensors(operator: str, value_type: t.Type, *, kinds: str, what: str,
                  hint: Optional[str] = None) -> list[t.TensorType]:
  """The tensor types of a tensor or (nested) struct of fully shaped tensors of `kinds`.

  Raises:
    TypeError: if `value_type` holds anything else (sequences, federated types, other dtypes,
      unknown dimensions), or no tensor at all.
  """
  def structure_of_tensors(ts: t.Type) -> bool:
    if isinstance(ts, t.TensorType):
      return ts.shape is not None and all(d is not None for d in ts.shape)
    return isinstance(ts, t.StructType) and all(structure_of_tensors(e) for e in ts)

  if not structure_of_tensors(value_type) or not tensor_types(value_type):
    raise error(TypeError, operator, "the value must be a tensor or a structure of tensors "
                "with known shapes.", expected="a TensorType or a StructType of TensorTypes",
                actual=f"value_type {value_type}")
  if not t.has_dtype_kind(value_type, kinds):
    raise error(TypeError, operator, f"the values must be {what}.", expected=f"{what} tensors",
                actual=f"value_type {value_type}", hint=hint)
  return tensor_types(value_type)


# --- Seeded keys ---------------------------------------------------------------------------------


def initial_key(seed: int, factory: str) -> np.ndarray:
  """The first state key of a `factory`'s process: `fold_in(PRNGKey(seed), crc32(factory))`.

  Folding in the factory's name gives each kind of factory its own stream, so composed
  factories built with one seed (e.g. a rotation around a stochastic rounding) do not draw
  correlated numbers.
  """
  salt = zlib.crc32(factory.encode()) & 0x7FFFFFFF
  with jax.ensure_compile_time_eval():  # A constant even when built while a program is traced.
    return np.asarray(jax.random.fold_in(jax.random.PRNGKey(seed), salt), np.uint32)


@computation(KEY_TYPE)
def split_round_key(key):
  """`uint32[2] -> <next state key, this round's key>` (both raw keys)."""
  next_key, round_key = jax.random.split(key)
  return next_key, round_key


def check_seed(operator: str, seed: Any) -> int:
  if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
    raise error(TypeError, operator, "seed must be an int.", actual=repr(seed))
  if not -2**31 <= int(seed) < 2**31:
    raise error(ValueError, operator, "seed must fit in 32 bits.",
                expected="an int in [-2**31, 2**31)", actual=int(seed))
  return int(seed)


# --- Argument checks -----------------------------------------------------------------------------


def check_unweighted_inner(operator: str, name: str, inner: Any) -> AggregationFactory:
  """`inner` if it is a factory that makes unweighted processes; else a TypeError."""
  if not isinstance(inner, AggregationFactory):
    raise error(TypeError, operator, f"{name} must be an aggregation factory.",
                actual=repr(inner), hint="e.g. fx.aggregators.SumFactory()")
  if (isinstance(inner, WeightedAggregationFactory)
      and not isinstance(inner, UnweightedAggregationFactory)):
    raise error(TypeError, operator, f"{name} must be an unweighted aggregation factory.",
                expected="a factory whose create(value_type) takes no weight type",
                actual=f"{type(inner).__name__} (a WeightedAggregationFactory)",
                hint="e.g. fx.aggregators.SumFactory() or fx.aggregators.UnweightedMeanFactory()")
  return inner


def check_int(operator: str, name: str, value: Any, low: int, high: Optional[int] = None) -> int:
  """`value` as an int in [low, high] (no upper bound when `high` is None); bools refused."""
  expected = f"an int in [{low}, {high}]" if high is not None else f"an int >= {low}"
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise error(TypeError, operator, f"{name} must be an int.", expected=expected,
                actual=repr(value))
  if int(value) < low or (high is not None and int(value) > high):
    raise error(ValueError, operator, f"{name} is out of range.", expected=expected,
                actual=int(value))
  return int(value)


def check_positive_number(operator: str, name: str, value: Any) -> float:
  """`value` as a finite float > 0; bools refused."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise error(TypeError, operator, f"{name} must be a number.",
                expected="a positive finite number", actual=repr(value))
  if not (math.isfinite(float(value)) and float(value) > 0):
    raise error(ValueError, operator, f"{name} must be positive and finite.",
                expected="a positive finite number", actual=float(value))
  return float(value)
