"""DistributedDpSumFactory's noise: the aggregate's noise variance against the mechanism's, the
noiseless sum against NumPy's clipped sum, the same integer sums (noise included) on both
runtimes.

Two processes (discrete Gaussian with the Hadamard rotation; Skellam with the Fourier rotation
and conditional rounding), each compiled once and shared by the tests (compiling is most of
their time).
"""

import collections
import math

import numpy as np
import pytest

import federax as fx

N = 4  # Clients, as many as expected: their noise shares make the central noise.
NOISE, CLIP = 1.0, 1.0
VALUE_TYPE = fx.to_type(collections.OrderedDict(a=(np.float32, [64, 60]), b=(np.float32, [256])))
DIM = 4096  # 3840 + 256: no padding for either rotation.

FACTORIES = {
    "dgauss-hd": lambda: fx.aggregators.DistributedDpSumFactory(
        NOISE, N, 16, CLIP, mechanism="distributed_dgauss", rotation_type="hd", seed=1),
    "skellam-dft": lambda: fx.aggregators.DistributedDpSumFactory(
        NOISE, N, 16, CLIP, beta=math.exp(-0.5), mechanism="distributed_skellam",
        rotation_type="dft", seed=1),
}


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def process(request):
  return FACTORIES[request.param]().create(VALUE_TYPE)


def values(rng, zero=False):
  out = []
  for i in range(N):
    if zero:
      out.append(collections.OrderedDict(a=np.zeros((64, 60), np.float32),
                                         b=np.zeros(256, np.float32)))
      continue
    a, b = rng.normal(size=(64, 60)), rng.normal(size=256)
    scale = (0.5, 3.0)[i % 2] / math.sqrt(np.sum(a * a) + np.sum(b * b))
    out.append(collections.OrderedDict(a=(a * scale).astype(np.float32),
                                       b=(b * scale).astype(np.float32)))
  return out


def flat(value):
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in value.values()])


def test_the_aggregates_noise_has_the_mechanisms_variance(process):
  # All clients send zeros (rounded exactly), so the aggregate is the noise alone: N shares of
  # variance (NOISE * CLIP)^2 / N each, in every element (the rotation is orthogonal).
  state, noise = process.initialize(), []
  for _ in range(2):
    output = process.next(state, values(None, zero=True))
    state = output.state
    noise.append(flat(output.result))
  noise = np.array(noise)
  expected = (NOISE * CLIP)**2
  se = math.sqrt(2 / noise.size)  # The sample variance's relative standard error: 1.1%.
  assert abs(noise.var() / expected - 1) < 4 * se
  assert abs(noise.mean()) < 4 * math.sqrt(expected / noise.size)
  # Fresh noise every round, independent of the last.
  assert abs(np.corrcoef(noise[0], noise[1])[0, 1]) < 4 / math.sqrt(DIM)
  assert float(output.measurements["estimated_modclip_prob"]) < 1e-3


def test_without_noise_the_sum_is_the_clipped_sum_up_to_the_rounding(process):
  # The noise is read from the state: the same program sums without it.
  state = process.initialize()
  state[0]["inner_agg"]["inner_agg_process"]["query_state"]["local_stddev"] = np.float32(0.0)
  clients = values(np.random.default_rng(0))
  output = process.next(state, clients)
  expected = sum(flat(v) * min(1.0, CLIP / np.linalg.norm(flat(v))) for v in clients)
  scale = float(output.measurements["scale_factor"])
  error = np.linalg.norm(flat(output.result) - expected)
  # Each rounded element is off by less than one level: n sqrt(d) / scale in L2 (0.03 here,
  # against a sum of norm ~ 2.4).
  assert error <= N * math.sqrt(DIM) / scale


def test_the_same_seed_gives_the_same_noise_on_both_runtimes(process):
  clients = values(np.random.default_rng(1))

  def two_rounds():
    state, results = process.initialize(), []
    for _ in range(2):
      output = process.next(state, clients)
      state = output.state
      results.append(flat(output.result))
    return results, float(output.measurements["scale_factor"])

  vectorized, scale = two_rounds()  # The default runtime, compiled by the tests above.
  with fx.runtime.sequential():
    sequential, _ = two_rounds()
  # The integer sums (values and noise) are the same bit for bit: two that differ do by at
  # least one level, 1/scale, in L2 after the (orthogonal) inverse rotation; the float
  # unscaling and rotation, compiled differently, may differ in the last bits only.
  for v, s in zip(vectorized, sequential):
    assert np.linalg.norm(v - s) < 0.25 / scale
    np.testing.assert_allclose(v, s, rtol=0, atol=1e-6)
  assert np.linalg.norm(vectorized[0] - vectorized[1]) > 1.0  # New noise every round.
