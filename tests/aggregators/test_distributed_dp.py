"""DistributedDpSumFactory and fx.learning.ddp_secure_aggregator: TFF's parameters (its formulas
in NumPy, and the values TFF 0.87 computes), the noiseless mean of the clipped values up to the
rounding, the adaptive clip's trajectory, wrapping reported, the dp events, misuse.

The noise itself (variance, reproducibility across runtimes) is in test_distributed_dp_noise.py.
"""

import collections
import math
import re

import numpy as np
import pytest

import federax as fx
from federax.aggregators import _distributed_noise

DDP = fx.aggregators.DistributedDpSumFactory
STRUCT = fx.to_type(collections.OrderedDict(a=(np.float32, [3]), b=(np.float32, [2, 2])))


# --- TFF's formulas, re-computed in NumPy (float64) ----------------------------------------------


def tff_params(noise_multiplier, n, bits, clip, padded_dim, modclip_prob=1e-4, beta=0.0):
  """TFF's `_build_aggregation_factory` parameters: scale, scaled L2 and L1, scaled stddev."""
  k = math.sqrt(2) * erfcinv(modclip_prob)
  sigma = noise_multiplier * clip / math.sqrt(n)
  scale = math.sqrt(2.0**(2 * bits) - n * k**2) / (
      2 * k * math.sqrt(clip**2 * n**2 / padded_dim + n * sigma**2))
  scale = min(scale, 1e6)
  gamma = 1 / scale
  inflated = clip + gamma * math.sqrt(padded_dim)
  if beta > 0:
    inflated = min(inflated, math.sqrt(clip**2 + gamma**2 * padded_dim / 4 + math.sqrt(
        2 * math.log(1 / beta)) * gamma * (clip + gamma * math.sqrt(padded_dim) / 2)))
  l2 = (inflated + 1e-5 * max(1.0, clip)) * scale  # TFF's leeway 1e-5, relative above 1.
  return dict(scale=scale, l2=l2, l1=math.ceil(l2 * min(math.sqrt(padded_dim), l2)),
              stddev=sigma * scale, k=k)


def erfcinv(p):
  """erfc^-1 by bisection on math.erfc (independent of the code's NormalDist)."""
  low, high = 0.0, 10.0
  for _ in range(200):
    mid = (low + high) / 2
    low, high = (mid, high) if math.erfc(mid) > p else (low, mid)
  return (low + high) / 2


def clipped(values, clip):
  """Each value (a struct) clipped to the global L2 norm `clip`, as flat float64 vectors."""
  out = []
  for v in values:
    flat = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in v.values()])
    out.append(flat * min(1.0, clip / max(np.linalg.norm(flat), 1e-30)))
  return out


def flat(result):
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in result.values()])


def struct_values(rng, n, norms):
  out = []
  for i in range(n):
    a, b = rng.normal(size=3), rng.normal(size=(2, 2))
    s = norms[i % len(norms)] / math.sqrt(np.sum(a * a) + np.sum(b * b))
    out.append(collections.OrderedDict(a=(a * s).astype(np.float32),
                                       b=(b * s).astype(np.float32)))
  return out


# --- Parameters: TFF's formulas and TFF's own values ---------------------------------------------


@pytest.mark.parametrize("mechanism, rotation, beta, clip", [
    ("distributed_skellam", "hd", 0.0, 0.5), ("distributed_dgauss", "dft", math.exp(-0.5), 40.0)])
def test_initial_parameters_are_tffs(mechanism, rotation, beta, clip):
  factory = DDP(0.7, 30, 18, clip, modclip_prob=1e-5, beta=beta, mechanism=mechanism,
                rotation_type=rotation, seed=0)
  state = factory.create(STRUCT).initialize()  # 7 elements: 8 padded either way.
  p = tff_params(0.7, 30, 18, clip, 8, modclip_prob=1e-5, beta=beta)
  discretization = state[0]["inner_agg"]
  query = discretization["inner_agg_process"]["query_state"]
  np.testing.assert_allclose(1 / discretization["step_size"], p["scale"], rtol=1e-6)
  np.testing.assert_allclose(query["l2_norm_bound"], p["l2"], rtol=1e-6)
  np.testing.assert_allclose(query["local_stddev"], p["stddev"], rtol=1e-6)
  assert float(discretization["prior_norm_bound"]) == clip
  if mechanism == "distributed_skellam":
    assert int(query["l1_norm_bound"]) == p["l1"]
  else:
    assert "l1_norm_bound" not in query


def test_initial_state_holds_what_tff_0_87_computes():
  # TFF 0.87, DistributedDpSumFactory(1.0, 100, 16, 1.0, rotation_type='hd') on <a=float32[3],
  # b=float32>: scale 168.41368, l1 341, l2 170.41536, local stddev 16.841368; with
  # mechanism='distributed_dgauss', auto_l2_clip=True: l2 170.41501, stddev 16.926176.
  value_type = fx.to_type(collections.OrderedDict(a=(np.float32, [3]), b=np.float32))
  skellam = DDP(1.0, 100, 16, 1.0, rotation_type="hd", seed=0).create(value_type).initialize()
  dgauss = DDP(1.0, 100, 16, 1.0, rotation_type="hd", mechanism="distributed_dgauss",
               auto_l2_clip=True, seed=0).create(value_type).initialize()
  query = skellam[0]["inner_agg"]["inner_agg_process"]["query_state"]
  np.testing.assert_allclose(1 / skellam[0]["inner_agg"]["step_size"], 168.41368, rtol=1e-6)
  assert int(query["l1_norm_bound"]) == 341
  np.testing.assert_allclose([query["l2_norm_bound"], query["local_stddev"]],
                             [170.41536, 16.841368], rtol=1e-6)
  query = dgauss[0]["inner_agg"]["inner_agg_process"]["query_state"]
  np.testing.assert_allclose([query["l2_norm_bound"], query["local_stddev"]],
                             [170.41501, 16.926176], rtol=1e-6)
  assert float(dgauss[0]["clipping_norm"][0]["current_estimate"]) == 1.0


def test_state_and_measurement_types_follow_tffs_nesting():
  process = DDP(1.0, 10, 12, 1.0, rotation_type="hd", seed=0).create(STRUCT)
  assert str(process.state_type) == (
      "<<clipping_norm=<>,inner_agg=<step_size=float32,prior_norm_bound=float32,"
      "inner_agg_process=<query_state=<l1_norm_bound=int32,l2_norm_bound=float32,"
      "local_stddev=float32,noise_key=uint32[2]>,agg_state=<>,is_init_state=bool>,"
      "key=uint32[2]>,clipped_count_agg=<>>,uint32[2]>@SERVER")
  assert str(process.next.type_signature.result[2]) == (
      "<l2_clip=float32,scale_factor=float32,scaled_inflated_l2=float32,"
      "scaled_local_stddev=float32,actual_num_clients=int32,padded_dim=int32,"
      "dp_query_metrics=<>,estimated_modclip_prob=float32>@SERVER")


# --- Without noise: the mean of the clipped values, up to the rounding ---------------------------


def test_ddp_secure_aggregator_without_noise_is_the_mean_of_the_clipped_values():
  # TFF's composition: adaptive zeroing, an unweighted mean, and the DDP sum with the clip
  # adapting from 0.1 toward the median norm (geometric, rate 0.2); no noise, so the count
  # below the clip is exact.
  n, bits = 5, 16
  process = fx.learning.ddp_secure_aggregator(0.0, n, bits=bits, seed=3).create(STRUCT)
  rng = np.random.default_rng(0)
  state, clip = process.initialize(), 0.1
  for _ in range(3):
    values = struct_values(rng, n, [0.03, 0.08, 0.2, 0.5, 0.12])
    output = process.next(state, values)
    state = output.state
    expected = np.mean(clipped(values, clip), axis=0)
    scale = tff_params(0.0, n, bits, clip, 8)["scale"]
    # Each rounded element is off by less than 1/scale: the mean by sqrt(d) / scale in L2.
    error = np.linalg.norm(flat(output.result) - expected)
    assert error <= math.sqrt(8) / scale, (error, math.sqrt(8) / scale)
    ddp = output.measurements["zeroing"]["mean_value"]
    np.testing.assert_allclose(ddp["l2_clip"], clip, rtol=1e-6)
    np.testing.assert_allclose(ddp["scale_factor"], scale, rtol=1e-5)
    assert int(ddp["actual_num_clients"]) == n and int(ddp["padded_dim"]) == 8
    assert float(ddp["estimated_modclip_prob"]) < 1e-6
    below = np.mean([np.linalg.norm(flat(v)) <= clip for v in values])
    clip = clip * math.exp(-0.2 * (below - 0.5))  # The next round's clip.


# --- Wrapping: never silent ----------------------------------------------------------------------


def test_a_sum_that_wraps_is_reported():
  # Integers with the discrete Gaussian, planned for 2 clients in 8 bits. When 2 of the 60
  # clients send a value (the others zeros), nothing wraps, and the measurement says so; when
  # all 60 send it, the sum is 30 times what the scale allows for: its elements wrap, the
  # result is wrong, and the measurement says so too.
  process = DDP(0.0, 2, 8, 100.0, mechanism="distributed_dgauss", rotation_type="hd",
                seed=0).create(fx.TensorType(np.int32, [64]))
  value = np.random.default_rng(2).integers(-20, 21, 64).astype(np.int32)  # Norm < 100.
  zeros = np.zeros_like(value)
  planned = process.next(process.initialize(), [value] * 2 + [zeros] * 58)
  assert planned.result.dtype == np.int32
  # The rounding (n sqrt(d) / scale in L2, the scale is coarse in 8 bits), then to integers.
  bound = 2 * math.sqrt(64) / planned.measurements["scale_factor"] + 0.5 * math.sqrt(64)
  assert np.linalg.norm(planned.result - 2 * value) <= bound
  assert float(planned.measurements["estimated_modclip_prob"]) < 1e-3
  crowded = process.next(process.initialize(), [value] * 60)
  assert np.linalg.norm(crowded.result - 60 * value) > 10 * bound
  assert float(crowded.measurements["estimated_modclip_prob"]) > 0.1


def test_too_few_bits_for_the_clients_is_an_error_at_construction():
  with pytest.raises(ValueError, match=r"bits=3 is too small .* expected_clients_per_round=8"):
    DDP(1.0, 8, 3, 1.0, modclip_prob=1e-4)  # 2^6 < 8 * 3.89^2
  with pytest.raises(ValueError, match=r"at least log2\(expected_clients_per_round\)"):
    DDP(1.0, 100, 6, 1.0, modclip_prob=0.5)


def test_a_record_over_its_norm_bound_adds_nothing():
  # Distributed DP never makes one (the bound is the rounding's worst case); the noise step
  # still guarantees it: a record over the bound is replaced by zeros before the noise.
  factory = _distributed_noise.DistributedNoiseSumFactory("distributed_skellam", 100, 10.0,
                                                          0.0, 12, 0)
  process = factory.create(fx.TensorType(np.int32, [3]))
  output = process.next(process.initialize(), [[3, 4, 0], [30, 40, 0], [0, 0, 60]])
  np.testing.assert_array_equal(output.result, [3, 4, 0])


# --- Privacy accounting --------------------------------------------------------------------------


def test_dp_event_is_the_gaussian_with_the_inflated_sensitivity():
  dp_accounting = pytest.importorskip("dp_accounting")
  factory = DDP(1.1, 50, 16, 0.3, rotation_type="hd", seed=0)
  factory.create(fx.TensorType(np.float32, [1000]))  # Padded to 1024.
  p = tff_params(1.1, 50, 16, 0.3, 1024)
  z = math.sqrt(50) * p["stddev"] / p["l2"]
  assert 1.09 < z < 1.1  # The rounding inflates the sensitivity a little.
  event = factory.dp_event()
  assert isinstance(event, dp_accounting.GaussianDpEvent)
  np.testing.assert_allclose(event.noise_multiplier, z, rtol=1e-9)
  assert factory.dp_event(fx.TensorType(np.float32, [1000])) == event


@pytest.mark.parametrize("mechanism", ["distributed_dgauss", "distributed_skellam"])
def test_exact_dp_events_bound_the_gaussian_approximation(mechanism):
  dp_accounting = pytest.importorskip("dp_accounting")
  factory = DDP(1.0, 100, 16, 1.0, mechanism=mechanism, rotation_type="hd", seed=0)
  value_type = fx.TensorType(np.float32, [500])
  exact = factory.dp_event(value_type, approximate=False)
  p = tff_params(1.0, 100, 16, 1.0, 512)
  mu = 100 * p["stddev"]**2
  assert isinstance(exact, dp_accounting.ZCDpEvent)
  if mechanism == "distributed_dgauss":  # Kairouz et al. 2021, Prop. 14: tau underflows.
    np.testing.assert_allclose([exact.rho, exact.xi], [p["l2"]**2 / (2 * mu), 0.0], rtol=1e-9)
  else:  # Agarwal et al. 2021, Thm. 3.5, with the rounding of the order.
    rho = p["l2"]**2 / (2 * mu) * (1 + 1 / mu)
    np.testing.assert_allclose([exact.rho, exact.xi],
                               [rho, max(0, (6 * p["l1"] - p["l2"]**2) / (4 * mu**2)) + rho])

  def epsilon(event, rounds=100):
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(event, rounds)
    return accountant.get_epsilon(1e-5)

  approximate, rigorous = epsilon(factory.dp_event(value_type)), epsilon(exact)
  assert approximate <= rigorous * (1 + 1e-9)
  # The discrete Gaussian's guarantee is the Gaussian's; Skellam's pays for the orders
  # between integers (xi = rho) on top of O(1/mu).
  assert rigorous <= approximate * (1.0001 if mechanism == "distributed_dgauss" else 1.6)


def test_dp_event_with_an_adaptive_clip_adds_the_count():
  dp_accounting = pytest.importorskip("dp_accounting")
  factory = DDP(1.0, 100, 16, 0.1, auto_l2_clip=True, seed=0)
  event = factory.dp_event(fx.TensorType(np.float32, [10]))
  assert isinstance(event, dp_accounting.ComposedDpEvent)
  values, count = event.events
  assert count == dp_accounting.GaussianDpEvent(2 * 0.05 * 100)
  # Together they are noise_multiplier 1 (before the rounding's inflation).
  total = (values.noise_multiplier**-2 + count.noise_multiplier**-2)**-0.5
  assert 0.98 < total < 1.0


# --- Misuse --------------------------------------------------------------------------------------

MISUSE = [
    (lambda: DDP(-1.0, 10, 16, 1.0), ValueError, ["noise_multiplier", ">= 0", "-1.0"]),
    (lambda: DDP("1", 10, 16, 1.0), TypeError, ["noise_multiplier must be a number"]),
    (lambda: DDP(1.0, 0, 16, 1.0), ValueError, ["expected_clients_per_round", ">= 1", "0"]),
    (lambda: DDP(1.0, 10.5, 16, 1.0), TypeError, ["expected_clients_per_round must be an int"]),
    (lambda: DDP(1.0, 10, 0, 1.0), ValueError, ["bits", "[1, 22]", "0"]),
    (lambda: DDP(1.0, 10, 23, 1.0), ValueError, ["bits", "[1, 22]", "23"]),
    (lambda: DDP(1.0, 10, 16.0, 1.0), TypeError, ["bits must be an int"]),
    (lambda: DDP(1.0, 10, 16, 0.0), ValueError, ["l2_clip", "> 0"]),
    (lambda: DDP(1.0, 10, 16, 1.0, modclip_prob=1.0), ValueError, ["modclip_prob", "(0, 1)"]),
    (lambda: DDP(1.0, 10, 16, 1.0, beta=1.0), ValueError, ["beta", "[0, 1)"]),
    (lambda: DDP(1.0, 10, 16, 1.0, mechanism="gaussian"), ValueError,
     ["unknown mechanism", "'distributed_dgauss' or 'distributed_skellam'"]),
    (lambda: DDP(1.0, 10, 16, 1.0, rotation_type=2), TypeError, ["rotation_type must be a str"]),
    (lambda: DDP(1.0, 10, 16, 1.0, auto_l2_clip=1), TypeError, ["auto_l2_clip must be a bool"]),
    (lambda: DDP(1.0, 10, 16, 1.0, auto_l2_clip=True, auto_l2_lr=0.0), ValueError,
     ["auto_l2_lr", "> 0"]),
    (lambda: DDP(1.0, 10, 16, 1.0, auto_l2_clip=True), ValueError,
     ["clipped_count_stddev is too low"]),
    (lambda: DDP(1.0, 10, 16, 1.0, seed=0).create(fx.TensorType(np.float32, [3]),
                                                   fx.TensorType(np.float32)),
     TypeError, ["weighted process cannot be made", "sensitivity", "unweighted"]),
    (lambda: fx.learning.ddp_secure_aggregator(1.0, 100, seed=0).create(
        fx.TensorType(np.float32, [3]), fx.TensorType(np.float32)),
     TypeError, ["takes no weights", "sensitivity", "unweighted"]),
    (lambda: DDP(1.0, 10, 16, 1.0, seed=0).create(fx.to_type([np.float32, np.int32])),
     TypeError, ["all integers or all floats"]),
    (lambda: DDP(1.0, 10, 16, 1.0, seed=0).create(fx.SequenceType(np.float32)), TypeError,
     ["tensor or a structure of tensors"]),
    (lambda: DDP(1.0, 10, 16, 1.0, seed=0).dp_event(), ValueError,
     ["depends on the values' dimension", "create(value_type) first"]),
]


@pytest.mark.parametrize("make, exception, words", MISUSE,
                         ids=[f"misuse-{i}" for i in range(len(MISUSE))])
def test_misuse_is_a_clear_error(make, exception, words):
  with pytest.raises(exception) as info:
    make()
  for word in words:
    assert word in str(info.value), (word, str(info.value))
  assert re.search(r"at .*test_distributed_dp\.py:\d+", str(info.value))


def test_a_scale_below_one_warns_as_tff():
  with pytest.warns(UserWarning, match=r"the scale 0.\d+ <= 1 .* increase bits \(now 4\)"):
    DDP(1.0, 2, 4, 10.0, seed=0).create(fx.TensorType(np.float32, [8]))


def test_num_stddevs_is_sqrt2_erfcinv():
  from federax.aggregators.distributed_dp import clip_prob_to_num_stddevs
  for p in (1e-6, 1e-4, 0.3173105078629141):
    assert clip_prob_to_num_stddevs(p) == pytest.approx(math.sqrt(2) * erfcinv(p), rel=1e-12)
  # TFF's, through TF's float32 erfcinv: 3.8905917704 (3e-8 off; its scale agrees to 1e-7).
  assert clip_prob_to_num_stddevs(1e-4) == pytest.approx(3.8905917704304565, rel=1e-7)
