"""A client loop with the CPU rewrites reads each client's rows inside its sequence loops
(`_cpu_rewrites.ClientRows`): the same values as `lax.map` over the sliced clients, without a
copy of each client's data as a loop operand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from federax.runtime.vectorized import execution

rng = np.random.default_rng(5)
N, L, D = 4, 6, 3
DATA = jnp.asarray(rng.normal(size=(N, L, D)).astype(np.float32))
LENGTHS = jnp.asarray([6, 2, 0, 5], jnp.int32)
WEIGHTS = jnp.asarray(rng.normal(size=(N,)).astype(np.float32))


def loop_over_rows(args):  # A sequence loop (`fori_loop` over the client's real batches).
  x, n, w = args
  return lax.fori_loop(0, n, lambda j, acc: acc * 0.5 + w * jnp.sin(x[j]), jnp.zeros(D))


def rows_outside_and_inside(args):  # The data read outside the loop too, and in a nested jit.
  x, n, w = args
  inner = jax.jit(lambda x, n: lax.fori_loop(0, n, lambda j, acc: acc + x[j] ** 2, x[0]))
  return inner(x, n) + jnp.sum(x, axis=0) * w


def nested_loops(args):  # A loop inside a loop's body, both reading the rows.
  x, n, w = args

  def outer(j, acc):
    return lax.fori_loop(0, j + 1, lambda k, a: a + x[k] * x[j], acc)

  return lax.fori_loop(0, n, outer, jnp.zeros(D)) * w


def rows_as_the_carry(args):  # The rows are the loop's initial state (read before it).
  x, n, w = args
  return lax.fori_loop(0, n, lambda j, acc: acc * w + 1.0, x)


def branch_on_rows(args):
  x, n, w = args
  return lax.cond(n > 3, lambda: jnp.max(x, axis=0), lambda: jnp.min(x, axis=0) * w)


def rows_returned(args):  # An argument returned as it is, beside a loop that reads it.
  x, n, w = args
  return x, lax.fori_loop(0, n, lambda j, acc: x[j], jnp.zeros(D))


FUNCTIONS = [loop_over_rows, rows_outside_and_inside, nested_loops, rows_as_the_carry,
             branch_on_rows, rows_returned]


def rewritten(fn, payload):
  one = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), payload)
  traced = jax.make_jaxpr(fn, return_shape=True)(one)
  return execution._each_client_rewritten(traced, payload)  # pylint: disable=protected-access


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_rows_read_in_place_give_what_lax_map_over_the_slices_gives(fn):
  payload = (DATA, LENGTHS, WEIGHTS)
  clients = [fn(jax.tree_util.tree_map(lambda x, i=i: x[i], payload)) for i in range(N)]
  want = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *clients)
  for got in (jax.jit(lambda p: rewritten(fn, p))(payload),
              jax.jit(lambda p: jax.lax.map(fn, p))(payload)):
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), got, want)


def _while_operand_shapes(jaxpr) -> list:
  shapes = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "while":
      shapes += [tuple(v.aval.shape) for v in eqn.invars]
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      shapes += _while_operand_shapes(sub)
  return shapes


def test_a_sequence_loop_takes_the_cohort_array_not_a_copy_of_the_client_rows():
  payload = (DATA, LENGTHS, WEIGHTS)
  jaxpr = jax.make_jaxpr(lambda p: rewritten(loop_over_rows, p))(payload).jaxpr
  inner = _while_operand_shapes(jaxpr)
  assert (N, L, D) in inner and (L, D) not in inner, inner
  # `lax.map` over the sliced clients gives the loop each client's copy.
  sliced = _while_operand_shapes(jax.make_jaxpr(lambda p: jax.lax.map(loop_over_rows, p))(
      payload).jaxpr)
  assert (L, D) in sliced
