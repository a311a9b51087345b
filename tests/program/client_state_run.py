"""A tiny SCAFFOLD run with an on-disk client state store, for the kill -9 / resume test.

Run as a script: `python client_state_run.py CHECKPOINT_DIR STORE_DIR TOTAL_ROUNDS [SLEEP]`.
"""

import collections
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import federax as fx
from federax.learning.models import FunctionalModel, ModelWeights

FEATURES, CLASSES, BATCH, POPULATION, COHORT = 3, 2, 4, 12, 4
SPEC = collections.OrderedDict(x=(np.float32, [BATCH, FEATURES]), y=(np.int32, [BATCH]),
                               mask=(np.bool_, [BATCH]))


def _loss(logits, labels, sample_weight):
  losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
  return jnp.sum(losses * sample_weight) / jnp.maximum(jnp.sum(sample_weight), 1.0)


def model():
  rng = np.random.default_rng(0)
  weights = ModelWeights([rng.normal(size=(FEATURES, CLASSES)).astype(np.float32),
                          np.zeros(CLASSES, np.float32)], [])
  return FunctionalModel(initial_weights=weights, loss_fn=_loss, input_spec=SPEC,
                         predict_on_batch_fn=lambda w, x, training: x @ w.trainable[0]
                         + w.trainable[1])


class Population:
  """A `ClientPopulation`: client k has 4 + k % 5 examples shifted by k / 4 (non-IID)."""

  client_ids = [f"client_{k:02d}" for k in range(POPULATION)]

  def create_dataset(self, client_id):
    k = int(client_id[-2:])
    rng = np.random.default_rng(k)
    n = 4 + k % 5
    x = (rng.normal(size=(n, FEATURES)) + k / 4).astype(np.float32)
    y = rng.integers(0, CLASSES, n).astype(np.int32)
    out = []
    for s in range(0, n, BATCH):
      real = min(BATCH, n - s)
      out.append(collections.OrderedDict(
          x=np.pad(x[s:s + BATCH], ((0, BATCH - real), (0, 0))),
          y=np.pad(y[s:s + BATCH], (0, BATCH - real)), mask=np.arange(BATCH) < real))
    return out


class SlowProcess(fx.program.ClientStateProcess):
  """Sleeps after each round's states are stored, before its checkpoint: a kill then leaves the
  on-disk store a round ahead of the latest checkpoint."""

  sleep = 0.0

  def next(self, state, client_data):
    output = super().next(state, client_data)
    time.sleep(self.sleep)
    return output


def run(checkpoint_dir, store_dir, total_rounds, sleep=0.0):
  process = fx.learning.algorithms.build_scaffold(model(), client_learning_rate=0.1,
                                                 num_total_clients=POPULATION)
  store = fx.program.ClientStateStore(process.initial_client_state(), directory=store_dir,
                                      num_shards=3)
  runner = SlowProcess(process, store)
  runner.sleep = sleep
  select = fx.program.build_client_selection_fn(Population(), COHORT, seed=3)
  manager = fx.program.FileProgramStateManager(checkpoint_dir, keep_total=0)
  state = fx.program.run_training_process(runner, select, total_rounds,
                                          program_state_manager=manager)
  return runner, state, manager


if __name__ == "__main__":
  run(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4
      else 0.0)
