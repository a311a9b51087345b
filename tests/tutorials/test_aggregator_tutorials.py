"""TFF's aggregator tutorials, ported to federax as notebooks: what they print, checked.

`tuning_recommended_aggregators` trains FedAvg with every aggregator TFF 0.87's tutorial shows
(and federax's robust rules); `tff_for_federated_learning_research_compression` is TFF's "model
and update compression" research tutorial, deleted from TFF before 0.87. Each notebook runs once
per module, in FAST mode (`notebooks.run`).

Measurement structures are compared with TFF 0.87's own (the types printed by
`tff_reference/tuning_recommended_aggregators.py`); numbers that TFF's published notebooks do not
fix (losses on other data, adaptive norms) are checked against an independent NumPy
computation or for what they mean: finite, going down, within their bounds.
"""

from __future__ import annotations

import collections
import math
import re

import numpy as np
import pytest

from tutorials import notebooks

pytestmark = pytest.mark.slow  # Each runs a notebook in a fresh process on real data.

_RUNS: dict = {}
RUN_DIRS: dict = {}


def run(name: str, tmp_path_factory) -> str:
  """The notebook's stdout, run once per test session (several tests read it)."""
  if name not in _RUNS:
    RUN_DIRS[name] = tmp_path_factory.mktemp(name)
    _RUNS[name] = notebooks.run(name, RUN_DIRS[name])
  return _RUNS[name]


def parse(printed: str):
  """A printed structure of OrderedDicts and NumPy scalars (NumPy 2's reprs), as a value."""
  return eval(printed, {"OrderedDict": collections.OrderedDict, "np": np})


def measurements_type(value) -> str:
  """Measurements (`result.metrics['aggregator']`) as TFF prints their type: `<a=<>,b=int32>`."""

  def describe(v):
    if isinstance(v, collections.abc.Mapping):
      return "<" + ",".join(f"{k}={describe(x)}" for k, x in v.items()) + ">"
    if isinstance(v, tuple) and not v:
      return "<>"
    assert isinstance(v, np.generic), (type(v), v)
    return v.dtype.name

  return describe(value)


# --- Tuning recommended aggregations -------------------------------------------------------------

NUM_ROUNDS = 3  # FAST mode: 5 clients, 3 rounds.
_MEAN = "mean_value=<>,mean_weight=<>"
_SECURE = ("<secure_upper_clipped_count=int32,secure_lower_clipped_count=int32,"
           "secure_upper_threshold=float32,secure_lower_threshold=float32>")


def _zeroing(inner: str) -> str:
  return f"<zeroing=<{inner}>,zeroing_norm=float32,zeroed_count=int32>"


def _clipping(inner: str) -> str:
  return f"<clipping=<{inner}>,clipping_norm=float32,clipped_count=int32>"


# TFF 0.87's measurement types for the notebook's aggregators and constants:
# `tff_reference/tuning_recommended_aggregators.py`.
TFF_MEASUREMENTS = collections.OrderedDict([
    ("weighted mean", f"<{_MEAN}>"),
    ("clipping to the median norm", _clipping(_MEAN)),
    ("zeroing at a constant", _zeroing(_MEAN)),
    ("adaptive zeroing", _zeroing(_MEAN)),
    ("adaptive clipping", _clipping(_MEAN)),
    ("compressed mean", f"<{_MEAN}>"),
    ("compressed mean, threshold 1000", f"<{_MEAN}>"),
    ("secure mean, constant bound", f"<mean_value={_SECURE},mean_weight=<>>"),
    ("secure mean, adaptive bound", f"<mean_value={_SECURE},mean_weight=<>>"),
    ("secure mean and weights", f"<mean_value={_SECURE},mean_weight={_SECURE}>"),
    ("zeroing, clipping, compressed mean", _zeroing(_clipping(_MEAN)[1:-1])),
    ("fx.learning.robust_aggregator()", _zeroing(_clipping(_MEAN)[1:-1])),
    ("fx.learning.compression_aggregator()", _zeroing(_clipping(_MEAN)[1:-1])),
    ("fx.learning.secure_aggregator()", _zeroing(_clipping(
        f"mean_value={_SECURE},mean_weight={_SECURE}")[1:-1])),
])
# federax's robust rules, which TFF lacks (federax/aggregators/robust_rules.py).
FEDERAX_MEASUREMENTS = collections.OrderedDict([
    ("coordinate-wise median", "<>"),
    ("trimmed mean", "<>"),
    ("Krum", "<num_neighbors=int32,num_selected=int32>"),
    ("geometric median", "<num_iterations=int32>"),
])
COMPRESSED = {"compressed mean", "compressed mean, threshold 1000",
              "zeroing, clipping, compressed mean", "fx.learning.compression_aggregator()"}
_ROUND = re.compile(r"round +(\d+), loss=(\S+), aggregator=(.*)")


def trainings(stdout: str) -> collections.OrderedDict:
  """Title -> [(loss, measurements)] a round, for every `train(title, ...)` the notebook ran."""
  runs: collections.OrderedDict = collections.OrderedDict()
  title = None
  for line in stdout.splitlines():
    if line.endswith(":") and not line.startswith("round"):
      title = line[:-1]
      runs[title] = []
    elif (m := _ROUND.fullmatch(line)) and title is not None:
      assert int(m[1]) == len(runs[title]), line
      runs[title].append((float(m[2]), parse(m[3])))
  return runs


def nested(measurements, *keys):
  for key in keys:
    measurements = measurements[key]
  return measurements


def found(measurements, key: str) -> list:
  """Every value named `key` in a nested measurements dict."""
  if not isinstance(measurements, collections.abc.Mapping):
    return []
  here = [measurements[key]] if key in measurements else []
  return here + [x for v in measurements.values() for x in found(v, key)]


@pytest.fixture(scope="module")
def tuning(tmp_path_factory):
  return run("tuning_recommended_aggregators", tmp_path_factory)


def test_tuning_trains_every_aggregator(tuning):
  runs = trainings(tuning)
  assert list(runs) == list(TFF_MEASUREMENTS) + list(FEDERAX_MEASUREMENTS)
  for title, rounds in runs.items():
    losses = [loss for loss, _ in rounds]
    assert len(losses) == NUM_ROUNDS, title
    assert all(math.isfinite(loss) for loss in losses), (title, losses)
    # The same model and first-round data: the first round's training loss is the same for all.
    assert losses[0] == pytest.approx(runs["weighted mean"][0][0], abs=1e-4), title
    assert all(b < a for a, b in zip(losses, losses[1:])), (title, losses)  # Going down.


def test_tuning_measurements_are_tffs(tuning):
  runs = trainings(tuning)
  for title, tff in {**TFF_MEASUREMENTS, **FEDERAX_MEASUREMENTS}.items():
    printed = measurements_type(runs[title][0][1])
    if title in COMPRESSED:
      # federax's EncodedSumFactory measures the bits a client sends; TFF's measures nothing.
      assert "mean_value=<bits=float32>" in printed, printed
      printed = printed.replace("mean_value=<bits=float32>", "mean_value=<>")
    assert printed == tff, title


def test_tuning_quantile_estimate(tuning):
  """The median estimate of 1, ..., 10, recomputed: TFF's geometric update of the estimate by
  `exp(-lr * (fraction at or below - target))`."""
  printed = re.findall(r"^round +(\d+), estimate=([\d.]+)$", tuning, re.M)
  assert [int(r) for r, _ in printed] == [0, 10, 20, 30, 40]
  values, estimate, expected = np.arange(1.0, 11.0), 1.0, {}
  for round_num in range(41):
    expected[round_num] = estimate
    estimate *= math.exp(-0.2 * (np.mean(values <= estimate) - 0.5))
  for r, e in printed:
    assert float(e) == pytest.approx(expected[int(r)], abs=2e-4), r
  assert 5.0 <= float(printed[-1][1]) < 6.0  # Settled where half the values are at or below.


def test_tuning_measured_values(tuning):
  runs = trainings(tuning)
  m = {title: [measured for _, measured in rounds] for title, rounds in runs.items()}

  # Norms: adaptive ones start at the initial estimate (times the multiplier, plus the increment)
  # and, with every client at or below them, shrink by exp(-learning_rate * (1 - quantile)) a
  # round; constant ones stay.
  zeroing = [x["zeroing_norm"] for x in m["adaptive zeroing"]]
  assert zeroing == pytest.approx([2 * 10.0 * 10**(-0.02 * r) + 1 for r in range(NUM_ROUNDS)],
                                  rel=1e-5)
  for title, first, factor in [("adaptive clipping", 1.0, math.exp(-0.2 * 0.2)),
                               ("clipping to the median norm", 1.0, math.exp(-0.2 * 0.5))]:
    norms = [x["clipping_norm"] for x in m[title]]
    assert [x["clipped_count"] for x in m[title]] == [0] * NUM_ROUNDS, title
    assert norms == pytest.approx([first * factor**r for r in range(NUM_ROUNDS)], rel=1e-5)
  assert [x["zeroing_norm"] for x in m["zeroing at a constant"]] == pytest.approx([0.1] * 3)
  zeroed = [c for rounds in m.values() for x in rounds for c in found(x, "zeroed_count")]
  assert len(zeroed) == 6 * NUM_ROUNDS and not any(zeroed)  # No update is unusually large.
  composed = m["zeroing, clipping, compressed mean"]
  assert all(nested(x, "zeroing", "clipping_norm") == pytest.approx(0.25) for x in composed)
  # The constant 0.25 is below most update norms: most of the 5 clients are clipped.
  assert all(3 <= nested(x, "zeroing", "clipped_count") <= 5 for x in composed), composed
  # "Equivalent to" in TFF's comments: the recommended aggregator's norms are those of the
  # adaptive zeroing and clipping built by hand.
  robust = m["fx.learning.robust_aggregator()"]
  assert [x["zeroing_norm"] for x in robust] == zeroing
  assert ([nested(x, "zeroing", "clipping_norm") for x in robust]
          == [x["clipping_norm"] for x in m["adaptive clipping"]])

  # Bits one client sends, counted by hand: 32 a float; a tensor of n > threshold elements as
  # 8-bit levels packed 28 bits to an int32, plus its float32 minimum and maximum.
  plain = 32 * (784 * 10 + 10)
  quantized = 32 * math.ceil(784 * 10 * 8 / 28) + 64 + 32 * 10
  for title, bits in [("compressed mean", plain), ("compressed mean, threshold 1000", quantized),
                      ("zeroing, clipping, compressed mean", plain),
                      ("fx.learning.compression_aggregator()", plain)]:
    assert [found(x, "bits") for x in m[title]] == [[bits]] * NUM_ROUNDS, title

  # Secure sums: the bounds used. Constant: [-10, 10]; adaptive: 2 * Q, Q from 50 shrinking by
  # exp(-1.0 * (1 - 0.95)) a round while no client's largest |weighted value| exceeds it; the
  # weights in [0, 121].
  for x in m["secure mean, constant bound"]:
    assert (x["mean_value"]["secure_upper_threshold"],
            x["mean_value"]["secure_lower_threshold"]) == (10.0, -10.0)
    assert x["mean_value"]["secure_upper_clipped_count"] == 0
  for title in ["secure mean, adaptive bound", "secure mean and weights"]:
    upper = [x["mean_value"]["secure_upper_threshold"] for x in m[title]]
    assert upper == pytest.approx([100.0 * math.exp(-0.05 * r) for r in range(NUM_ROUNDS)],
                                  rel=1e-5), title
    assert [x["mean_value"]["secure_upper_clipped_count"] for x in m[title]] == [0] * NUM_ROUNDS
    assert [x["mean_value"]["secure_lower_threshold"] for x in m[title]] == [-u for u in upper]
  for x in m["secure mean and weights"]:
    weight = x["mean_weight"]
    assert (weight["secure_upper_threshold"], weight["secure_lower_threshold"]) == (121.0, 0.0)
    assert weight["secure_upper_clipped_count"] == weight["secure_lower_clipped_count"] == 0
  # With no client clipped, a secure sum changes the mean only by its quantization error.
  for title in ["secure mean, constant bound", "secure mean, adaptive bound",
                "secure mean and weights"]:
    assert ([loss for loss, _ in runs[title]]
            == pytest.approx([loss for loss, _ in runs["weighted mean"]], abs=1e-3)), title

  # Robust rules: Krum with n = 5 clients and f = 1 scores by n - f - 2 = 2 neighbours.
  assert all(x == {"num_neighbors": 2, "num_selected": 1} for x in m["Krum"])
  assert all(1 <= x["num_iterations"] <= 100 for x in m["geometric median"])


def test_tuning_dp_section_builds_tffs_dp_mean():
  """TFF's DP cell: `gaussian_adaptive(noise_multiplier=0.1, clients_per_round=100)`."""
  source = notebooks.source("tuning_recommended_aggregators")
  assert ("dp_mean = fx.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(\n"
          "    noise_multiplier=0.1, clients_per_round=100)") in source


# --- Model and update compression -----------------------------------------------------------------

# TFF's file name. (Not `compression`: the test runs a notebook as `<name>.py` in its working
# directory, where it would shadow the `compression` package JAX tries to import.)
COMPRESSION = "tff_for_federated_learning_research_compression"
# The original FedAvg CNN: two 5x5 convolutions (32 and 64 filters), dense 3136 -> 512 -> 10.
CNN_TENSORS = [5 * 5 * 1 * 32, 32, 5 * 5 * 32 * 64, 64, 3136 * 512, 512, 512 * 10, 10]
CLIENT_BITS = 32 * sum(CNN_TENSORS)
COMPRESSED_CLIENT_BITS = sum(32 * math.ceil(n * 8 / 28) + 64 if n > 20000 else 32 * n
                             for n in CNN_TENSORS)
FAST_ROUNDS, FAST_CLIENTS = 2, 5
_COMPRESSION_ROUND = re.compile(
    r"round +(\d+), train_metrics=(OrderedDict\(.*\)), broadcasted_bits=(\S+), "
    r"aggregated_bits=(\S+)")


def format_size(bits: float) -> str:
  """TFF's notebook's format_size."""
  for unit in ["bit", "Kibit", "Mibit", "Gibit"]:
    if bits < 1024.0:
      return f"{bits:3.2f}{unit}"
    bits /= 1024.0
  return f"{bits:.2f}TiB"


@pytest.fixture(scope="module")
def compression(tmp_path_factory):
  return run(COMPRESSION, tmp_path_factory)


def compression_rounds(stdout: str) -> list:
  rounds = [m for m in map(_COMPRESSION_ROUND.fullmatch, stdout.splitlines()) if m]
  assert len(rounds) == 2 * FAST_ROUNDS  # The original run, then the compressed one.
  return rounds


# TFF's printed cumulative bits, 10 rounds of 10 clients (its notebook's outputs).
TFF_BROADCASTED = ["507.62Mibit", "1015.24Mibit", "1.49Gibit", "1.98Gibit", "2.48Gibit",
                   "2.97Gibit", "3.47Gibit", "3.97Gibit", "4.46Gibit", "4.96Gibit"]
TFF_AGGREGATED = TFF_BROADCASTED[:1] + ["1015.25Mibit"] + TFF_BROADCASTED[2:]
TFF_AGGREGATED_COMPRESSED = ["146.47Mibit", "292.93Mibit", "439.40Mibit", "585.86Mibit",
                             "732.33Mibit", "878.79Mibit", "1.00Gibit", "1.14Gibit",
                             "1.29Gibit", "1.43Gibit"]


def per_client_round(printed: list[str]) -> tuple[float, float]:
  """The bounds on the bits of one client and round that TFF's rounded figures allow."""
  scale = {"Mibit": 2**20, "Gibit": 2**30}
  low, high = 0.0, math.inf
  for r, text in enumerate(printed, 1):
    value, unit = float(text[:-5]), scale[text[-5:]]
    low = max(low, (value - 0.005) * unit / (10 * r))
    high = min(high, (value + 0.005) * unit / (10 * r))
  return low, high


def test_compression_bits_are_tffs():
  """The bits counted from the model are TFF's: the broadcasts exactly, the aggregated bits up
  to what TFF's sizing executor counted besides the model update."""
  assert CLIENT_BITS == 53_227_840 and COMPRESSED_CLIENT_BITS == 15_357_536
  assert [format_size(r * 10 * CLIENT_BITS) for r in range(1, 11)] == TFF_BROADCASTED
  # TFF counted everything a client sent: also its weight, its metrics' sums and, with the
  # compression aggregator, the adaptive zeroing and clipping's bits. A few hundred bits a
  # client and round, which round 146.4609Mibit (federax's 146.46) up to TFF's 146.47.
  for printed, model_part in [(TFF_AGGREGATED, CLIENT_BITS),
                              (TFF_AGGREGATED_COMPRESSED, COMPRESSED_CLIENT_BITS)]:
    low, high = per_client_round(printed)
    assert 200 < low - model_part and high - model_part < 600, (low, high)
  assert format_size(10 * COMPRESSED_CLIENT_BITS) == "146.46Mibit"


def test_compression_bits(compression):
  lines = compression.splitlines()
  assert "bits a client receives in a round: 53,227,840" in lines
  assert ("bits a client sends in a round: 53,227,840 without compression, 15,357,536 with "
          "(3.47x fewer)") in lines
  assert ("a round of 10 clients: broadcasted_bits=507.62Mibit, aggregated_bits=507.62Mibit "
          "without compression, 146.46Mibit with") in lines
  for i, m in enumerate(compression_rounds(compression)):
    rounds_so_far = int(m[1]) + 1
    assert int(m[1]) == i % FAST_ROUNDS
    sent = COMPRESSED_CLIENT_BITS if i >= FAST_ROUNDS else CLIENT_BITS
    assert m[3] == format_size(rounds_so_far * FAST_CLIENTS * CLIENT_BITS)
    assert m[4] == format_size(rounds_so_far * FAST_CLIENTS * sent)


def test_compression_losses_are_close(compression):
  rounds = compression_rounds(compression)
  metrics = [parse(m[2]) for m in rounds]
  for x in metrics:  # TFF's Keras metrics, in TFF's order, and TFF's (after 0.89) drop count.
    assert list(x) == ["sparse_categorical_accuracy", "loss", "num_examples", "num_batches",
                       "num_non_finite_clients"]
    assert x["num_non_finite_clients"] == 0
    assert 1.5 < x["loss"] < 3.0 and 0.0 <= x["sparse_categorical_accuracy"] <= 1.0
  original, compressed = metrics[:FAST_ROUNDS], metrics[FAST_ROUNDS:]
  # The same clients, batches and initial weights: round 0 trains from the same model.
  assert [x["num_examples"] for x in original] == [x["num_examples"] for x in compressed]
  assert original[0]["loss"] == compressed[0]["loss"]
  printed = re.findall(r"^round +(\d+), loss: original=([\d.]+), compression=([\d.]+)$",
                       compression, re.M)
  assert [int(r) for r, _, _ in printed] == list(range(FAST_ROUNDS))
  for (_, a, b), x, y in zip(printed, original, compressed):
    assert (float(a), float(b)) == pytest.approx((x["loss"], y["loss"]), abs=1e-4)
    assert abs(float(a) - float(b)) < 0.01  # 8-bit updates: about the same training.
  assert "True" in compression.splitlines()  # A weighted aggregation factory.


def test_compression_tensorboard_logs(compression):
  logs = RUN_DIRS[COMPRESSION] / "logs" / "scalars"
  for run_name in ["original", "compression"]:
    assert list((logs / run_name).glob("events.out.tfevents.*")), run_name
