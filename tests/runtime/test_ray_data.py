"""Data where it lives: `fx.runtime.ClientIds` sends client ids to the Ray workers, which load
(and keep) their clients; the driver never loads a client, the workers load each once across
rounds, and a FedAvg round gives the vectorized runtime's result. `schedule` balances examples
and keeps clients where they are cached."""

import collections
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, ModelWeights
from federax.runtime.distributed import execution as ex
from federax.runtime.distributed.data import schedule

FEATURES, CLASSES, BATCH = 4, 3, 5
SPEC = collections.OrderedDict(x=(np.float32, [BATCH, FEATURES]), y=(np.int32, [BATCH]),
                               mask=(np.bool_, [BATCH]))
DRIVER = os.getpid()
IDS = [f"client-{i}" for i in range(8)]
SIZES = [3, 12, 7, 5, 9, 4, 11, 6]  # Examples per client.


def load(client_id, *, driver=None):
  """A client's batches, generated from its id (as if read from a disk of its own); refuses
  to run in process `driver`."""
  if os.getpid() == driver:
    raise AssertionError(f"the driver loaded {client_id}")
  i = IDS.index(client_id)
  rng = np.random.default_rng(100 + i)
  x = rng.normal(size=(SIZES[i], FEATURES)).astype(np.float32)
  y = rng.integers(0, CLASSES, SIZES[i]).astype(np.int32)
  batches = []
  for start in range(0, SIZES[i], BATCH):
    real = min(BATCH, SIZES[i] - start)
    batches.append(collections.OrderedDict(
        x=np.pad(x[start:start + BATCH], ((0, BATCH - real), (0, 0))),
        y=np.pad(y[start:start + BATCH], (0, BATCH - real)), mask=np.arange(BATCH) < real))
  return batches


# The driver's pid travels by value (a worker importing this module gets its own DRIVER).
load_on_workers = functools.partial(load, driver=DRIVER)


def process():
  def predict(weights, x, training):
    kernel, bias = weights.trainable
    return x @ kernel + bias

  def loss_fn(logits, labels, sample_weight):
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
    return jnp.sum(losses * sample_weight) / jnp.maximum(jnp.sum(sample_weight), 1.0)

  rng = np.random.default_rng(0)
  weights = ModelWeights([rng.normal(size=(FEATURES, CLASSES)).astype(np.float32) * 0.3,
                          np.zeros(CLASSES, np.float32)], [])
  model = FunctionalModel(initial_weights=weights, predict_on_batch_fn=predict, loss_fn=loss_fn,
                          input_spec=SPEC)
  return algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.3),
                                           optimizers.build_sgdm(1.0))


def _array_bytes(x) -> int:
  if isinstance(x, (np.ndarray, jax.Array)):
    return x.nbytes
  if isinstance(x, (list, tuple)):
    return sum(map(_array_bytes, x))
  if isinstance(x, dict):
    return sum(map(_array_bytes, x.values()))
  return 0


def _loads(runtime) -> int:
  workers = runtime._pool.take(runtime.num_workers, 60)
  return sum(i["loads"] for i in runtime._get([w.cache_info.remote() for w in workers]))


def test_client_ids_load_on_the_workers_once_and_match_vectorized(ray_runtimes, monkeypatch):
  proc = process()
  sent = collections.Counter()
  real_send = ex.RayExecution._send

  def send(self, k, method, args, **kw):  # What the driver sends the workers, by operation.
    sent[method] += _array_bytes(args)
    sent[method + " calls"] += 1
    return real_send(self, k, method, args, **kw)

  monkeypatch.setattr(ex.RayExecution, "_send", send)
  with fx.runtime.vectorized():
    state = proc.initialize()
    expected = [proc.next(state, [load(c) for c in IDS])]
    expected.append(proc.next(expected[0].state, [load(c) for c in IDS]))
  runtime = fx.runtime.ray(num_workers=2)
  cohort = fx.runtime.ClientIds(IDS, load_on_workers, num_examples=SIZES)
  before = _loads(runtime)
  with runtime:
    state = proc.initialize()
    first = proc.next(state, cohort)
    after_first = _loads(runtime)
    second = proc.next(first.state, fx.runtime.ClientIds(IDS[::-1], load_on_workers,
                                                         num_examples=SIZES[::-1]))
  assert after_first - before == len(IDS)  # Each client loaded once, on a worker ...
  assert _loads(runtime) == after_first  # ... and kept there for the next round.
  assert sent["put_ids calls"] == 4 and sent["put calls"] == 0
  sent_bytes = {k: v for k, v in sent.items() if not k.endswith("calls") and v}
  # No client array: the round's PRNG key (2 uint32) per worker and round, and the broadcasts
  # (small ones, as the model's weights here, travel in the call; larger ones by the object
  # store).
  assert sent_bytes.pop("client_keys") == 2 * 2 * 2 * 4 and set(sent_bytes) <= {"put_shared"}
  for got, want in zip((first, second), expected):
    for w, e in zip(proc.get_model_weights(got.state).trainable,
                    proc.get_model_weights(want.state).trainable):
      np.testing.assert_allclose(w, e, rtol=1e-5, atol=1e-6)
    train = got.metrics["client_work"]["train"]
    assert int(train["num_examples"]) == sum(SIZES)
    np.testing.assert_allclose(train["loss"], want.metrics["client_work"]["train"]["loss"],
                               rtol=1e-5)


@fx.computation(fx.SequenceType(SPEC))
def examples(data):
  return data.reduce(np.int32(0), lambda n, b: n + jnp.sum(b["mask"].astype(np.int32)))


@fx.federated_computation(fx.FederatedType(fx.SequenceType(SPEC), fx.CLIENTS))
def count(data):
  return fx.federated_sum(fx.federated_map(examples, data))


def test_client_data_as_a_list_is_sent_by_the_driver(ray_runtimes, monkeypatch):
  """The contrast: a list of datasets travels from the driver (so the check above bites)."""
  sent = collections.Counter()
  real_send = ex.RayExecution._send
  monkeypatch.setattr(ex.RayExecution, "_send", lambda self, k, method, args, **kw: (
      sent.update({method: _array_bytes(args)}), real_send(self, k, method, args, **kw))[1])

  with ray_runtimes[2]:
    assert int(count([load(c) for c in IDS])) == sum(SIZES)
    for _ in range(2):  # Again: the workers reuse the converted blocks of these clients.
      assert int(count(fx.runtime.ClientIds(IDS, load_on_workers))) == sum(SIZES)
  assert sent["put"] >= sum(SIZES) * FEATURES * 4 and sent["put_ids"] == 0


def test_schedule_balances_examples_and_keeps_cached_clients():
  sizes = [10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]  # 20 examples on 2 workers.
  blocks = schedule(sizes, [-1] * len(sizes), 2)
  assert sorted(sum(sizes[i] for i in b) for b in blocks) == [10, 10]
  assert sorted(np.concatenate(blocks).tolist()) == list(range(len(sizes)))
  holders = [1] + [0] * 10  # Cached on a balanced split (not the one schedule would make).
  kept = schedule(sizes, holders, 2)
  assert [b.tolist() for b in kept] == [list(range(1, 11)), [0]]
  # A holder past its share gives clients up: all cached on worker 0 still splits evenly.
  moved = schedule(sizes, [0] * len(sizes), 2)
  assert max(sum(sizes[i] for i in b) for b in moved) <= 1.25 * 10
  assert len(moved) == 2
  # Clients of one size: blocks of even sizes, whoever holds them (a new block size would
  # compile a new program on its worker), the cached clients kept where there is room.
  even = schedule([20] * 8, [0, 0, 0, 0, 0, -1, -1, 1], 2)
  assert [b.tolist() for b in even] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_the_drivers_map_of_cached_clients_is_bounded(ray_runtimes, monkeypatch):
  """The driver remembers which worker loaded which client for no more clients than the
  workers keep (`worker.CLIENTS_KEPT` each, here 1): a population of any size leaves its
  memory flat."""
  from federax.runtime.distributed import runtime as ray_runtime
  monkeypatch.setattr(ray_runtime, "CLIENTS_KEPT", 1, raising=False)
  runtime = ray_runtimes[2]
  with runtime:
    for cohort in (IDS[:4], IDS[4:]):
      sizes = [SIZES[IDS.index(c)] for c in cohort]
      assert int(count(fx.runtime.ClientIds(cohort, load_on_workers))) == sum(sizes)
  cached = runtime._pool.cached
  assert len(cached) == len(runtime._pool.actors) < len(IDS)
  assert {c for _, c in cached} <= set(IDS[4:])  # The latest scheduled.


def test_client_ids_misuse():
  with pytest.raises(TypeError, match="load_fn must be callable"):
    fx.runtime.ClientIds(IDS, "not a function")
  with pytest.raises(ValueError, match="num_examples must give each client's number"):
    fx.runtime.ClientIds(IDS, load, num_examples=[1, 2])
