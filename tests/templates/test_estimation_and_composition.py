"""EstimationProcess (report, map) and chaining/concatenating measured processes."""

import numpy as np
import pytest

import federax as fx

F32_AT_SERVER = fx.FederatedType(np.float32, fx.SERVER)


def _counter():
  """State: a float at the server; next adds the clients' sum; report halves it."""
  initialize = fx.federated_computation(lambda: fx.federated_value(np.float32(1.0), fx.SERVER))
  add = fx.computation(np.float32, np.float32)(lambda a, b: a + b)

  @fx.federated_computation(F32_AT_SERVER, fx.FederatedType(np.float32, fx.CLIENTS))
  def next_fn(state, values):
    return fx.federated_map(add, (state, fx.federated_sum(values)))

  half = fx.computation(np.float32)(lambda x: x / 2)
  report = fx.federated_computation(lambda s: fx.federated_map(half, s), F32_AT_SERVER)
  return fx.templates.EstimationProcess(initialize, next_fn, report)


def test_estimation_process_reports_from_state_over_rounds():
  process = _counter()
  state = process.initialize()
  for values in ([1.0, 2.0], [3.0], [0.5, 0.5, 1.0]):
    state = process.next(state, values)
  assert float(state) == 1.0 + 3.0 + 3.0 + 2.0
  assert float(process.report(state)) == pytest.approx(4.5)


def test_map_composes_with_report_and_keeps_next():
  process = _counter()
  scale = fx.computation(np.float32)(lambda x: 10 * x)
  mapped = process.map(fx.federated_computation(lambda e: fx.federated_map(scale, e),
                                                F32_AT_SERVER))
  assert mapped.next is process.next and mapped.initialize is process.initialize
  assert float(mapped.report(mapped.next(mapped.initialize(), [1.0]))) == pytest.approx(10.0)


def test_report_that_rejects_the_state_is_a_clear_error():
  process = _counter()
  wrong = fx.federated_computation(lambda s: s, fx.FederatedType(np.int32, fx.SERVER))
  with pytest.raises(fx.FederatedTypeError, match="report_fn must take the state"):
    fx.templates.EstimationProcess(process.initialize, process.next, wrong)
  with pytest.raises(fx.FederatedTypeError, match="map_fn must take the estimate"):
    process.map(wrong)


def _scaler(factor):
  """A measured process at clients->clients: multiplies each value; counts rounds."""
  initialize = fx.federated_computation(lambda: fx.federated_value(np.int32(0), fx.SERVER))
  scale = fx.computation(np.float32)(lambda x: x * factor)
  inc = fx.computation(np.int32)(lambda c: c + 1)

  @fx.federated_computation(fx.FederatedType(np.int32, fx.SERVER),
                            fx.FederatedType(np.float32, fx.CLIENTS))
  def next_fn(state, values):
    return fx.templates.MeasuredProcessOutput(
        fx.federated_map(inc, state), fx.federated_map(scale, values),
        fx.federated_map(scale, fx.federated_sum(values)))

  return fx.templates.MeasuredProcess(initialize, next_fn)


def test_chain_feeds_each_result_to_the_next_and_names_state_and_measurements():
  total = fx.aggregators.SumFactory().create(fx.TensorType(np.float32))
  chained = fx.templates.chain_measured_processes({"scale": _scaler(3.0), "sum": total})
  state = chained.initialize()
  for _ in range(2):
    out = chained.next(state, [1.0, 2.0])
    state = out.state
  assert float(out.result) == pytest.approx(9.0)
  assert int(state["scale"]) == 2 and state["sum"] == ()
  assert float(out.measurements["scale"]) == pytest.approx(9.0)


def test_chain_rejects_a_process_that_cannot_take_the_previous_result():
  total = fx.aggregators.SumFactory().create(fx.TensorType(np.float32))
  with pytest.raises(fx.FederatedTypeError, match="'scale' must accept the result of 'sum'"):
    fx.templates.chain_measured_processes({"sum": total, "scale": _scaler(2.0)})


def test_concatenate_runs_side_by_side():
  both = fx.templates.concatenate_measured_processes({"a": _scaler(2.0), "b": _scaler(-1.0)})
  out = both.next(both.initialize(), {"a": [1.0, 2.0], "b": [5.0, 1.0]})
  np.testing.assert_allclose(out.result["a"], [2.0, 4.0])
  np.testing.assert_allclose(out.result["b"], [-5.0, -1.0])
  assert float(out.measurements["a"]) == 6.0 and float(out.measurements["b"]) == -6.0
  assert int(out.state["a"]) == 1


def test_composition_rejects_non_processes():
  with pytest.raises(TypeError, match="must be a MeasuredProcess"):
    fx.templates.chain_measured_processes({"x": 3})
  with pytest.raises(TypeError, match="non-empty mapping"):
    fx.templates.concatenate_measured_processes({})
