"""DifferentiallyPrivateFactory.tree_aggregation (DP-FTRL): the clipped sum without noise, the
released noise's covariance against a NumPy re-computation of the tree (over a seed axis),
restarts as tensorflow_privacy's, the keys, both runtimes, the accounting event, TFF's types,
misuse."""

import collections
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.aggregators import quantile_estimation as qe
from federax.aggregators.differential_privacy import _NormalizedTreeQuery

DPF = fx.aggregators.DifferentiallyPrivateFactory
STRUCT = fx.to_type(collections.OrderedDict(a=(np.float32, [3]), b=(np.float32, [2, 2])))


def np_tree_released(rounds, efficient, tree_sizes=None):
  """The noise each round releases, as coefficients over independent unit draws:
  `[rounds, draws]`, rebuilt from the whole tree (not the streaming buffer).

  Node `(d, i)` covers leaves `[i 2^d, (i+1) 2^d)` and has its own draw; in the efficient tree
  its value is its draw plus half its children's values. The cumulative noise after `t + 1`
  leaves is the sum of the nodes of `t + 1`'s binary decomposition (weighted `1 / (2 - 2^-d)`
  in the efficient tree); a round releases the change. Each of `tree_sizes` is its own tree.
  Checked once against tensorflow_privacy 0.9's aggregators (2e5 draws, covariance within
  0.013).
  """
  tree_sizes = tree_sizes or [rounds]
  assert sum(tree_sizes) == rounds
  rows, offset = [], 0
  for size in tree_sizes:
    levels = size.bit_length()
    index = {}
    for d in range(levels):
      for i in range(size >> d):
        index[(d, i)] = offset + len(index)
    total = offset + len(index)

    def value(d, i, total=total, index=index):
      v = np.zeros(total)
      v[index[(d, i)]] = 1.0
      if efficient and d > 0:
        v += 0.5 * (value(d - 1, 2 * i) + value(d - 1, 2 * i + 1))
      return v

    previous = np.zeros(total)
    for t in range(size):
      leaves, start, cumulative = t + 1, 0, np.zeros(total)
      for d in reversed(range(levels)):
        if leaves >> d & 1:
          weight = 1.0 / (2.0 - 0.5**d) if efficient else 1.0
          cumulative += weight * value(d, start >> d)
          start += 1 << d
      rows.append(cumulative - previous)
      previous = cumulative
    offset = total
  return np.stack([np.pad(r, (0, offset - r.size)) for r in rows])


def np_clipped_sum(values, clip):
  total = collections.OrderedDict(a=np.zeros(3), b=np.zeros((2, 2)))
  for v in values:
    a, b = np.asarray(v["a"], np.float64), np.asarray(v["b"], np.float64)
    scale = min(1.0, clip / math.sqrt(np.sum(a * a) + np.sum(b * b)))
    total["a"] += a * scale
    total["b"] += b * scale
  return total


def struct_values(rng, n):
  scales = [0.1, 0.5, 3.0, 1e3]
  return [collections.OrderedDict(a=(rng.normal(size=3) * scales[i % 4]).astype(np.float32),
                                  b=(rng.normal(size=(2, 2)) * scales[i % 4]).astype(np.float32))
          for i in range(n)]


# --- Without noise: the clipped sum over clients_per_round ---------------------------------------


def test_zero_noise_is_the_clipped_sum_over_clients_per_round(runtime):
  rng = np.random.default_rng(0)
  process = DPF.tree_aggregation(0.0, 8, 1.5, noise_seed=1, restart_frequency=2).create(STRUCT)
  state = process.initialize()
  for _ in range(3):  # across a restart
    values = struct_values(rng, 5)  # 5 clients, the denominator stays 8
    output = process.next(state, values)
    state = output.state
    expected = np_clipped_sum(values, 1.5)
    np.testing.assert_allclose(output.result["a"], expected["a"] / 8, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(output.result["b"], expected["b"] / 8, rtol=1e-5, atol=1e-7)
    assert float(output.measurements["dp_query_metrics"]["tree_agg_dpftrl_clip"]) == 1.5


# --- The noise: the tree's covariance, over a seed axis ------------------------------------------


def released_noise(factory, rounds, seeds, dim, key_path):
  """`[rounds, seeds * dim]`: the noise `rounds` rounds release on zero values, one run per
  seed, vectorized (`jax.vmap` over the state's noise key, `lax.scan` over rounds)."""
  process = factory.create(fx.TensorType(np.float32, [dim]))
  zeros = [np.zeros(dim, np.float32)]
  with fx.runtime.vectorized():
    initial = process.initialize()

    def run(key):
      state = jax.tree_util.tree_map(jnp.asarray, initial)
      generator = state["query_state"]["numerator_state"]
      for name in key_path:
        generator = generator[name]
      generator["noise_key"] = key

      def one_round(state, _):
        output = process.next(state, zeros)
        return output.state, output.result

      return jax.lax.scan(one_round, state, None, length=rounds)[1]

    keys = jax.random.split(jax.random.PRNGKey(7), seeds)
    noise = np.asarray(jax.jit(jax.vmap(run))(keys), np.float64)  # [seeds, rounds, dim]
  return noise.transpose(1, 0, 2).reshape(rounds, -1)


TREE_KEY = ["tree_state", "value_generator_state"]


@pytest.mark.parametrize("efficient, restart, tree_sizes", [
    (True, {}, [8]),
    (False, {}, [8]),
    # tfp's PeriodicRoundRestartIndicator(4, warmup=2): restarts after rounds 2, 6 and 10.
    (True, dict(restart_frequency=4, restart_warmup=2), [2, 4, 4, 1]),
], ids=["efficient", "plain", "efficient-restarts"])
def test_released_noise_has_the_trees_covariance(efficient, restart, tree_sizes):
  z, clip, n = 1.3, 0.7, 2.0
  rounds = sum(tree_sizes)
  factory = DPF.tree_aggregation(z, n, clip, noise_seed=0, use_efficient=efficient, **restart)
  path = (["inner_query_state"] if restart else []) + TREE_KEY
  noise = released_noise(factory, rounds, 10_000, 10, path)  # 10^5 draws a round
  sigma = z * clip / n
  coefficients = np_tree_released(rounds, efficient, tree_sizes)
  expected = sigma**2 * coefficients @ coefficients.T
  np.testing.assert_allclose(np.cov(noise), expected, atol=0.03 * sigma**2)
  np.testing.assert_allclose(np.mean(noise, axis=1), 0.0, atol=5 * 2 * sigma / math.sqrt(1e5))
  # The point of the tree: summed over T rounds the noise has the variance of the nodes over
  # T (a few), not T rounds' worth.
  cumulative = np.var(np.cumsum(noise, axis=0), axis=1)
  expected_cumulative = sigma**2 * np.sum(np.cumsum(coefficients, axis=0)**2, axis=1)
  np.testing.assert_allclose(cumulative, expected_cumulative, rtol=0.03)
  if not restart:
    t = np.arange(1, rounds + 1)
    bits = [[d for d in range(4) if T >> d & 1] for T in t]
    closed_form = [sum(1 / (2 - 0.5**d) if efficient else 1.0 for d in b) for b in bits]
    np.testing.assert_allclose(expected_cumulative / sigma**2, closed_form, rtol=1e-12)
    assert cumulative[-1] < 0.3 * rounds * sigma**2  # 8 rounds: one node, not 8 draws


def test_a_round_starting_a_tree_releases_its_leaf_from_the_keys():
  """Round `r`'s key is the `r`-th split of `fold_in(PRNGKey(seed), crc32(
  'TreeResidualSumQuery'))`; a tree's first round releases its leaf, draw 0 of the round:
  `normal(fold_in(fold_in(round_key, 0), tensor))`. A restart continues the key stream."""
  z, clip, seed = 2.0, 0.5, 9
  process = DPF.tree_aggregation(z, 1, clip, noise_seed=seed,
                                 restart_frequency=2).create(fx.TensorType(np.float32, [4]))
  state, results = process.initialize(), []
  for _ in range(5):
    output = process.next(state, [np.zeros(4, np.float32)])
    state, results = output.state, results + [output.result]
  key = qe.seeded_key(seed, "TreeResidualSumQuery")
  for r in range(5):
    key, round_key = jax.random.split(key)
    if r % 2 == 0:  # trees of rounds (0, 1), (2, 3), (4)
      leaf = jax.random.normal(jax.random.fold_in(jax.random.fold_in(round_key, 0), 0), (4,))
      np.testing.assert_array_equal(results[r], np.asarray(leaf) * np.float32(z * clip))
  assert not np.array_equal(results[0], results[2])


def test_restart_empties_the_tree_as_tfp():
  process = DPF.tree_aggregation(1.0, 1, 1.0, noise_seed=0, restart_frequency=3,
                                 restart_warmup=1).create(fx.TensorType(np.float32, [2]))
  state, steps, previous, counts = process.initialize(), [], [], []
  for _ in range(6):
    state = process.next(state, [np.zeros(2, np.float32)]).state
    numerator = state["query_state"]["numerator_state"]
    steps.append(int(numerator["inner_query_state"]["tree_state"]["step"]))
    previous.append(np.any(numerator["inner_query_state"]["previous_tree_noise"] != 0))
    counts.append(int(numerator["indicator_state"]))
  # Restarts after rounds 1 and 4 (count % 3 == 1): the tree empty, no previous noise.
  assert steps == [0, 1, 2, 0, 1, 2]
  assert previous == [False, True, True, False, True, True]
  assert counts == [1, 2, 3, 4, 5, 6]
  levels = state["query_state"]["numerator_state"]["inner_query_state"]["tree_state"][
      "level_buffer"]
  assert levels.shape == (2, 2)  # bit_length(3) levels: the longest tree holds 3 rounds


def test_a_full_tree_restarts():
  query = DPF.tree_aggregation(1.0, 1, 1.0, noise_seed=0)._query
  assert query.depth == 16
  small = DPF(_NormalizedTreeQuery(1.0, 1.0, 1.0, query.noise_key, True, None, 0, 2, None))
  process = small.create(fx.TensorType(np.float32, [2]))
  state, steps = process.initialize(), []
  for _ in range(7):
    state = process.next(state, [np.zeros(2, np.float32)]).state
    steps.append(int(state["query_state"]["numerator_state"]["tree_state"]["step"]))
  assert steps == [1, 2, 0, 1, 2, 0, 1]  # 2 levels hold 3 rounds
  dp_accounting = pytest.importorskip("dp_accounting")
  assert small.dp_event(rounds=7) == dp_accounting.ComposedDpEvent(
      [dp_accounting.SingleEpochTreeAggregationDpEvent(1.0, s) for s in (3, 3, 1)])


def test_the_same_seed_gives_bit_identical_noise_on_both_runtimes():
  # Zero values: the results are the released noise alone (see test_differential_privacy).
  zeros = collections.OrderedDict(a=np.zeros(3, np.float32), b=np.zeros((2, 2), np.float32))
  outputs = {}
  for name in ("vectorized", "sequential"):
    with getattr(fx.runtime, name)():
      process = DPF.tree_aggregation(1.0, 3, 2.0, noise_seed=4,
                                     restart_frequency=3).create(STRUCT)
      state, results = process.initialize(), []
      for _ in range(5):
        output = process.next(state, [zeros] * 3)
        state, results = output.state, results + [output.result]
      outputs[name] = (results, state)
  for rv, rs in zip(outputs["vectorized"][0], outputs["sequential"][0]):
    for key in ("a", "b"):
      np.testing.assert_array_equal(rv[key], rs[key])
      assert np.all(rv[key] != 0)
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(
      np.array_equal, outputs["vectorized"][1], outputs["sequential"][1]))


@pytest.mark.parametrize("make", [
    lambda: DPF.gaussian_fixed(1.0, 4, 1.0, seed=3),
    lambda: DPF.tree_aggregation(1.0, 4, 1.0, noise_seed=3),
], ids=["fixed", "tree"])
def test_a_round_without_clients_releases_the_noise_alone(runtime, make):
  value_type = fx.TensorType(np.float32, [3])
  process = make().create(value_type)
  empty = process.next(process.initialize(), []).result
  zeros = make().create(value_type)
  expected = zeros.next(zeros.initialize(), [np.zeros(3, np.float32)] * 2).result
  np.testing.assert_array_equal(empty, expected)
  assert np.all(np.isfinite(empty)) and np.all(empty != 0)


# --- Accounting ----------------------------------------------------------------------------------


def test_dp_event_is_dp_accountings_tree_event():
  dp_accounting = pytest.importorskip("dp_accounting")
  z = 1.1
  event = DPF.tree_aggregation(z, 100, 1.0).dp_event(rounds=100)
  assert event == dp_accounting.SingleEpochTreeAggregationDpEvent(z, 100)
  restarted = DPF.tree_aggregation(z, 100, 1.0, restart_frequency=40, restart_warmup=10)
  sizes = [10, 40, 40, 10]  # restarts after rounds 10, 50, 90
  assert restarted.dp_event(rounds=100) == dp_accounting.ComposedDpEvent(
      [dp_accounting.SingleEpochTreeAggregationDpEvent(z, s) for s in sizes])
  # Independently: a tree of T rounds is a Gaussian mechanism of sensitivity sqrt(depth),
  # depth = floor(log2 T) + 1, and restarted trees compose (tfp's compute_rdp_tree_restart).
  for events, depth in ((event, 7), (restarted.dp_event(rounds=100), 2 * 4 + 2 * 6)):
    accountant = dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
    gaussian = dp_accounting.rdp.RdpAccountant()
    accountant.compose(events)
    gaussian.compose(dp_accounting.GaussianDpEvent(z / math.sqrt(depth)))
    assert accountant.get_epsilon(1e-5) == pytest.approx(gaussian.get_epsilon(1e-5), rel=1e-9)


def test_gaussian_dp_event_of_several_rounds_is_self_composed():
  dp_accounting = pytest.importorskip("dp_accounting")
  assert DPF.gaussian_fixed(1.2, 50, 0.5).dp_event(rounds=30) == (
      dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(1.2), 30))
  assert DPF.gaussian_fixed(1.2, 50, 0.5).dp_event() == dp_accounting.GaussianDpEvent(1.2)


# --- Types as TFF prints them --------------------------------------------------------------------

# TFF 0.87 (tensorflow_federated, record_specs tf.TensorSpec([2]), values float32[2]).
_TFF_STATE = ("<query_state=<numerator_state=<tree_state=<level_buffer=float32[?,2],"
              "level_buffer_idx=int32[?],value_generator_state=<seeds=int64[2],stddev=float32>>,"
              "clip_value=float32,previous_tree_noise=float32[2]>,denominator=float32>,"
              "agg_state=<>,dp_event=<module_name=str,class_name=str>,is_init_state=bool>")
TFF_TREE = (f"(<state={_TFF_STATE}@SERVER,value={{float32[2]}}@CLIENTS> -> <state={_TFF_STATE}"
            "@SERVER,result=float32[2]@SERVER,measurements=<dp_query_metrics=<"
            "tree_agg_dpftrl_clip=float32>,dp=<>>@SERVER>)")


def test_types_print_as_tff_with_a_fixed_depth_tree_and_a_key():
  """federax's departures: the tree's levels fixed (16, a compiled program's shapes) with the
  leaf count `step` for tfp's `level_buffer_idx` list, a key for tfp's seeds, no `dp_event`
  (strings cannot be in a JAX program; `dp_event(rounds)` gives it)."""
  process = DPF.tree_aggregation(1.0, 4.0, 1.0, (np.float32, [2])).create(
      fx.TensorType(np.float32, [2]))
  expected = (TFF_TREE.replace("level_buffer=float32[?,2],level_buffer_idx=int32[?]",
                               "level_buffer=float32[16,2],step=int32")
              .replace("seeds=int64[2]", "noise_key=uint32[2]")
              .replace(",dp_event=<module_name=str,class_name=str>", ""))
  assert str(process.next.type_signature) == expected


def test_record_specs_that_match_the_values_are_accepted():
  value_type = fx.TensorType(np.float32, [2])
  expected = DPF.tree_aggregation(0.0, 1, 1.0).create(value_type).next.type_signature
  for specs in (value_type, (np.float32, [2]), jax.ShapeDtypeStruct((2,), jnp.float32)):
    process = DPF.tree_aggregation(0.0, 1, 1.0, specs).create(value_type)
    assert process.next.type_signature == expected


# --- Misuse --------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, exception, words", [
    (lambda: DPF.tree_aggregation(-1.0, 10, 1.0), ValueError, ["noise_multiplier", ">= 0"]),
    (lambda: DPF.tree_aggregation(1.0, 0, 1.0), ValueError, ["clients_per_round", "> 0"]),
    (lambda: DPF.tree_aggregation(1.0, 10, 0.0), ValueError, ["l2_norm_clip must be", "> 0"]),
    (lambda: DPF.tree_aggregation(1.0, 10, 1.0, "float32[2]"), TypeError,
     ["record_specs must describe"]),
    (lambda: DPF.tree_aggregation(1.0, 10, 1.0, (np.float32, [3])).create(
        fx.TensorType(np.float32, [2])), ValueError,
     ["shapes of record_specs", "[(3,)]", "[(2,)]", "record_specs=None"]),
    (lambda: DPF.tree_aggregation(1.0, 10, 1.0, use_efficient="yes"), TypeError,
     ["use_efficient must be a bool"]),
    (lambda: DPF.tree_aggregation(1.0, 10, 1.0, noise_seed=0.5), TypeError,
     ["seed must be an int"]),
    (lambda: DPF.tree_aggregation(1.0, 10, 1.0, restart_warmup=3), ValueError,
     ["restart_warmup needs restart_frequency"]),
    (lambda: DPF.tree_aggregation(1.0, 10, 1.0, restart_frequency=0), ValueError,
     ["restart_frequency is out of range", ">= 1"]),
    (lambda: DPF.tree_aggregation(1.0, 10, 1.0, restart_frequency=4, restart_warmup=4),
     ValueError, ["restart_warmup is out of range", "[1, 3]"]),
    (lambda: DPF.tree_aggregation(1.0, 10, 1.0).create(fx.TensorType(np.float32),
                                                       fx.TensorType(np.float32)),
     TypeError, ["weighted", "sensitivity", "TFF forbids"]),
    (lambda: DPF.tree_aggregation(1.0, 10, 1.0).create(fx.TensorType(np.int32, [2])),
     TypeError, ["floating point"]),
    (lambda: DPF.tree_aggregation(1.0, 10, 1.0).dp_event(), ValueError,
     ["no per-round event", "dp_event(rounds=T)"]),
    (lambda: DPF.tree_aggregation(1.0, 10, 1.0).dp_event(rounds=0), ValueError,
     ["rounds is out of range"]),
])
def test_misuse_is_a_clear_error(make, exception, words):
  with pytest.raises(exception) as info:
    make()
  for word in words:
    assert word in str(info.value), (word, str(info.value))
  assert re.search(r"at .*test_tree_aggregation\.py:\d+", str(info.value))
