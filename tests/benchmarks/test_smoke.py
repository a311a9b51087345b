"""The benchmark harnesses run end to end on tiny sizes, so they never rot."""

import pathlib
import subprocess
import sys

import jax
import jaxlib
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_benchmark(module: str, *args: str) -> str:
  result = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--smoke", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "smoke ok" in result.stdout
  return result.stdout


@pytest.mark.slow
def test_core_round_benchmark_agrees_with_the_floor():
  run_benchmark("core_round")  # Its smoke mode asserts federax == the hand-written floor.


@pytest.mark.slow
def test_data_pipeline_benchmark():
  out = run_benchmark("data_pipeline")
  assert "| masked_batch+to_stacked | 2 |" in out
  assert "peak RSS (VmHWM)" in out
  assert "tf.data:" in out


@pytest.mark.slow
def test_data_pipeline_benchmark_without_shared_data(tmp_path):
  run_benchmark("data_pipeline", "--data-dir", str(tmp_path / "absent"))


@pytest.mark.slow
def test_programs_overhead_benchmark(shared_data):
  out = run_benchmark("programs_overhead")
  assert "| run_training_process |" in out and "program-layer overhead" in out


@pytest.mark.slow
def test_first_round_benchmark_warm_process_compiles_nothing():
  out = run_benchmark("first_round")  # Its smoke mode asserts the warm process compiled nothing.
  assert "| W3 | warm |" in out


@pytest.mark.slow
@pytest.mark.skipif(jax.default_backend() != "cpu" or not jaxlib.__version__.startswith("0.10."),
                    reason="YNNPACK's fusions as measured: jaxlib 0.10 on CPU")
def test_xla_options_benchmark_compiles_convolutions_without_ynnpack():
  run_benchmark("xla_options")  # Its smoke mode asserts where the convolutions went.


def test_tff_way_rounds_benchmark_agrees_with_masked_batch_and_the_floor(shared_data):
  # Smoke mode fails on any FallbackWarning, and asserts the TFF-way rounds equal masked_batch's
  # and one client's round equals the floors.
  out = run_benchmark("tff_way_rounds", "--data-dir", str(shared_data))
  assert '"max_rel_diff_vs_masked"' in out and "x the floor" in out


@pytest.mark.slow
def test_aggregators_benchmark():
  # A weighted and an unweighted rule: the same code path as the others, which the
  # conformance tests (tests/aggregators/test_conformance.py) run on every aggregator.
  out = run_benchmark("aggregators", "--aggregators", "robust,median")
  for name in ("mean", "robust", "median"):
    assert f"| mlp-smoke | {name} |" in out


@pytest.mark.slow
def test_aggregator_pieces_benchmark():
  out = run_benchmark("aggregator_pieces")
  for name in ("mean_sum", "norms_one_pass", "norms_loop", "extremes_one_pass", "secure_sum",
               "compression_loop", "compression_extremes"):
    assert f"| {name} |" in out


@pytest.mark.slow
def test_client_reductions_benchmark():
  assert "| 4 | 5000 |" in run_benchmark("client_reductions")


@pytest.mark.slow
def test_privacy_accountant_benchmark():
  out = run_benchmark("privacy_accountant")  # Its smoke mode asserts restore == round by round.
  assert "| RDP |" in out and "| PLD |" in out and "round 10 (ms)" in out


@pytest.mark.slow
def test_histograms_benchmark():
  out = run_benchmark("histograms")  # Its smoke mode checks the no-noise tree against NumPy.
  for name in ("histogram no-noise", "histogram central-gaussian", "hyperloglog"):
    assert f"| {name} |" in out


@pytest.mark.slow
def test_dp_rounds_benchmark():
  out = run_benchmark("dp_rounds")
  for name in ("fedavg", "dp_aggregator", "gaussian_fixed", "tree_aggregation", "local_dp"):
    assert f"| mlp-smoke | {name} |" in out
  assert "target <= 1.1x:" in out


@pytest.mark.slow
def test_fed_recon_benchmark(shared_data):
  out = run_benchmark("fed_recon")  # 5 clients, 2 rounds, federax only.
  assert "| clients/round | federax s/round | TFF s/round |" in out and "| 5 |" in out


def test_sparse_benchmark():
  out = run_benchmark("sparse")  # Tiny table; asserts the sparse round == the dense one.
  assert "| sparse | 2,000 x 64 | 20 | 3 |" in out and "| dense | 2,000 x 64 | 20 | 3 |" in out


@pytest.mark.slow
def test_ray_runtime_benchmark(shared_data):
  pytest.importorskip("ray")
  # Its smoke mode asserts each Ray contender's round gives the vectorized weights.
  out = run_benchmark("ray_runtime", "--data-dir", str(shared_data))
  assert "| ray-2-ids |" in out and "serialization" in out


@pytest.mark.slow
def test_ray_scale_benchmark():
  pytest.importorskip("ray")
  # Its smoke mode asserts the first round on Ray gives the vectorized round's weights.
  out = run_benchmark("ray_scale")
  assert "| driver RSS growth |" in out and "| last / first |" in out
  assert "round   6:" in out
