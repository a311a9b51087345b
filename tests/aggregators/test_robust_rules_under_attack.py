"""The robust rules under attack: FedAvg on FEMNIST digits, 20% of each round's clients sending
their update sign-flipped and scaled by 10. The plain mean collapses; the robust rules stay
within a few points of the clean run. Run with `-s` to see the accuracies."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights

WRITERS, PER_ROUND, ROUNDS, BATCH, MAX_BATCHES = 60, 20, 15, 20, 4
ATTACKERS, SCALE = 0.2, 10.0
SPEC = collections.OrderedDict(x=(np.float32, [BATCH, 784]), y=(np.int32, [BATCH]),
                               mask=(np.bool_, [BATCH]))


class SignFlipAttack(fx.aggregators.UnweightedAggregationFactory):
  """Wraps a factory: in each round, `round(fraction * n)` clients, drawn afresh by per-client
  PRNG keys, send `-scale` times their value. Measurements `<num_attackers, inner>`.

  Each client draws a uniform number from its key; the server stacks the draws and sends back
  the `k`-th smallest, and the clients at or below it attack: exactly `k` of them."""

  def __init__(self, inner, fraction=ATTACKERS, scale=SCALE, seed=0):
    self._inner, self._fraction, self._scale, self._seed = inner, fraction, scale, seed

  def create(self, value_type):
    inner = self._inner.create(value_type)
    key_type = fx.TensorType(np.uint32, [2])

    @fx.computation
    def first_key():
      return jax.random.PRNGKey(self._seed)

    @fx.computation(key_type)
    def split(key):
      return tuple(jax.random.split(key))

    @fx.computation(key_type)
    def draw(key):
      return jax.random.uniform(key)

    @fx.computation(fx.TensorType(np.float32, [None]))
    def cut(draws):
      k = int(round(self._fraction * draws.shape[0]))
      return jnp.sort(draws)[k - 1] if k else jnp.float32(-1.0)

    @fx.computation(value_type, np.float32, np.float32)
    def attack(value, drawn, threshold):
      factor = jnp.where(drawn <= threshold, -self._scale, 1.0)
      return jax.tree_util.tree_map(lambda x: x * factor.astype(x.dtype), value)

    @fx.computation(np.float32, np.float32)
    def attacks(drawn, threshold):
      return (drawn <= threshold).astype(jnp.int32)

    @fx.federated_computation
    def initialize():
      return fx.federated_zip(collections.OrderedDict(
          key=fx.federated_eval(first_key, fx.SERVER), inner=inner.initialize()))

    @fx.federated_computation(initialize.type_signature.result,
                              fx.FederatedType(value_type, fx.CLIENTS))
    def next_fn(state, value):
      keys = fx.federated_map(split, state.key)
      drawn = fx.federated_map(draw, fx.federated_client_keys(keys[1]))
      threshold = fx.federated_broadcast(fx.federated_map(cut, fx.federated_stack(drawn)))
      out = inner.next(state.inner, fx.federated_map(attack, (value, drawn, threshold)))
      return fx.templates.MeasuredProcessOutput(
          state=fx.federated_zip(collections.OrderedDict(key=keys[0], inner=out.state)),
          result=out.result,
          measurements=fx.federated_zip(collections.OrderedDict(
              num_attackers=fx.federated_sum(fx.federated_map(attacks, (drawn, threshold))),
              inner=out.measurements)))

    return fx.templates.AggregationProcess(initialize, next_fn)


def digits(client_data, writer):
  elements = list(client_data.create_dataset(writer).as_numpy_iterator())
  x = np.stack([e["pixels"].reshape(784) for e in elements]).astype(np.float32)
  y = np.asarray([e["label"] for e in elements], np.int32)
  return 1.0 - x[y < 10], y[y < 10]  # Ink as 1, the background as 0.


def batches(x, y):
  out = []
  for start in range(0, min(len(y), BATCH * MAX_BATCHES), BATCH):
    pad = BATCH - min(BATCH, len(y) - start)
    out.append(collections.OrderedDict(x=np.pad(x[start:start + BATCH], ((0, pad), (0, 0))),
                                       y=np.pad(y[start:start + BATCH], (0, pad)),
                                       mask=np.arange(BATCH) < BATCH - pad))
  return out


@pytest.fixture(scope="module")
def femnist_digits(shared_data):
  from federax.simulation.datasets import femnist
  train, test = femnist.load_data(shared_data / "femnist-leaf" / "flic")
  writers = sorted(train.client_ids)[:WRITERS]
  clients = [batches(*digits(train, w)) for w in writers]
  test_x, test_y = map(np.concatenate, zip(*[digits(test, w) for w in writers]))
  return clients, test_x, test_y


def logistic_regression():
  def predict(weights, x, training):
    kernel, bias = weights.trainable
    return x @ kernel + bias

  def loss_fn(logits, labels, sample_weight):
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
    return jnp.sum(losses * sample_weight) / jnp.maximum(jnp.sum(sample_weight), 1.0)

  weights = ModelWeights([np.zeros((784, 10), np.float32), np.zeros(10, np.float32)], [])
  return FunctionalModel(initial_weights=weights, predict_on_batch_fn=predict, loss_fn=loss_fn,
                         input_spec=SPEC)


def train(aggregator, data):
  clients, test_x, test_y = data
  process = algorithms.build_unweighted_fed_avg(
      logistic_regression(), optimizers.build_sgdm(0.3), optimizers.build_sgdm(1.0),
      model_aggregator=aggregator)
  rng = np.random.default_rng(0)
  state, attackers = process.initialize(), []
  for _ in range(ROUNDS):
    cohort = rng.choice(len(clients), PER_ROUND, replace=False)
    state, metrics = process.next(state, [clients[i] for i in cohort])
    attackers.append(int(metrics["aggregator"].get("num_attackers", 0)))
  kernel, bias = process.get_model_weights(state).trainable
  accuracy = float(np.mean(np.argmax(test_x @ np.asarray(kernel) + np.asarray(bias), 1) == test_y))
  return accuracy, attackers


@pytest.mark.slow  # About 16 s: six trainings of 15 rounds.
def test_robust_rules_keep_fed_avg_accurate_where_the_mean_collapses(femnist_digits):
  aggregators = fx.aggregators
  f = int(round(ATTACKERS * PER_ROUND))
  runs = {
      "clean mean": None,
      "mean": SignFlipAttack(aggregators.UnweightedMeanFactory()),
      "median": SignFlipAttack(aggregators.MedianFactory()),
      "trimmed mean (beta=0.2)": SignFlipAttack(aggregators.TrimmedMeanFactory(ATTACKERS)),
      f"multi-Krum (f={f}, m={PER_ROUND - f})": SignFlipAttack(
          aggregators.KrumFactory(f, num_selected=PER_ROUND - f)),
      "geometric median": SignFlipAttack(aggregators.GeometricMedianFactory()),
  }
  accuracies = {}
  for name, aggregator in runs.items():
    accuracies[name], attackers = train(aggregator, femnist_digits)
    assert attackers == [0 if aggregator is None else f] * ROUNDS
  print(f"\nFEMNIST digits, {ROUNDS} rounds of {PER_ROUND} clients, {f} of them attacking: "
        "test accuracy")
  for name, accuracy in accuracies.items():
    print(f"  {name:32s} {accuracy:.3f}")
  clean = accuracies.pop("clean mean")
  assert clean > 0.65  # The clean run learns.
  assert accuracies.pop("mean") < clean - 0.4  # The attack breaks the mean.
  for name, accuracy in accuracies.items():
    assert accuracy > clean - 0.06, (name, accuracy, clean)
