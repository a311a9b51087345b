"""FedPer: base layers by FedAvg against NumPy, personalization layers kept per client and never
in a server value, on both runtimes."""

import jax
import numpy as np
import pytest

import federax as fx
from federax.learning import algorithms, optimizers
from learning.test_scaffold_ditto import COHORTS, gradient, initial64, model, population


class RecordingMean(fx.aggregators.MeanFactory):
  """A MeanFactory that records the type of the values it is asked to aggregate."""

  value_types = []

  def create(self, value_type, weight_type=None):
    RecordingMean.value_types.append(value_type)
    return super().create(value_type, weight_type)


def test_fedper_matches_numpy_and_keeps_heads_local(runtime):
  lr = 0.2
  data = population()
  RecordingMean.value_types.clear()
  process = algorithms.build_fedper(model(), optimizers.build_sgdm(lr), personal_layers=[1],
                                    model_aggregator=RecordingMean())
  # The server aggregates the kernel's delta only: the bias (the head) has no way there.
  assert [str(v) for v in RecordingMean.value_types] == ["<float32[3,2]>"]
  assert str(process.client_state_type) == "<personal_layers=<float32[2]>>"
  runner = fx.program.ClientStateProcess(process)
  state = runner.initialize()
  kernel, bias0 = initial64()
  heads = {}
  for cohort in COHORTS:
    state, metrics = runner.next(state, {k: data[k] for k in cohort})
    deltas, weights = [], []
    for k in cohort:
      w, b = kernel.copy(), heads.get(k, bias0.copy())
      for batch in data[k]:
        gw, gb = gradient(w, b, batch)
        w, b = w - lr * gw, b - lr * gb
      heads[k] = b
      deltas.append(kernel - w)
      weights.append(sum(batch["mask"].sum() for batch in data[k]))
    kernel = kernel - np.average(deltas, axis=0, weights=weights)
    got_kernel, got_bias = process.get_model_weights(state).trainable
    np.testing.assert_allclose(got_kernel, kernel, rtol=2e-5, atol=1e-6)
    # The server's head is the initial one, bit for bit: no client's head reached it.
    np.testing.assert_array_equal(got_bias, model().initial_weights.trainable[1])
    assert metrics["client_work"]["train"]["num_non_finite_clients"] == 0
  for k, expected in heads.items():
    np.testing.assert_allclose(runner.client_state_store.gather([k])[0]["personal_layers"][0],
                               expected, rtol=2e-5, atol=1e-6)
  # Heads differ per client (non-IID data): personalization happened.
  assert not np.allclose(heads["a"], heads["b"])
  # No server value holds a trained head.
  server_leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(state)
                   if np.asarray(x).shape == (2,)]
  assert all(not np.allclose(x, h) for x in server_leaves for h in heads.values())


@pytest.mark.parametrize("layers", [[], [0, 1], [2], "x"])
def test_personal_layers_misuse(layers):
  with pytest.raises(ValueError, match="personal_layers must name some, not all"):
    algorithms.build_fedper(model(), optimizers.build_sgdm(0.1), personal_layers=layers)
