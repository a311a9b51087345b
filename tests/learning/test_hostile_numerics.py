"""Poisoned clients and empty cohorts: a client whose inputs, training loss or update is not
finite is dropped (weight 0, left out of the round's metrics) and counted in
`train.num_non_finite_clients`; cohorts of no clients, or of empty clients only, leave the model
as it was and the round rejected. Both runtimes, against the float64 NumPy reference of
`reference.py`. Labels and inputs that poison silently: test_hostile_inputs.py."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import federax as fx
from federax.learning import algorithms, optimizers
from federax.learning.models import FunctionalModel, metrics

import reference
from test_algorithms import (SPEC, as_float64, linear_model, loss_fn, make_clients, predict,
                             trainable)

COUNT = "num_non_finite_clients"


def poisoned(clients, index, how):
  """A copy of `clients` whose client `index` has one bad value in a real row of batch 0."""
  batches = [collections.OrderedDict((k, np.array(v)) for k, v in b.items())
             for b in clients[index]]
  if how == "label 1000":
    batches[0]["y"][0] = 1000
  else:
    batches[0]["x"][0, 0] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[how]
  return clients[:index] + [batches] + clients[index + 1:]


def test_a_poisoned_client_is_dropped_counted_and_left_out_of_the_metrics(runtime):
  model, clients = linear_model(), make_clients()
  process = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.3),
                                              optimizers.build_sgdm(0.7))
  kernel, bias, loss = reference.fed_avg_round(*as_float64(model), [clients[0], clients[2]],
                                               0.3, 0.7)
  for how in ("nan", "inf", "-inf", "label 1000"):
    state, out = process.next(process.initialize(), poisoned(clients, 1, how))
    train = out["client_work"]["train"]
    assert train[COUNT] == 1 and train[COUNT].dtype == np.int32, how
    np.testing.assert_allclose(train["loss"], loss, rtol=1e-5, err_msg=how)
    assert train["num_examples"] == 7 + 3 and train["num_batches"] == 2 + 1
    assert out["finalizer"]["update_non_finite"] == 0
    np.testing.assert_allclose(trainable(process, state)[0], kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(trainable(process, state)[1], bias, rtol=1e-5, atol=1e-6)
  assert_no_clients_or_only_empty_ones_leave_the_model_and_reject_the_round(process, model)


def assert_no_clients_or_only_empty_ones_leave_the_model_and_reject_the_round(process, model):
  state = process.initialize()
  for cohort in ([], [[], []]):
    new_state, out = process.next(state, cohort)
    for got, want in zip(trainable(process, new_state), as_float64(model)):
      np.testing.assert_array_equal(got, want.astype(np.float32))
    train = out["client_work"]["train"]
    assert (train[COUNT], train["num_examples"], train["num_batches"]) == (0, 0, 0)
    assert train["loss"] == 0.0
    assert out["finalizer"]["update_non_finite"] == 1  # 0 / 0: the round is rejected.


BUILDERS = {
    "fed_sgd": lambda m: algorithms.build_fed_sgd(m, optimizers.build_sgdm(0.5)),
    "mime_lite": lambda m: algorithms.build_weighted_mime_lite(
        m, optimizers.build_sgdm(0.2, momentum=0.9)),
    "robust": lambda m: algorithms.build_weighted_fed_avg(
        m, optimizers.build_sgdm(0.3), model_aggregator=fx.learning.robust_aggregator()),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_algorithm_drops_a_poisoned_client_as_if_it_were_not_there(runtime, name):
  model, clients = linear_model(), make_clients()
  process = BUILDERS[name](model)
  state = process.initialize()
  poisoned_state, poisoned_out = process.next(state, poisoned(clients, 0, "nan"))
  clean_state, clean_out = process.next(state, clients[1:])
  assert poisoned_out["client_work"]["train"][COUNT] == 1
  assert clean_out["client_work"]["train"][COUNT] == 0
  for metric in ("loss", "num_examples", "num_batches"):
    np.testing.assert_allclose(poisoned_out["client_work"]["train"][metric],
                               clean_out["client_work"]["train"][metric], rtol=1e-6)
  for got, want in zip(trainable(process, poisoned_state), trainable(process, clean_state)):
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert_no_clients_or_only_empty_ones_leave_the_model_and_reject_the_round(process, model)


def test_a_model_metric_named_num_non_finite_clients_is_refused():
  counter = metrics.Metric("num_non_finite_clients", lambda: jnp.int32(0),
                           lambda state, *args: state, lambda state: state)
  model = FunctionalModel(initial_weights=linear_model().initial_weights,
                          predict_on_batch_fn=predict, loss_fn=loss_fn, input_spec=SPEC,
                          metrics_fns=metrics.to_metrics_fns([counter]))
  with pytest.raises(ValueError, match=r"build_model_delta_client_work: the model has a metric "
                     r"named 'num_non_finite_clients', which the client work reports itself"):
    algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.1))
  with pytest.raises(ValueError, match=r"build_fed_sgd: the model has a metric named"):
    algorithms.build_fed_sgd(model)


def flat(tree):
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def test_the_runtimes_agree_on_empty_cohorts_and_poisoned_clients():
  model, clients = linear_model(), make_clients()
  cohorts = [[], [[], [], []], poisoned(clients, 1, "inf") + [[]],
             poisoned(poisoned(clients, 0, "nan"), 2, "label 1000")]
  results = {}
  for name in ("vectorized", "sequential"):
    with getattr(fx.runtime, name)():
      process = algorithms.build_weighted_fed_avg(model, optimizers.build_sgdm(0.3))
      state, runs = process.initialize(), []
      for cohort in cohorts:
        state, out = process.next(state, cohort)
        runs.append((flat(out), flat(process.get_model_weights(state))))
      results[name] = runs
  counts = [r[0]["['client_work']['train']['num_non_finite_clients']"]
            for r in results["vectorized"]]
  assert [int(c) for c in counts] == [0, 0, 1, 2]
  for (vec_out, vec_w), (seq_out, seq_w) in zip(results["vectorized"], results["sequential"]):
    assert vec_out.keys() == seq_out.keys()
    for key in vec_out:
      np.testing.assert_allclose(vec_out[key], seq_out[key], rtol=1e-5, err_msg=key)
    for key in vec_w:
      np.testing.assert_allclose(vec_w[key], seq_w[key], rtol=1e-5, atol=1e-6, err_msg=key)
