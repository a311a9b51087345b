"""DifferentiallyPrivateFactory and fx.learning.dp_aggregator: the clipped mean against NumPy, the
noise's scale and independence, its reproducibility across runtimes, the adaptive clip's
trajectory, the accountant's events, TFF's types, misuse."""

import collections
import math
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.aggregators import _gaussian
from federax.aggregators import quantile_estimation as qe

DPF = fx.aggregators.DifferentiallyPrivateFactory
PQEP = fx.aggregators.PrivateQuantileEstimationProcess
STRUCT = fx.to_type(collections.OrderedDict(a=(np.float32, [3]), b=(np.float32, [2, 2])))


def clients(rng, n, scales):
  """`n` struct values whose global norms vary by `scales` (one huge)."""
  out = []
  for i in range(n):
    s = scales[i % len(scales)]
    out.append(collections.OrderedDict(a=(rng.normal(size=3) * s).astype(np.float32),
                                       b=(rng.normal(size=(2, 2)) * s).astype(np.float32)))
  return out


def np_clipped_sum(values, clip):
  """sum_i v_i * min(1, clip / ||v_i||) in float64, with the global norm over a and b."""
  total = {"a": np.zeros(3), "b": np.zeros((2, 2))}
  for v in values:
    a, b = np.asarray(v["a"], np.float64), np.asarray(v["b"], np.float64)
    norm = math.sqrt(np.sum(a * a) + np.sum(b * b))
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    total["a"] += a * scale
    total["b"] += b * scale
  return total


def norms(values):
  return [math.sqrt(sum(float(np.sum(np.square(np.asarray(x, np.float64)))) for x in v.values()))
          for v in values]


# --- Zero noise: the clipped sum over a fixed denominator ----------------------------------------


def test_zero_noise_is_the_clipped_sum_over_clients_per_round(runtime):
  rng = np.random.default_rng(0)
  process = DPF.gaussian_fixed(0.0, clients_per_round=8, clip=1.5, seed=1).create(STRUCT)
  state = process.initialize()
  for r in range(3):
    # 5 clients, not 8: the denominator is the expected count, not the realized one.
    values = clients(rng, 5, [0.1, 0.5, 1.0, 1e4])
    output = process.next(state, values)
    state = output.state
    expected = np_clipped_sum(values, 1.5)
    np.testing.assert_allclose(output.result["a"], expected["a"] / 8, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(output.result["b"], expected["b"] / 8, rtol=1e-5, atol=1e-7)
    assert output.measurements == collections.OrderedDict(
        dp_query_metrics=collections.OrderedDict(), dp=())
    assert not bool(state["is_init_state"])
  assert bool(process.initialize()["is_init_state"])


def test_a_client_with_nan_makes_the_aggregate_nan():
  process = DPF.gaussian_fixed(0.0, 2, 1.0, seed=0).create(fx.TensorType(np.float32, [2]))
  output = process.next(process.initialize(), [[np.nan, 1.0], [0.3, 0.4]])
  assert np.all(np.isnan(output.result))


# --- The noise: scale, independence, reproducibility ---------------------------------------------


def test_noise_of_the_process_has_stddev_z_c_over_n_and_is_independent():
  z, c, n = 1.3, 0.7, 10.0
  half = 50_000  # 10^5 coordinates per round, in two tensors
  value_type = fx.to_type(collections.OrderedDict(a=(np.float32, [half]),
                                                  b=(np.float32, [half])))
  process = DPF.gaussian_fixed(z, n, c, seed=11).create(value_type)
  rng = np.random.default_rng(1)
  state, noises = process.initialize(), []
  for _ in range(3):
    values = [collections.OrderedDict(a=rng.normal(size=half).astype(np.float32) * 1e-3,
                                      b=rng.normal(size=half).astype(np.float32) * 1e-3)
              for _ in range(3)]
    output = process.next(state, values)
    state = output.state
    clean = np_clipped_sum_flat(values, c) / n
    noises.append(np.concatenate([output.result["a"], output.result["b"]]) - clean)
  sigma = z * c / n
  for noise in noises:
    assert abs(np.std(noise) / sigma - 1) < 0.01, np.std(noise) / sigma
    assert abs(np.mean(noise)) < 5 * sigma / math.sqrt(noise.size)
    # Across coordinates: the two tensors, and neighbours within one.
    assert abs(np.corrcoef(noise[:half], noise[half:])[0, 1]) < 0.02
    assert abs(np.corrcoef(noise[:-1], noise[1:])[0, 1]) < 0.02
  for i in range(len(noises) - 1):  # across rounds
    assert abs(np.corrcoef(noises[i], noises[i + 1])[0, 1]) < 0.02


def np_clipped_sum_flat(values, clip):
  total = 0.0
  for v in values:
    flat = np.concatenate([np.asarray(v["a"], np.float64), np.asarray(v["b"], np.float64)])
    total = total + flat * min(1.0, clip / np.linalg.norm(flat))
  return total


def test_server_noise_over_1e5_seeds_has_the_stddev_and_is_independent():
  """The server-side noise function, vectorized over a seed axis (jax.vmap over keys)."""
  stddev = 0.37
  keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(100_000))
  zeros = collections.OrderedDict(a=jnp.zeros(3), b=jnp.zeros(()))

  def two_rounds(key):
    state = _gaussian.initial_state(1.0, stddev, key)
    first, state = _gaussian.noised(zeros, state)
    second, _ = _gaussian.noised(zeros, state)
    return first, second

  first, second = jax.jit(jax.vmap(two_rounds))(keys)
  columns = np.concatenate([np.asarray(first["a"]), np.asarray(first["b"])[:, None],
                            np.asarray(second["a"]), np.asarray(second["b"])[:, None]], axis=1)
  np.testing.assert_allclose(np.std(columns, axis=0) / stddev, 1.0, atol=0.01)
  np.testing.assert_allclose(np.mean(columns, axis=0), 0.0, atol=5 * stddev / math.sqrt(1e5))
  # 8 draws per seed (4 coordinates, 2 rounds): pairwise uncorrelated.
  correlation = np.corrcoef(columns, rowvar=False)
  assert np.max(np.abs(correlation - np.eye(8))) < 0.02, correlation


def _run(make, runtime, rounds):
  """Results and measurements of `rounds` on a fresh process under `runtime`."""
  with runtime:
    process = make().create(STRUCT)
    state, results = process.initialize(), []
    for values in rounds:
      output = process.next(state, values)
      state = output.state
      results.append((output.result, output.measurements))
  return results, state


@pytest.mark.parametrize("make", [
    lambda seed: DPF.gaussian_fixed(1.0, 4, 2.0, seed=seed),
    # Adaptive clipping inside zeroing: three keyed draws a round (values, count), one program.
    lambda seed: fx.learning.dp_aggregator(1.0, 40, seed=seed),
], ids=["fixed", "dp-aggregator"])
def test_the_same_seed_gives_bit_identical_noise_on_both_runtimes(make):
  # Zero values: each result is the noise over the denominator, every other step exact, so
  # the runtimes agree bit for bit exactly when the noise does. (With other values the server
  # adds value and noise in programs XLA fuses differently on the two runtimes, and may round
  # that sum differently in the last bit: they agree to float32 rounding, checked below.)
  zeros = [[collections.OrderedDict(a=np.zeros(3, np.float32), b=np.zeros((2, 2), np.float32))
            for _ in range(4)] for _ in range(3)]
  vectorized, state_v = _run(lambda: make(5), fx.runtime.vectorized(), zeros)
  sequential, state_s = _run(lambda: make(5), fx.runtime.sequential(), zeros)
  for (rv, mv), (rs, ms) in zip(vectorized, sequential):
    for key in ("a", "b"):
      np.testing.assert_array_equal(rv[key], rs[key])
      assert np.all(rv[key] != 0)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, mv, ms))
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, state_v, state_s))
  # Every round draws afresh: the same inputs, other noise.
  assert not np.array_equal(vectorized[0][0]["a"], vectorized[1][0]["a"])
  rng = np.random.default_rng(2)
  rounds = [[collections.OrderedDict(a=rng.normal(size=3).astype(np.float32) / 8,
                                     b=rng.normal(size=(2, 2)).astype(np.float32) / 8)
             for _ in range(4)] for _ in range(3)]
  vectorized = _run(lambda: make(5), fx.runtime.vectorized(), rounds)[0]
  sequential = _run(lambda: make(5), fx.runtime.sequential(), rounds)[0]
  for (rv, _), (rs, _) in zip(vectorized, sequential):
    for key in ("a", "b"):
      np.testing.assert_allclose(rv[key], rs[key], rtol=1e-5, atol=1e-8)


def test_another_seed_gives_other_noise():
  def first_noise(seed):
    process = DPF.gaussian_fixed(1.0, 1, 1.0, seed=seed).create(fx.TensorType(np.float32, [4]))
    return process.next(process.initialize(), [np.zeros(4, np.float32)]).result

  np.testing.assert_array_equal(first_noise(5), first_noise(5))
  assert not np.array_equal(first_noise(5), first_noise(6))


def test_seed_none_draws_a_fresh_secret_seed():
  def first_noise():
    process = DPF.gaussian_fixed(1.0, 1, 1.0).create(fx.TensorType(np.float32, [4]))
    return process.next(process.initialize(), [np.zeros(4, np.float32)]).result

  assert not np.array_equal(first_noise(), first_noise())


# --- Adaptive clipping ---------------------------------------------------------------------------


def test_adaptive_without_count_noise_follows_the_no_noise_estimator(runtime):
  rng = np.random.default_rng(4)
  n, clip0, target, rate = 8, 0.5, 0.6, 0.3
  rounds = [clients(rng, n, list(rng.lognormal(-1.0, 1.0, size=n))) for _ in range(6)]
  process = DPF.gaussian_adaptive(0.0, n, initial_l2_norm_clip=clip0,
                                  target_unclipped_quantile=target, learning_rate=rate,
                                  seed=0).create(STRUCT)
  estimator = PQEP.no_noise(clip0, target, rate)
  state, estimator_state, clip = process.initialize(), estimator.initialize(), clip0
  clips, estimates = [], []
  for values in rounds:
    output = process.next(state, values)
    state = output.state
    expected = np_clipped_sum(values, clip)  # this round clips at the previous estimate
    np.testing.assert_allclose(output.result["a"], expected["a"] / n, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(output.result["b"], expected["b"] / n, rtol=1e-5, atol=1e-7)
    clip = float(output.measurements["dp_query_metrics"]["clip"])
    clips.append(clip)
    estimator_state = estimator.next(estimator_state, [np.float32(x) for x in norms(values)])
    estimates.append(float(estimator.report(estimator_state)))
  np.testing.assert_array_equal(clips, estimates)
  assert len(set(clips)) == len(clips)  # it moved every round


def test_adaptive_clip_follows_the_noised_update():
  """With count noise s, C <- C exp(-rate (clamp((#below - n/2 + s N_t) / n + 1/2) - q)), N_t
  the normal drawn from the estimator's key (split each round, fold_in 0)."""
  rng = np.random.default_rng(5)
  n, clip0, target, rate, s, seed = 8, 0.5, 0.5, 0.4, 1.5, 3
  rounds = [clients(rng, n, list(rng.lognormal(-1.0, 1.0, size=n))) for _ in range(6)]
  process = DPF.gaussian_adaptive(0.0, n, initial_l2_norm_clip=clip0,
                                  target_unclipped_quantile=target, learning_rate=rate,
                                  clipped_count_stddev=s, seed=seed).create(STRUCT)
  state = process.initialize()
  key = qe.seeded_key(seed, "QuantileEstimatorQuery")
  clip, fractions = clip0, []
  for values in rounds:
    output = process.next(state, values)
    state = output.state
    key, round_key = jax.random.split(key)
    noise = float(jax.random.normal(jax.random.fold_in(round_key, 0), (), jnp.float32)) * s
    below = sum(x <= clip for x in norms(values))
    fraction = (below - n / 2 + noise) / n + 0.5
    fractions.append(fraction)
    clip = clip * math.exp(-rate * (min(1.0, max(0.0, fraction)) - target))
    np.testing.assert_allclose(output.measurements["dp_query_metrics"]["clip"], clip, rtol=1e-5)
  assert any(abs(f - round(f * n) / n) > 1e-3 for f in fractions)  # the noise was not 0


def test_adaptive_noise_multiplier_is_split_as_tff():
  z, n = 1.0, 100.0
  factory = DPF.gaussian_adaptive(z, n, seed=0)
  state = factory.create(fx.TensorType(np.float32, [2])).initialize()
  value_z = (z**-2 - (2 * 0.05 * n)**-2)**-0.5
  numerator = state["query_state"]["numerator_state"]
  np.testing.assert_allclose(numerator["noise_multiplier"], value_z, rtol=1e-6)
  np.testing.assert_allclose(numerator["sum_state"]["stddev"], 0.1 * value_z, rtol=1e-6)
  below = numerator["quantile_estimator_state"]["below_estimate_state"]
  np.testing.assert_allclose(below["numerator_state"]["stddev"], 0.05 * n)
  assert below["denominator"] == np.float32(n)


# --- Accounting events ---------------------------------------------------------------------------


def test_dp_events_are_the_gaussian_mechanisms_of_a_round():
  dp_accounting = pytest.importorskip("dp_accounting")
  assert DPF.gaussian_fixed(1.2, 50, 0.5).dp_event() == dp_accounting.GaussianDpEvent(1.2)
  event = DPF.gaussian_adaptive(1.0, 100, clipped_count_stddev=4.0).dp_event()
  assert isinstance(event, dp_accounting.ComposedDpEvent)
  value, count = event.events
  assert value.noise_multiplier == pytest.approx((1.0 - 8.0**-2)**-0.5)
  assert count.noise_multiplier == pytest.approx(8.0)
  # Together they are the requested total: 1/z^2 = 1/z_value^2 + 1/z_count^2.
  assert value.noise_multiplier**-2 + count.noise_multiplier**-2 == pytest.approx(1.0)


def test_dp_event_without_dp_accounting_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "dp_accounting", None)  # `import dp_accounting` fails
  with pytest.raises(ImportError, match=re.escape("pip install 'federax[privacy]'")):
    DPF.gaussian_fixed(1.0, 10, 1.0).dp_event()


# --- dp_aggregator -------------------------------------------------------------------------------


def test_dp_aggregator_zeroes_then_clips_adaptively(runtime):
  rng = np.random.default_rng(6)
  agg = fx.learning.dp_aggregator(0.0, 4, seed=0)
  process = agg.create(STRUCT)
  values = clients(rng, 4, [0.01, 0.02, 0.05, 1.0])
  values[3]["a"][0] = 1e3  # L-inf above the zeroing norm 2 * 10 + 1: zeroed
  output = process.next(process.initialize(), values)
  expected = np_clipped_sum(values[:3], 0.1)  # the first clip, 0.1
  np.testing.assert_allclose(output.result["a"], expected["a"] / 4, rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(output.result["b"], expected["b"] / 4, rtol=1e-5, atol=1e-8)
  assert int(output.measurements["zeroed_count"]) == 1
  assert float(output.measurements["zeroing_norm"]) == 21.0
  assert "clip" in output.measurements["zeroing"]["dp_query_metrics"]
  assert isinstance(fx.learning.dp_aggregator(1.0, 100, zeroing=False), DPF)


def test_dp_aggregator_zeroes_a_client_with_an_infinite_entry(runtime):
  # The zeroing is deferred to a weight of 0 in the mean, which would turn an infinite entry
  # into NaN (0 * inf): such a round writes the zeros out instead.
  rng = np.random.default_rng(7)
  process = fx.learning.dp_aggregator(0.0, 4, seed=0).create(STRUCT)
  values = clients(rng, 4, [0.01, 0.02, 0.05, 1.0])
  values[3]["b"][1, 0] = -np.inf
  output = process.next(process.initialize(), values)
  expected = np_clipped_sum(values[:3], 0.1)
  np.testing.assert_allclose(output.result["a"], expected["a"] / 4, rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(output.result["b"], expected["b"] / 4, rtol=1e-5, atol=1e-8)
  assert int(output.measurements["zeroed_count"]) == 1


def test_dp_aggregator_with_every_client_zeroed_aggregates_zeros(runtime):
  process = fx.learning.dp_aggregator(0.0, 3, seed=0).create(STRUCT)
  values = clients(np.random.default_rng(8), 3, [1e3])
  output = process.next(process.initialize(), values)
  assert int(output.measurements["zeroed_count"]) == 3
  np.testing.assert_array_equal(output.result["a"], np.zeros(3, np.float32))
  np.testing.assert_array_equal(output.result["b"], np.zeros((2, 2), np.float32))


def _linear_model():
  from federax.learning.models import FunctionalModel, ModelWeights

  def predict(weights, x, training):
    kernel, bias = weights.trainable
    return x @ kernel + bias

  def loss_fn(logits, labels, sample_weight):
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
    return jnp.sum(losses * sample_weight) / jnp.maximum(jnp.sum(sample_weight), 1.0)

  spec = collections.OrderedDict(x=(np.float32, [4, 3]), y=(np.int32, [4]), mask=(np.bool_, [4]))
  weights = ModelWeights([np.zeros((3, 2), np.float32), np.zeros(2, np.float32)], [])
  return FunctionalModel(initial_weights=weights, predict_on_batch_fn=predict, loss_fn=loss_fn,
                         input_spec=spec)


def test_dp_fed_avg_trains_unweighted_and_refuses_weights():
  from federax.learning import algorithms, optimizers
  rng = np.random.default_rng(9)
  data = [[collections.OrderedDict(x=rng.normal(size=(4, 3)).astype(np.float32),
                                   y=rng.integers(0, 2, 4).astype(np.int32),
                                   mask=np.ones(4, bool))] for _ in range(4)]
  process = algorithms.build_unweighted_fed_avg(
      _linear_model(), optimizers.build_sgdm(0.1), optimizers.build_sgdm(1.0),
      model_aggregator=fx.learning.dp_aggregator(0.1, 4, seed=0))
  state = process.initialize()
  clips = []
  for _ in range(2):
    state, metrics = process.next(state, data)
    clips.append(float(metrics["aggregator"]["zeroing"]["dp_query_metrics"]["clip"]))
  assert clips[0] != clips[1]  # the clip adapts as training goes
  assert np.all(np.isfinite(process.get_model_weights(state).trainable[0]))
  with pytest.raises(TypeError, match="unbounded"):
    algorithms.build_weighted_fed_avg(
        _linear_model(), optimizers.build_sgdm(0.1),
        model_aggregator=fx.learning.dp_aggregator(0.1, 4, seed=0))


# --- Types as TFF prints them --------------------------------------------------------------------

# TFF 0.87's signatures (tensorflow_federated run on float32[2] values).
TFF_FIXED = ("(<state=<query_state=<numerator_state=<l2_norm_clip=float32,stddev=float32>,"
             "denominator=float32>,agg_state=<>,dp_event=<module_name=str,class_name=str,"
             "noise_multiplier=float32>,is_init_state=bool>@SERVER,value={float32[2]}@CLIENTS> -> "
             "<state=<query_state=<numerator_state=<l2_norm_clip=float32,stddev=float32>,"
             "denominator=float32>,agg_state=<>,dp_event=<module_name=str,class_name=str,"
             "noise_multiplier=float32>,is_init_state=bool>@SERVER,result=float32[2]@SERVER,"
             "measurements=<dp_query_metrics=<>,dp=<>>@SERVER>)")
_TFF_ADAPTIVE_STATE = (
    "<query_state=<numerator_state=<noise_multiplier=float32,sum_state=<l2_norm_clip=float32,"
    "stddev=float32>,quantile_estimator_state=<current_estimate=float32,target_quantile=float32,"
    "learning_rate=float32,below_estimate_state=<numerator_state=<l2_norm_clip=float32,"
    "stddev=float32>,denominator=float32>>>,denominator=float32>,agg_state=<>,dp_event="
    "<module_name=str,class_name=str,events=<<module_name=str,class_name=str,"
    "noise_multiplier=float32>,<module_name=str,class_name=str,noise_multiplier=float32>>>,"
    "is_init_state=bool>")
TFF_ADAPTIVE = (f"(<state={_TFF_ADAPTIVE_STATE}@SERVER,value={{float32[2]}}@CLIENTS> -> "
                f"<state={_TFF_ADAPTIVE_STATE}@SERVER,result=float32[2]@SERVER,"
                "measurements=<dp_query_metrics=<clip=float32>,dp=<>>@SERVER>)")
_TFF_ZEROING = ("<zeroing_norm=<<current_estimate=float32,target_quantile=float32,"
                "learning_rate=float32,below_estimate_state=<>>,<>>,inner_agg="
                f"{_TFF_ADAPTIVE_STATE},zeroed_count_agg=<>>")
TFF_DP_AGGREGATOR = (
    f"(<state={_TFF_ZEROING}@SERVER,value={{float32[2]}}@CLIENTS> -> <state={_TFF_ZEROING}"
    "@SERVER,result=float32[2]@SERVER,measurements=<zeroing=<dp_query_metrics=<clip=float32>,"
    "dp=<>>,zeroing_norm=float32,zeroed_count=int32>@SERVER>)")


def as_federax(tff_signature):
  """TFF's signature with federax's two departures: no `dp_event` (strings cannot be in a JAX
  program; `dp_event()` gives it), and a `noise_key` in every Gaussian sum's state."""
  without_event = re.sub(r",dp_event=<module_name=str,class_name=str,(noise_multiplier=float32|"
                         r"events=<(<[^<>]*>,?)+>)>", "", tff_signature)
  return without_event.replace("stddev=float32>", "stddev=float32,noise_key=uint32[2]>")


@pytest.mark.parametrize("make, tff", [
    (lambda: DPF.gaussian_fixed(1.0, 4.0, 1.0), TFF_FIXED),
    (lambda: DPF.gaussian_adaptive(1.0, 100.0), TFF_ADAPTIVE),
    (lambda: fx.learning.dp_aggregator(1.0, 100.0), TFF_DP_AGGREGATOR),
    (lambda: fx.learning.dp_aggregator(1.0, 100.0, zeroing=False), TFF_ADAPTIVE),
], ids=["fixed", "adaptive", "dp-aggregator", "dp-aggregator-no-zeroing"])
def test_types_print_as_tff_with_the_key_and_without_dp_event(make, tff):
  process = make().create(fx.TensorType(np.float32, [2]))
  assert "dp_event" not in as_federax(tff) and "noise_key" in as_federax(tff)
  assert str(process.next.type_signature) == as_federax(tff)


# --- Misuse --------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, exception, words", [
    (lambda: DPF.gaussian_fixed(1.0, 10, 1.0).create(fx.TensorType(np.float32),
                                                     fx.TensorType(np.float32)),
     TypeError, ["DifferentiallyPrivateFactory.create", "weighted", "sensitivity", "unbounded",
                 "TFF forbids"]),
    (lambda: fx.learning.dp_aggregator(1.0, 100).create(fx.TensorType(np.float32),
                                                        fx.TensorType(np.float32)),
     TypeError, ["takes no weights", "unbounded"]),
    (lambda: DPF.gaussian_fixed(1.0, 0, 1.0), ValueError, ["clients_per_round", "> 0"]),
    (lambda: DPF.gaussian_fixed(1.0, -5.0, 1.0), ValueError, ["clients_per_round", "-5.0"]),
    (lambda: DPF.gaussian_adaptive(1.0, 0.0), ValueError, ["gaussian_adaptive",
                                                           "clients_per_round"]),
    (lambda: DPF.gaussian_fixed(-0.5, 10, 1.0), ValueError, ["noise_multiplier", ">= 0"]),
    (lambda: DPF.gaussian_adaptive(-1.0, 10), ValueError, ["noise_multiplier", ">= 0"]),
    (lambda: DPF.gaussian_fixed(1.0, 10, 0.0), ValueError, ["clip must be", "> 0"]),
    (lambda: DPF.gaussian_fixed(1.0, 10, -1.0), ValueError, ["clip must be"]),
    (lambda: DPF.gaussian_fixed(1.0, 10, math.inf), ValueError, ["clip must be"]),
    (lambda: DPF.gaussian_adaptive(1.0, 100, initial_l2_norm_clip=0.0), ValueError,
     ["initial_l2_norm_clip"]),
    (lambda: DPF.gaussian_adaptive(1.0, 100, target_unclipped_quantile=1.5), ValueError,
     ["target_unclipped_quantile", "[0, 1]"]),
    (lambda: DPF.gaussian_adaptive(1.0, 4), ValueError,
     ["clipped_count_stddev is too low", "0.2", "noise_multiplier / 2"]),
    (lambda: DPF.gaussian_adaptive(1.0, 100, clipped_count_stddev=-1.0), ValueError,
     ["clipped_count_stddev"]),
    (lambda: DPF.gaussian_fixed("1", 10, 1.0), TypeError, ["noise_multiplier must be a number"]),
    (lambda: DPF.gaussian_fixed(1.0, 10, 1.0, seed=1.5), TypeError, ["seed must be an int"]),
    (lambda: DPF.gaussian_fixed(1.0, 10, 1.0).create(fx.TensorType(np.int32, [2])), TypeError,
     ["floating point"]),
    (lambda: DPF(object()), TypeError, ["gaussian_fixed", "tensorflow_privacy"]),
    (lambda: DPF(DPF.gaussian_fixed(1.0, 10, 1.0)._query, "sum"),
     TypeError, ["record_aggregation_factory must be an aggregation factory"]),
    (lambda: fx.aggregators.QuantileEstimatorQuery(1.0, 0.5, 0.2, -1.0, 10), ValueError,
     ["below_estimate_stddev must be a float >= 0"]),
    (lambda: fx.aggregators.QuantileEstimatorQuery(1.0, 0.5, 0.2, 1.0, 0), ValueError,
     ["expected_num_records must be a float > 0"]),
])
def test_misuse_is_a_clear_error(make, exception, words):
  with pytest.raises(exception) as info:
    make()
  for word in words:
    assert word in str(info.value), (word, str(info.value))
  assert re.search(r"at .*test_differential_privacy\.py:\d+", str(info.value))


def test_a_costly_count_noise_warns_as_tff():
  with pytest.warns(UserWarning, match="clipped_count_stddev"):
    DPF.gaussian_adaptive(1.0, 100, clipped_count_stddev=0.55)
