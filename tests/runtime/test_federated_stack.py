"""`fx.federated_stack`: its type, and vectorized == sequential == `np.stack` of the clients."""

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx

STRUCT = fx.to_type(collections.OrderedDict(w=(np.float32, [3, 2]), b=(np.int32, [2]),
                                            s=np.float32))
AT_CLIENTS = fx.FederatedType(STRUCT, fx.CLIENTS)


def client_structs(n, seed=0):
  rng = np.random.default_rng(seed)
  return [collections.OrderedDict(w=rng.normal(size=(3, 2)).astype(np.float32),
                                  b=rng.integers(-50, 50, size=2).astype(np.int32),
                                  s=np.float32(rng.normal())) for _ in range(n)]


def stacked_by_numpy(values):
  return {k: np.stack([np.asarray(v[k]) for v in values]) for k in ("w", "b", "s")}


def run_everywhere(comp, *args):
  """On the vectorized runtime (plain, chunked by 2, and with clients run one after another)
  and on the sequential one."""
  results = []
  for runtime in (fx.runtime.vectorized(), fx.runtime.vectorized(chunk_size=2),
                  fx.runtime.vectorized(client_loop="map"), fx.runtime.sequential()):
    with runtime:
      results.append(comp(*args))
  return results


def assert_equal_to(results, expected):
  for result in results:
    for key, value in expected.items():
      np.testing.assert_array_equal(result[key], value)
      assert result[key].dtype == value.dtype and result[key].shape == value.shape


def test_every_tensor_gains_an_unknown_client_axis_in_the_type():
  @fx.federated_computation(fx.FederatedType(fx.TensorType(np.float32, [3]), fx.CLIENTS))
  def vector(values):
    return fx.federated_stack(values)

  @fx.federated_computation(AT_CLIENTS)
  def struct(values):
    return fx.federated_stack(values)

  @fx.federated_computation(fx.FederatedType(fx.TensorType(np.float32, None), fx.CLIENTS))
  def unknown_rank(values):
    return fx.federated_stack(values)

  assert str(vector.type_signature) == "({float32[3]}@CLIENTS -> float32[?,3]@SERVER)"
  assert str(struct.type_signature) == (
      "({<w=float32[3,2],b=int32[2],s=float32>}@CLIENTS -> "
      "<w=float32[?,3,2],b=int32[?,2],s=float32[?]>@SERVER)")
  assert str(unknown_rank.type_signature) == "({float32[?...]}@CLIENTS -> float32[?...]@SERVER)"
  # The container comes back as the user's.
  assert struct.type_signature.result.member.container_type is collections.OrderedDict


@pytest.mark.parametrize("n", [1, 4, 7])  # 4 divides the test devices: that case runs sharded.
def test_runtimes_agree_with_numpy_stack(n):
  values = client_structs(n, seed=n)

  @fx.federated_computation(AT_CLIENTS)
  def stack(values):
    return fx.federated_stack(values)

  assert_equal_to(run_everywhere(stack, values), stacked_by_numpy(values))


def test_mapped_and_all_equal_client_values_stack_their_n_real_clients():
  # A federated_map result (chunked: 5 clients in 3 chunks of 2, one a repeated client) and a
  # broadcast value (stored once on the vectorized runtime) both come out with 5 rows.
  values = client_structs(5, seed=3)

  @fx.computation(STRUCT)
  def double(v):
    return jax.tree_util.tree_map(lambda x: 2 * x, v)

  @fx.federated_computation(AT_CLIENTS, fx.FederatedType(np.float32, fx.SERVER))
  def stack(values, scale):
    return (fx.federated_stack(fx.federated_map(double, values)),
            fx.federated_stack(fx.federated_broadcast(scale)))

  expected = {k: 2 * a for k, a in stacked_by_numpy(values).items()}
  for mapped, shared in run_everywhere(stack, values, 1.5):
    assert_equal_to([mapped], expected)
    np.testing.assert_array_equal(shared, np.full(5, 1.5, np.float32))


def test_a_server_computation_over_the_stack_runs_at_any_client_count():
  # The typing pass traces float32[?,2] with 5 and 7 rows; the call has 3 clients.
  @fx.computation(fx.TensorType(np.float32, [None, 2]))
  def spread(stacked):
    return jnp.max(stacked, axis=0) - jnp.min(stacked, axis=0), jnp.int32(stacked.shape[0])

  @fx.federated_computation(fx.FederatedType((np.float32, [2]), fx.CLIENTS))
  def server_spread(values):
    return fx.federated_map(spread, fx.federated_stack(values))

  assert str(server_spread.type_signature) == (
      "({float32[2]}@CLIENTS -> <float32[2],int32>@SERVER)")
  values = [[1.0, -1.0], [4.0, 2.0], [2.0, 7.0]]
  for result, count in run_everywhere(server_spread, values):
    np.testing.assert_array_equal(result, [3.0, 8.0])
    assert count == 3


def test_a_body_run_on_the_host_stacks_as_a_compiled_part():
  # A string constant sends the body to the host (HostExecution); the stack is compiled.
  @fx.federated_computation(fx.FederatedType((np.float32, [2]), fx.CLIENTS))
  def labelled(values):
    return fx.federated_value("clients", fx.SERVER), fx.federated_stack(values)

  values = [[1.0, 2.0], [3.0, 4.0]]
  for label, stacked in run_everywhere(labelled, values):
    assert label == b"clients"
    np.testing.assert_array_equal(stacked, np.asarray(values, np.float32))


def test_zero_clients_raise_naming_default_num_clients(runtime):
  @fx.federated_computation
  def stack_of_nothing():
    return fx.federated_stack(fx.federated_value(np.float32(1.0), fx.CLIENTS))

  with pytest.raises(ValueError, match=r"(?s)federated_stack: there are no clients to stack "
                                       r".*default_num_clients"):
    stack_of_nothing()


def test_all_equal_values_stack_default_num_clients_copies():
  @fx.federated_computation
  def stack_of_ones():
    return fx.federated_stack(fx.federated_value(np.float32(1.0), fx.CLIENTS))

  for runtime in (fx.runtime.vectorized(default_num_clients=3),
                  fx.runtime.sequential(default_num_clients=3)):
    with runtime:
      np.testing.assert_array_equal(stack_of_ones(), np.ones(3, np.float32))


@pytest.mark.parametrize("member, message", [
    (fx.FederatedType(np.float32, fx.SERVER),
     "federated_stack: argument `value` must be placed at CLIENTS."),
    (fx.FederatedType(np.str_, fx.CLIENTS),
     "federated_stack: the value must hold only numeric tensors."),
    (fx.FederatedType(fx.SequenceType(np.float32), fx.CLIENTS),
     "federated_stack: the value must hold only numeric tensors."),
])
def test_misuse_is_reported_at_definition(member, message):
  with pytest.raises(fx.FederatedTypeError, match=re.escape(message)):
    @fx.federated_computation(member)
    def stack(values):  # noqa: F841
      return fx.federated_stack(values)
