"""Stateful processes built from the templates."""

import numpy as np
import pytest

import federax as fx

COUNTS = fx.FederatedType(np.int32, fx.SERVER)
CLIENT_VALUES = fx.FederatedType(np.float32, fx.CLIENTS)


@fx.federated_computation
def initialize():
  return fx.federated_value(np.int32(0), fx.SERVER)


@fx.computation(np.int32)
def increment(count):
  return count + 1


@fx.computation(np.int32, np.float32)
def measure(rounds, total):
  return {"rounds": rounds, "mean_so_far": total / rounds.astype(np.float32)}


@fx.federated_computation(COUNTS, CLIENT_VALUES)
def next_fn(state, values):
  new_state = fx.federated_map(increment, state)
  total = fx.federated_sum(values)
  measurements = fx.federated_map(measure, (new_state, total))
  return fx.templates.MeasuredProcessOutput(state=new_state, result=total,
                                            measurements=measurements)


def test_measured_process_counts_rounds_and_reports_growing_measurements():
  process = fx.templates.MeasuredProcess(initialize, next_fn)
  assert str(process.next.type_signature) == (
      "(<state=int32@SERVER,values={float32}@CLIENTS> -> "
      "<state=int32@SERVER,result=float32@SERVER,"
      "measurements=<mean_so_far=float32,rounds=int32>@SERVER>)")
  state = process.initialize()
  assert state == 0
  seen = []
  for round_num in range(1, 4):
    output = process.next(state, [1.0, 2.0, float(round_num)])
    assert isinstance(output, fx.templates.MeasuredProcessOutput)
    state = output.state
    assert state == round_num
    assert output.result == pytest.approx(3.0 + round_num)
    seen.append(output.measurements["rounds"])
  assert seen == [1, 2, 3]


def test_iterative_process_accepts_state_or_state_first_results():
  @fx.federated_computation(COUNTS)
  def just_count(state):
    return fx.federated_map(increment, state)

  process = fx.templates.IterativeProcess(initialize, just_count)
  state = process.initialize()
  for _ in range(3):
    state = process.next(state)
  assert state == 3
  assert process.state_type == COUNTS


def test_template_errors_name_what_disagrees():
  @fx.federated_computation(fx.FederatedType(np.float32, fx.SERVER))
  def wants_float(state):
    return state

  with pytest.raises(fx.FederatedTypeError, match="next_fn's first parameter must accept the "
                     "state initialize_fn returns") as info:
    fx.templates.IterativeProcess(initialize, wants_float)
  assert "expected: int32@SERVER" in str(info.value)

  @fx.federated_computation(COUNTS)
  def not_measured(state):
    return state

  with pytest.raises(fx.FederatedTypeError, match=r"next_fn must return MeasuredProcessOutput"):
    fx.templates.MeasuredProcess(initialize, not_measured)

  with pytest.raises(TypeError, match="initialize_fn must be an fx computation"):
    fx.templates.IterativeProcess(lambda: 0, not_measured)
