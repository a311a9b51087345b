"""The Federated Core tutorials' scenarios, with their published numbers, on both runtimes."""

import numpy as np
import pytest

import federax as fx

def test_federated_float_on_clients_prints_as_tff():
  federated_float_on_clients = fx.FederatedType(np.float32, fx.CLIENTS)
  assert str(federated_float_on_clients) == "{float32}@CLIENTS"
  assert str(federated_float_on_clients.member) == "float32"
  assert str(federated_float_on_clients.placement) == "CLIENTS"
  assert not federated_float_on_clients.all_equal


@fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
def get_average_temperature(sensor_readings):
  return fx.federated_mean(sensor_readings)


def test_get_average_temperature(runtime):
  assert str(get_average_temperature.type_signature) == "({float32}@CLIENTS -> float32@SERVER)"
  assert get_average_temperature([68.5, 70.3, 69.8]) == pytest.approx(69.53333, abs=2e-5)


@fx.computation(np.float32)
def add_half(x):
  return x + 0.5


@fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
def add_half_on_clients(x):
  return fx.federated_map(add_half, x)


def test_add_half_on_clients(runtime):
  assert str(add_half.type_signature) == "(float32 -> float32)"
  assert str(add_half_on_clients.type_signature) == "({float32}@CLIENTS -> {float32}@CLIENTS)"
  assert add_half_on_clients([1.0, 3.0, 2.0]) == [1.5, 3.5, 2.5]


@fx.computation(np.float32, np.float32)
def add(a, b):
  return a + b


@fx.federated_computation(fx.SequenceType(np.float32))
def sequence_total(values):
  return fx.sequence_reduce(values, 0.0, add)


def test_sequence_reduce_sum(runtime):
  assert str(add.type_signature) == "(<a=float32,b=float32> -> float32)"
  assert str(sequence_total.type_signature) == "(float32* -> float32)"
  assert sequence_total([1.0, 2.0, 3.0]) == 6.0


@fx.computation
def _divide(sum_and_count):
  total, count = sum_and_count
  return total / count.astype(np.float32)


@fx.federated_computation(fx.SequenceType(np.float32))
def get_local_temperature_average(local_temperatures):
  sum_and_count = fx.sequence_reduce(local_temperatures, (0.0, 0),
                                     lambda acc, x: (acc[0] + x, acc[1] + 1))
  return _divide(sum_and_count)


@fx.federated_computation(fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS))
def get_global_temperature_average(sensor_readings):
  return fx.federated_mean(fx.federated_map(get_local_temperature_average, sensor_readings))


def test_get_global_temperature_average(runtime):
  assert str(get_global_temperature_average.type_signature) == (
      "({float32*}@CLIENTS -> float32@SERVER)")
  assert get_global_temperature_average([[68, 70], [71], [68, 72, 70]]) == pytest.approx(70.0)


def test_federated_select_sends_each_client_its_keys(runtime):
  @fx.computation
  def row(table_and_key):
    table, key = table_and_key
    return table[key]

  @fx.federated_computation(fx.FederatedType((np.int32, [2]), fx.CLIENTS),
                            fx.FederatedType((np.float32, [5, 3]), fx.SERVER))
  def select_rows(keys, table):
    return fx.federated_select(keys, 5, table, row)

  assert str(select_rows.type_signature) == (
      "(<keys={int32[2]}@CLIENTS,table=float32[5,3]@SERVER> -> {float32[3]*}@CLIENTS)")
  table = np.arange(15, dtype=np.float32).reshape(5, 3)
  keys = [[0, 4], [2, 2], [1, 3]]
  result = select_rows(keys, table)
  assert len(result) == 3
  for client_keys, client_rows in zip(keys, result):
    np.testing.assert_array_equal(np.stack(client_rows), table[client_keys])


def test_hello_world_and_constants(runtime):
  @fx.federated_computation
  def hello():
    return fx.federated_value(np.int32(7), fx.SERVER)

  assert str(hello.type_signature) == "( -> int32@SERVER)"
  assert hello() == 7
