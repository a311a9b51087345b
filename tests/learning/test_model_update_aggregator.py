"""fx.learning.robust_aggregator / compression_aggregator / secure_aggregator: TFF's defaults.

The robust aggregator is checked against a NumPy re-computation of its whole pipeline (adaptive
zeroing, then adaptive clipping, then the weighted mean, the two quantile estimates updated
every round); the others against the plain mean within their quantization error. Every
algorithm that takes `model_aggregator=` accepts each of them.
"""

import collections
import math

import numpy as np
import pytest

import federax as fx
from federax.learning import algorithms, optimizers

VALUE = fx.to_type(collections.OrderedDict(a=(np.float32, [3]), b=(np.float32, [2, 2])))
F32 = fx.TensorType(np.float32)


def _rounds(seed=0, n=5, rounds=4):
  """Client values per round: norms spread around 1, and client 0 huge in round 0 (zeroed)."""
  rng = np.random.default_rng(seed)
  out = []
  for r in range(rounds):
    values = []
    for i in range(n):
      scale = 1000.0 if (r == 0 and i == 0) else rng.uniform(0.2, 3.0)
      values.append(collections.OrderedDict(
          a=(scale * rng.normal(size=3) / 2).astype(np.float32),
          b=(scale * rng.normal(size=(2, 2)) / 2).astype(np.float32)))
    out.append(values)
  return out


def _flat(v):
  return np.concatenate([np.ravel(v["a"]), np.ravel(v["b"])]).astype(np.float64)


def _quantile_step(estimate, norms, target, lr):
  below = np.mean([x <= estimate for x in norms])
  return estimate * math.exp(-lr * (below - target))


def _robust_reference(rounds, weights, zeroing=True, clipping=True):
  """NumPy: zeroing (L-inf > 2 q + 1, q from 10, target 0.98, lr ln 10), then clipping (L2 to
  q from 1, target 0.8, lr 0.2), then the weighted mean; estimates updated after each round."""
  zero_q, clip_q = 10.0, 1.0
  results, measurements = [], []
  for values, w in zip(rounds, weights):
    flat = [_flat(v) for v in values]
    m = {}
    if zeroing:
      threshold = 2 * zero_q + 1
      norms = [np.max(np.abs(x)) for x in flat]
      m["zeroed_count"] = sum(x > threshold for x in norms)
      m["zeroing_norm"] = threshold
      flat = [np.zeros_like(x) if n > threshold else x for x, n in zip(flat, norms)]
      zero_q = _quantile_step(zero_q, norms, 0.98, math.log(10.0))
    if clipping:
      norms = [np.linalg.norm(x) for x in flat]
      m["clipped_count"] = sum(x > clip_q for x in norms)
      m["clipping_norm"] = clip_q
      flat = [x * min(1.0, clip_q / n) if n > 0 else x for x, n in zip(flat, norms)]
      clip_q = _quantile_step(clip_q, norms, 0.8, 0.2)
    w = np.asarray(w, np.float64)
    results.append(np.tensordot(w, np.stack(flat), axes=1) / w.sum())
    measurements.append(m)
  return results, measurements


def _run(factory, rounds, weights=None):
  process = (factory.create(VALUE) if weights is None else factory.create(VALUE, F32))
  state, outputs = process.initialize(), []
  for r, values in enumerate(rounds):
    out = (process.next(state, values) if weights is None
           else process.next(state, values, weights[r]))
    state = out.state
    outputs.append(out)
  return outputs


@pytest.mark.parametrize("zeroing, clipping", [(True, True), (True, False), (False, True)])
def test_robust_aggregator_follows_numpy_over_rounds(runtime, zeroing, clipping):
  rounds = _rounds()
  weights = [[1.0, 3.0, 0.5, 2.0, 7.0]] * len(rounds)
  outputs = _run(fx.learning.robust_aggregator(zeroing=zeroing, clipping=clipping), rounds,
                 weights)
  expected, measured = _robust_reference(rounds, weights, zeroing, clipping)
  for out, want, m in zip(outputs, expected, measured):
    np.testing.assert_allclose(_flat(out.result), want, rtol=2e-5, atol=1e-6)
    got = out.measurements
    if zeroing:
      assert int(got["zeroed_count"]) == m["zeroed_count"]
      np.testing.assert_allclose(got["zeroing_norm"], m["zeroing_norm"], rtol=1e-5)
      got = got["zeroing"]
    if clipping:
      assert int(got["clipped_count"]) == m["clipped_count"]
      np.testing.assert_allclose(got["clipping_norm"], m["clipping_norm"], rtol=1e-5)
  assert measured[0].get("zeroed_count", 1) == 1  # The huge client was zeroed in round 0.


TFF_ROBUST_SIGNATURE = (  # TFF 0.87: robust_aggregator().create(float32[2], float32)
    "(<state=<zeroing_norm=<<current_estimate=float32,target_quantile=float32,learning_rate=flo"
    "at32,below_estimate_state=<>>,<>>,inner_agg=<clipping_norm=<<current_estimate=float32,targ"
    "et_quantile=float32,learning_rate=float32,below_estimate_state=<>>,<>>,inner_agg=<value_su"
    "m_process=<>,weight_sum_process=<>>,clipped_count_agg=<>>,zeroed_count_agg=<>>@SERVER,valu"
    "e={float32[2]}@CLIENTS,weight={float32}@CLIENTS> -> <state=<zeroing_norm=<<current_estimat"
    "e=float32,target_quantile=float32,learning_rate=float32,below_estimate_state=<>>,<>>,inner"
    "_agg=<clipping_norm=<<current_estimate=float32,target_quantile=float32,learning_rate=float"
    "32,below_estimate_state=<>>,<>>,inner_agg=<value_sum_process=<>,weight_sum_process=<>>,cli"
    "pped_count_agg=<>>,zeroed_count_agg=<>>@SERVER,result=float32[2]@SERVER,measurements=<zero"
    "ing=<clipping=<mean_value=<>,mean_weight=<>>,clipping_norm=float32,clipped_count=int32>,ze"
    "roing_norm=float32,zeroed_count=int32>@SERVER>)")


def test_robust_aggregator_prints_tff_signature():
  process = fx.learning.robust_aggregator().create(fx.TensorType(np.float32, [2]), F32)
  assert str(process.next.type_signature) == TFF_ROBUST_SIGNATURE


TFF_SECURE_SIGNATURE = (  # TFF 0.87: secure_aggregator().create(float32[2], float32)
    "(<state=<zeroing_norm=<<current_estimate=float32,target_quantile=float32,learning_rate=flo"
    "at32,below_estimate_state=<>>,<>>,inner_agg=<clipping_norm=<<current_estimate=float32,targ"
    "et_quantile=float32,learning_rate=float32,below_estimate_state=<>>,<>>,inner_agg=<value_su"
    "m_process=<<current_estimate=float32,target_quantile=float32,learning_rate=float32,below_e"
    "stimate_state=<>>,<>>,weight_sum_process=<>>,clipped_count_agg=<>>,zeroed_count_agg=<>>@SE"
    "RVER,value={float32[2]}@CLIENTS,weight={float32}@CLIENTS> -> <state=<zeroing_norm=<<curren"
    "t_estimate=float32,target_quantile=float32,learning_rate=float32,below_estimate_state=<>>,"
    "<>>,inner_agg=<clipping_norm=<<current_estimate=float32,target_quantile=float32,learning_r"
    "ate=float32,below_estimate_state=<>>,<>>,inner_agg=<value_sum_process=<<current_estimate=f"
    "loat32,target_quantile=float32,learning_rate=float32,below_estimate_state=<>>,<>>,weight_s"
    "um_process=<>>,clipped_count_agg=<>>,zeroed_count_agg=<>>@SERVER,result=float32[2]@SERVER,"
    "measurements=<zeroing=<clipping=<mean_value=<secure_upper_clipped_count=int32,secure_lower"
    "_clipped_count=int32,secure_upper_threshold=float32,secure_lower_threshold=float32>,mean_w"
    "eight=<secure_upper_clipped_count=int32,secure_lower_clipped_count=int32,secure_upper_thre"
    "shold=float32,secure_lower_threshold=float32>>,clipping_norm=float32,clipped_count=int32>,"
    "zeroing_norm=float32,zeroed_count=int32>@SERVER>)")


def test_secure_aggregator_prints_tff_signature():
  process = fx.learning.secure_aggregator().create(fx.TensorType(np.float32, [2]), F32)
  assert str(process.next.type_signature) == TFF_SECURE_SIGNATURE


def test_unweighted_robust_aggregator_is_unweighted_and_refuses_weights():
  factory = fx.learning.robust_aggregator(weighted=False)
  assert isinstance(factory, fx.aggregators.UnweightedAggregationFactory)
  rounds = _rounds(seed=2, rounds=2)
  outputs = _run(factory, rounds)
  expected, _ = _robust_reference(rounds, [[1.0] * 5] * 2)
  for out, want in zip(outputs, expected):
    np.testing.assert_allclose(_flat(out.result), want, rtol=2e-5, atol=1e-6)
  with pytest.raises(TypeError, match="does not take weights|must support weights|weight"):
    factory.create(VALUE, F32)


def test_debug_measurements_fn_must_keep_the_weighting():
  def adds_largest(mean):
    return fx.aggregators.add_measurements(
        mean, client_measurement_fn=lambda value, weight: {"heaviest": fx.federated_max(weight)})

  process = fx.learning.robust_aggregator(debug_measurements_fn=adds_largest).create(VALUE, F32)
  out = process.next(process.initialize(), _rounds()[1], [1.0, 3.0, 0.5, 2.0, 7.0])
  assert float(out.measurements["zeroing"]["clipping"]["heaviest"]) == 7.0
  with pytest.raises(TypeError, match="debug_measurements_fn must return a weighted"):
    fx.learning.robust_aggregator(
        debug_measurements_fn=lambda mean: fx.aggregators.UnweightedMeanFactory())


def test_compression_aggregator_quantizes_large_tensors_and_reports_bits(runtime):
  rounds = _rounds(seed=3, rounds=2)
  weights = [[1.0, 3.0, 0.5, 2.0, 7.0]] * 2
  # threshold=3: `b` (4 elements) is quantized to 8 bits, `a` (3) is sent as it is.
  outputs = _run(fx.learning.compression_aggregator(threshold=3), rounds, weights)
  expected, _ = _robust_reference(rounds, weights)
  for out, want in zip(outputs, expected):
    got = _flat(out.result)
    np.testing.assert_allclose(got[:3], want[:3], rtol=2e-5, atol=1e-6)
    # Each client's range / 255 per level, averaged: well within 0.05 of the mean here.
    np.testing.assert_allclose(got[3:], want[3:], atol=0.05)
    bits = out.measurements["zeroing"]["clipping"]["mean_value"]["bits"]
    assert float(bits) == 3 * 32 + (32 * math.ceil(4 * 8 / 28) + 64)


def test_compression_aggregator_rejects_unknown_options():
  with pytest.raises(TypeError):
    fx.learning.compression_aggregator(quantisation_bits=4)


ALGORITHMS = {
    "weighted_fed_avg": (True, lambda m, agg: algorithms.build_weighted_fed_avg(
        m, optimizers.build_sgdm(0.1), model_aggregator=agg)),
    "unweighted_fed_avg": (False, lambda m, agg: algorithms.build_unweighted_fed_avg(
        m, optimizers.build_sgdm(0.1), model_aggregator=agg)),
    "fed_sgd": (True, lambda m, agg: algorithms.build_fed_sgd(m, model_aggregator=agg)),
    "weighted_fed_prox": (True, lambda m, agg: algorithms.build_weighted_fed_prox(
        m, 0.1, optimizers.build_sgdm(0.1), model_aggregator=agg)),
    "unweighted_mime_lite": (False, lambda m, agg: algorithms.build_unweighted_mime_lite(
        m, optimizers.build_sgdm(0.1), model_aggregator=agg)),
}


# Each algorithm with one of the three (each used at least once): the aggregators are
# checked numerically above; here, that every builder takes them and trains.
PAIRS = [(algorithm, ("robust", "compression", "secure")[i % 3])
         for i, algorithm in enumerate(sorted(ALGORITHMS))]


@pytest.mark.parametrize("algorithm, kind", PAIRS)
def test_every_algorithm_accepts_a_recommended_aggregator(algorithm, kind):
  from test_algorithms import linear_model, make_clients
  weighted, build = ALGORITHMS[algorithm]
  make = getattr(fx.learning, f"{kind}_aggregator")
  process = build(linear_model(), make(weighted=weighted))
  state = process.initialize()
  before = [np.array(w) for w in state.global_model_weights.trainable]
  state, metrics = process.next(state, make_clients())
  after = state.global_model_weights.trainable
  assert any(not np.allclose(a, b) for a, b in zip(after, before))
  assert all(np.all(np.isfinite(a)) for a in after)
  assert "aggregator" in metrics


def test_secure_aggregator_equals_the_robust_pipeline_within_quantization(runtime):
  rounds = _rounds(seed=4, rounds=3)
  weights = [[1.0, 3.0, 0.5, 2.0, 7.0]] * 3
  outputs = _run(fx.learning.secure_aggregator(), rounds, weights)
  expected, measured = _robust_reference(rounds, weights)
  thresholds = []
  for out, want, m in zip(outputs, expected, measured):
    # Bound 2 * 50 = 100 quantized onto 2**31 steps: float32 arithmetic dominates the error.
    np.testing.assert_allclose(_flat(out.result), want, rtol=1e-4, atol=1e-4)
    assert int(out.measurements["zeroed_count"]) == m["zeroed_count"]
    assert int(out.measurements["zeroing"]["clipped_count"]) == m["clipped_count"]
    secure = out.measurements["zeroing"]["clipping"]["mean_value"]
    thresholds.append(float(secure["secure_upper_threshold"]))
  # 2 * q_0.95, q from 50, adapted every round (lr 1.0): far above these values, it falls.
  assert thresholds[0] == pytest.approx(100.0) and thresholds[2] < thresholds[1] < 100.0
