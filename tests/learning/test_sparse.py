"""`fx.learning.sparse`: select delivers exactly the named rows, the sparse sum and a sparse
round equal NumPy's dense computation restricted to the selected rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx

N, D, M = 50, 3, 4  # table rows, row width, keys per client
TABLE = fx.TensorType(np.float32, [N, D])
KEYS = fx.TensorType(np.int32, [M])


@fx.federated_computation(fx.FederatedType(KEYS, fx.CLIENTS), fx.FederatedType(TABLE, fx.SERVER))
def deliver(keys, table):
  return fx.learning.sparse.select_rows(keys, table)


@fx.federated_computation(fx.FederatedType(KEYS, fx.CLIENTS), fx.FederatedType(TABLE, fx.SERVER))
def deliver_in_chunks(keys, table):
  return fx.learning.sparse.select_rows(keys, table, chunk_size=3)  # chunks of 3 and 1 keys


@pytest.mark.parametrize("select", [deliver, deliver_in_chunks])
def test_a_client_receives_exactly_its_rows(runtime, select):
  table = np.arange(N * D, dtype=np.float32).reshape(N, D)
  keys = [np.array([3, 1, 3, 49], np.int32), np.array([0, 7, 8, 9], np.int32)]
  rows = select(keys, table)
  assert select.type_signature.result.member == fx.TensorType(np.float32, [M, D])
  for k, r in zip(keys, rows):
    np.testing.assert_array_equal(r, table[k])  # These rows, in key order, and no others.


@pytest.mark.parametrize("mode", ["stack", "aggregate"])
def test_sparse_sum_matches_numpy(runtime, mode):
  @fx.federated_computation(fx.FederatedType(KEYS, fx.CLIENTS),
                            fx.FederatedType(fx.TensorType(np.float32, [M, D]), fx.CLIENTS))
  def total(keys, rows):
    return fx.learning.sparse.sparse_sum(keys, rows, N, mode=mode)

  rng = np.random.default_rng(1)
  keys = [rng.integers(0, N, M).astype(np.int32) for _ in range(3)]
  keys[0][:2] = 5  # a key listed twice by one client adds twice
  rows = [rng.normal(size=(M, D)).astype(np.float32) for _ in range(3)]
  expected = np.zeros((N, D))
  for k, r in zip(keys, rows):
    np.add.at(expected, k, r)
  np.testing.assert_allclose(total(keys, rows), expected, rtol=1e-5, atol=1e-6)


def _bag_model(num_rows, m, lr):
  """A client holds one bag of tokens and a target; prediction = sum of the tokens' rows."""
  data_type = fx.to_type((fx.TensorType(np.int32, [6]), fx.TensorType(np.float32, [D])))

  @fx.computation(data_type)
  def keys_fn(data):
    tokens, _ = data
    keys = jnp.unique(tokens, size=m, fill_value=0).astype(jnp.int32)  # padded with key 0
    num_keys = jnp.sum(jnp.unique(tokens, size=6, fill_value=-1) >= 0).astype(jnp.int32)
    return keys, num_keys

  @fx.computation(fx.TensorType(np.float32, [m, D]), data_type, fx.TensorType(np.int32, [m]),
                  np.int32)
  def update(rows, data, keys, num_keys):
    tokens, target = data
    # A token's first position in keys: a real key 0 comes first, before any padding 0.
    local = jnp.argmax(keys[None, :] == tokens[:, None], axis=1)
    loss = lambda r: 0.5 * jnp.sum((r[local].sum(0) - target) ** 2)
    return -lr * jax.grad(loss)(rows)

  return data_type, keys_fn, update


def _dense_reference(table, clients, lr, server_lr):
  """NumPy FedAvg with the whole table on every client (one SGD step each)."""
  total = np.zeros_like(table, np.float64)
  for tokens, target in clients:
    residual = table[tokens].sum(0) - target
    grad = np.zeros_like(table, np.float64)
    np.add.at(grad, tokens, residual)
    total += -lr * grad
  return table + server_lr * total / len(clients)


@pytest.mark.parametrize("mode", ["stack", "aggregate"])
def test_round_equals_dense_fedavg_on_the_selected_rows(runtime, mode):
  data_type, keys_fn, update = _bag_model(N, 6, lr=0.1)
  round_fn = fx.learning.sparse.build_sparse_round(TABLE, data_type, keys_fn, update,
                                                   server_learning_rate=0.7, mode=mode)
  rng = np.random.default_rng(2)
  table = rng.normal(size=(N, D)).astype(np.float32)
  clients = [(np.array([3, 3, 9, 12, 40, 9], np.int32), rng.normal(size=D).astype(np.float32)),
             (np.array([0, 9, 1, 1, 1, 1], np.int32), rng.normal(size=D).astype(np.float32)),
             (np.array([44, 45, 46, 47, 48, 49], np.int32), rng.normal(size=D).astype(np.float32))]
  new, metrics = round_fn(table, clients)
  expected = _dense_reference(table.astype(np.float64), clients, 0.1, 0.7)
  np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-5)
  touched = sorted({int(k) for tokens, _ in clients for k in tokens})
  untouched = np.setdiff1d(np.arange(N), touched)
  np.testing.assert_array_equal(new[untouched], table[untouched])
  assert int(metrics["num_updated_rows"]) == len(touched)
  assert float(metrics["num_clients"]) == 3


def test_keys_out_of_range_raise(runtime):
  table = np.zeros((N, D), np.float32)
  # The vectorized runtime checks inside the compiled program: its ValueError arrives wrapped.
  with pytest.raises(Exception, match=r"federated_select: client.*\[50\].*outside \[0, 49\]"):
    deliver([np.array([0, 1, 2, N], np.int32)], table)
  with pytest.raises(Exception, match=r"federated_select: client.*\[-1\].*outside"):
    deliver([np.array([0, -1, 2, 3], np.int32)], table)


def test_a_model_larger_than_the_client_budget_trains():
  budget = 64 * 1024  # bytes a client may hold of the model
  num_rows, m = 200_000, 8
  table_type = fx.TensorType(np.float32, [num_rows, D])
  assert num_rows * D * 4 > 10 * budget  # the dense model is far beyond the budget
  data_type, keys_fn, update = _bag_model(num_rows, m, lr=0.2)
  round_fn = fx.learning.sparse.build_sparse_round(table_type, data_type, keys_fn, update)

  @fx.federated_computation(fx.FederatedType(fx.TensorType(np.int32, [m]), fx.CLIENTS),
                            fx.FederatedType(table_type, fx.SERVER))
  def client_view(keys, table):
    return fx.learning.sparse.select_rows(keys, table)

  received = client_view.type_signature.result.member
  assert int(np.prod(received.shape)) * 4 <= budget  # what a client downloads
  rng = np.random.default_rng(3)
  clients = [(rng.integers(0, num_rows, 6).astype(np.int32), np.ones(D, np.float32))
             for _ in range(4)]
  loss = lambda tbl: sum(np.sum((tbl[tok].sum(0) - y) ** 2) for tok, y in clients)
  table = np.zeros((num_rows, D), np.float32)
  first = loss(table)
  for _ in range(3):
    table, _ = round_fn(table, clients)
  assert loss(np.asarray(table)) < 0.5 * first


def test_misuse_is_named():
  with pytest.raises(TypeError, match="int32 keys"):
    @fx.federated_computation(fx.FederatedType(fx.TensorType(np.int64, [M]), fx.CLIENTS),
                              fx.FederatedType(TABLE, fx.SERVER))
    def bad_keys(keys, table):
      return fx.learning.sparse.select_rows(keys, table)
  with pytest.raises(TypeError, match="table must be a tensor at the server"):
    @fx.federated_computation(fx.FederatedType(KEYS, fx.CLIENTS),
                              fx.FederatedType(TABLE, fx.CLIENTS))
    def bad_table(keys, table):
      return fx.learning.sparse.select_rows(keys, table)
  with pytest.raises(ValueError, match="unknown mode"):
    @fx.federated_computation(fx.FederatedType(KEYS, fx.CLIENTS),
                              fx.FederatedType(fx.TensorType(np.float32, [M, D]), fx.CLIENTS))
    def bad_mode(keys, rows):
      return fx.learning.sparse.sparse_sum(keys, rows, N, mode="dense")
  with pytest.raises(TypeError, match="one row per key"):
    @fx.federated_computation(fx.FederatedType(KEYS, fx.CLIENTS),
                              fx.FederatedType(fx.TensorType(np.float32, [M + 1, D]), fx.CLIENTS))
    def bad_rows(keys, rows):
      return fx.learning.sparse.sparse_sum(keys, rows, N)
