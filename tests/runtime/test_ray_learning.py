"""FedAvg rounds and secure sums on the Ray runtime with 1, 2 and 3 workers: the vectorized
runtime's results (FedAvg to float tolerance, and a float64 NumPy FedAvg; secure sums bit for
bit, and an exact NumPy sum)."""

import collections
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights

_spec = importlib.util.spec_from_file_location(
    "fedavg_reference", pathlib.Path(__file__).parents[1] / "learning" / "reference.py")
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

FEATURES, CLASSES, BATCH = 4, 3, 5
SPEC = collections.OrderedDict(x=(np.float32, [BATCH, FEATURES]), y=(np.int32, [BATCH]),
                               mask=(np.bool_, [BATCH]))


def predict(weights, x, training):
  kernel, bias = weights.trainable
  return x @ kernel + bias


def loss_fn(logits, labels, sample_weight):
  losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
  return jnp.sum(losses * sample_weight) / jnp.maximum(jnp.sum(sample_weight), 1.0)


def model():
  rng = np.random.default_rng(0)
  weights = ModelWeights([rng.normal(size=(FEATURES, CLASSES)).astype(np.float32) * 0.3,
                          rng.normal(size=CLASSES).astype(np.float32) * 0.1], [])
  return FunctionalModel(initial_weights=weights, predict_on_batch_fn=predict, loss_fn=loss_fn,
                         input_spec=SPEC)


def clients(sizes=(7, 12, 3, 5, 9)):
  rng = np.random.default_rng(1)
  out = []
  for n in sizes:
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, n).astype(np.int32)
    batches = []
    for start in range(0, n, BATCH):
      real = min(BATCH, n - start)
      batches.append(collections.OrderedDict(
          x=np.pad(x[start:start + BATCH], ((0, BATCH - real), (0, 0))),
          y=np.pad(y[start:start + BATCH], (0, BATCH - real)), mask=np.arange(BATCH) < real))
    out.append(batches)
  return out


def run_rounds(process, data, rounds=2):
  state = process.initialize()
  for _ in range(rounds):
    state, metrics = process.next(state, data)
  return [np.asarray(w) for w in process.get_model_weights(state).trainable], metrics


@pytest.mark.parametrize("workers", [1, 3])  # 2 workers: every intrinsic's differential test.
def test_fed_avg_rounds_equal_vectorized_and_numpy(workers, ray_runtimes):
  m, data = model(), clients()
  process = algorithms.build_weighted_fed_avg(m, optimizers.build_sgdm(0.3),
                                              optimizers.build_sgdm(0.7))
  with fx.runtime.vectorized():
    expected, expected_metrics = run_rounds(process, data)
  with ray_runtimes[workers]:
    weights, metrics = run_rounds(process, data)
  for w, e in zip(weights, expected):
    np.testing.assert_allclose(w, e, rtol=1e-5, atol=1e-6)
  kernel, bias = (np.asarray(w, np.float64) for w in m.initial_weights.trainable)
  for _ in range(2):
    kernel, bias, _ = reference.fed_avg_round(kernel, bias, data, 0.3, 0.7, True)
  np.testing.assert_allclose(weights[0], kernel, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(weights[1], bias, rtol=1e-5, atol=1e-6)
  train, expected_train = metrics["client_work"]["train"], expected_metrics["client_work"]["train"]
  assert int(train["num_examples"]) == int(expected_train["num_examples"]) == 36
  np.testing.assert_allclose(train["loss"], expected_train["loss"], rtol=1e-5)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_secure_sums_are_bit_for_bit(workers, ray_runtimes):
  rng = np.random.default_rng(5)
  n, bits, modulus = 9, 24, 2**31 - 1  # 9 * (2**24 - 1) fits int32; a plain int32 sum of the
  wide = [rng.integers(0, 2**bits, size=(4,)).astype(np.int32) for _ in range(n)]
  signed = [rng.integers(-2**31, 2**31 - 1, size=(4,)).astype(np.int32) for _ in range(n)]

  @fx.federated_computation(fx.FederatedType((np.int32, [4]), fx.CLIENTS),
                            fx.FederatedType((np.int32, [4]), fx.CLIENTS))
  def secure(a, b):  # signed values mod 2**31 - 1 would overflow.
    return (fx.federated_secure_sum_bitwidth(a, bits),
            fx.federated_secure_modular_sum(b, modulus))

  with fx.runtime.vectorized():
    expected = secure(wide, signed)
  with ray_runtimes[workers]:
    total, modular = secure(wide, signed)
  np.testing.assert_array_equal(total, expected[0])
  np.testing.assert_array_equal(modular, expected[1])
  assert total.dtype == modular.dtype == np.int32
  exact = [sum(int(v[i]) for v in wide) for i in range(4)]
  exact_mod = [sum(int(v[i]) % modulus for v in signed) % modulus for i in range(4)]
  assert total.tolist() == exact and modular.tolist() == exact_mod
