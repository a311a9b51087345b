"""What every aggregation factory must do, whatever it computes (the conformance suite).

`check(factory, value_type, rounds_of_values, weights=None)` runs a created process for several
rounds on a fresh vectorized runtime and asserts:
  - `create` returns an `AggregationProcess` (weighted exactly when a weight type was given);
  - `next` compiles once: rounds after the first trace no new program;
  - the state keeps its structure, shapes and dtypes across rounds, matching the state type;
  - the result has the value type's structure, shapes and dtypes.
It returns the per-round outputs (from the vectorized runtime), for the caller's numerical checks.

Factories register a case in `tests/aggregators/test_conformance.py`.
"""

from __future__ import annotations

import jax
import numpy as np

import federax as fx


def _signature(tree) -> list:
  """(path, shape, dtype) of every leaf: what must not change from round to round."""
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  return [(jax.tree_util.keystr(p), np.shape(x), np.asarray(x).dtype) for p, x in leaves]


def _type_signature(type_spec: fx.Type) -> list:
  """Shapes and dtypes of a type's tensors, in order."""
  out = []

  def visit(ts):
    if isinstance(ts, fx.FederatedType):
      visit(ts.member)
    elif isinstance(ts, fx.TensorType):
      out.append((tuple(ts.shape), np.dtype(ts.dtype)))
    else:
      for element in ts:
        visit(element)

  visit(type_spec)
  return out


def check(factory: fx.aggregators.AggregationFactory, value_type, rounds_of_values: list,
          weights: list | None = None) -> list:
  """Runs the conformance checks (module docstring); returns each round's output."""
  value_type = fx.to_type(value_type)
  weight_type = None if weights is None else fx.TensorType(np.float32)
  process = (factory.create(value_type) if weights is None
             else factory.create(value_type, weight_type))
  assert isinstance(process, fx.templates.AggregationProcess)
  assert process.is_weighted == (weights is not None)
  runtime = fx.runtime.vectorized()
  outputs, state_signatures = [], []
  with runtime:
    state = process.initialize()
    state_signatures.append(_signature(state))
    traced_after_first = None
    for index, values in enumerate(rounds_of_values):
      args = (state, values) if weights is None else (state, values, weights[index])
      output = process.next(*args)
      if traced_after_first is None:
        traced_after_first = runtime.programs_traced
      outputs.append(output)
      state = output.state
      state_signatures.append(_signature(state))
  assert runtime.programs_traced == traced_after_first, (
      f"{type(factory).__name__}: next traced {runtime.programs_traced - traced_after_first} "
      "more program(s) after its first round")
  assert all(s == state_signatures[0] for s in state_signatures), (
      f"{type(factory).__name__}: the state changed structure, shape or dtype across rounds:\n"
      + "\n".join(map(str, state_signatures)))
  shapes = [(shape, dtype) for _, shape, dtype in state_signatures[0]]
  assert shapes == _type_signature(process.state_type), (shapes, process.state_type)
  result = [(shape, dtype) for _, shape, dtype in _signature(outputs[-1].result)]
  assert result == _type_signature(process.next.type_signature.result[1]), result
  return outputs
