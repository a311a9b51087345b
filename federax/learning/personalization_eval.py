"""`build_personalization_eval_computation`: evaluates personalization strategies on clients
(TFF's `tff.learning.algorithms.build_personalization_eval_computation`)."""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from typing import Any, Optional

from federax.aggregators import UnweightedReservoirSamplingFactory
from federax.core import intrinsics as fi
from federax.core import types as t
from federax.core.computations import Computation, federated_computation
from federax.core.errors import error
from federax.core.placements import CLIENTS, SERVER
from federax.core.type_conversions import to_type, type_of
from federax.learning._resolve import resolve_model

_NAME = "build_personalization_eval_computation"
_BASELINE = "baseline_metrics"


def build_personalization_eval_computation(
    model_fn: Any, personalize_fn_dict: Mapping[str, Callable[[], Callable]],
    baseline_evaluate_fn: Callable, max_num_clients: int = 100,
    context_tensor_specs: Optional[Any] = None) -> Computation:
  """Evaluates the broadcast model and each personalization strategy on every client.

  Each client gets the server's model weights and `<train_data, test_data>`; it computes
  `baseline_evaluate_fn(model, weights, test_data)` and, for every `name` in
  `personalize_fn_dict`, `personalize_fn_dict[name]()(model, weights, train_data,
  test_data)` (a strategy trains from the broadcast weights on `train_data` and evaluates on
  `test_data`). The metrics of at most `max_num_clients` clients, sampled uniformly without
  replacement (`UnweightedReservoirSamplingFactory`), reach the server.

  The functions are traced once, inside the client computation: they receive `model` (the
  `FunctionalModel`), the weights (`ModelWeights`) and the datasets as sequences, and are
  written with `fx.sequence_reduce` and `fx.computation`s like any client computation; each
  returns a (nested) dict of scalars.

  Args:
    model_fn: a `FunctionalModel` or a no-argument function returning one.
    personalize_fn_dict: an ordered mapping from strategy names to no-argument functions that
      build the strategies (TFF's form).
    baseline_evaluate_fn: `(model, weights, test_data) -> metrics` of the broadcast model.
    max_num_clients: the most clients whose metrics are collected (an int > 0).
    context_tensor_specs: not supported (None): no per-client context is passed.

  Returns:
    A federated computation `(<model_weights=W@SERVER, client_input={<train_data=B*,
    test_data=B*>}@CLIENTS> -> M@SERVER)`, `B` the model's `input_spec` (batched) and `M`
    `OrderedDict(baseline_metrics=..., <name>=... for each strategy)` whose every metric is
    stacked over the sampled clients: `float32[max_num_clients]`, entry `i` of every metric
    from the same client.

  Raises:
    TypeError: for a `personalize_fn_dict` that is not a mapping of str to functions, or
      `max_num_clients` not an int.
    ValueError: if `baseline_metrics` is a strategy name or `max_num_clients <= 0`.

  Differences from TFF: the client datasets are batched as the model's `input_spec` (TFF
  passes unbatched datasets and lets each strategy batch), since batching happens where the
  data is read, not inside a compiled computation; with fewer than `max_num_clients` clients,
  the metrics have `max_num_clients` rows of which the last are zeros (TFF's have `n` rows).

  Example:
    >>> from federax.simulation.baselines import synthetic
    >>> model = synthetic.create_logistic_regression_model()
    >>> def evaluate(model, weights, data):
    ...   count = fx.computation(lambda n, batch: n + batch['mask'].sum().astype(np.int32))
    ...   return collections.OrderedDict(num_test_examples=fx.sequence_reduce(
    ...       data, np.int32(0), count))
    >>> def build_no_op():
    ...   return lambda model, weights, train, test: evaluate(model, weights, test)
    >>> personalization_eval = fx.learning.build_personalization_eval_computation(
    ...     model, collections.OrderedDict(no_op=build_no_op), evaluate, max_num_clients=5)
  """
  model = resolve_model(model_fn, _NAME)
  if not isinstance(personalize_fn_dict, Mapping) or not all(
      isinstance(k, str) and callable(v) for k, v in personalize_fn_dict.items()):
    raise error(TypeError, _NAME, "personalize_fn_dict must map strategy names (str) to "
                "no-argument functions that build the strategies.",
                actual=repr(personalize_fn_dict)[:200])
  if _BASELINE in personalize_fn_dict:
    raise error(ValueError, _NAME, f"{_BASELINE!r} should not be used as a key in "
                "personalize_fn_dict: it holds the baseline's metrics.",
                actual=list(personalize_fn_dict), hint="rename that strategy")
  if isinstance(max_num_clients, bool) or not isinstance(max_num_clients, int):
    raise error(TypeError, _NAME, "max_num_clients must be an int.", actual=repr(max_num_clients))
  if max_num_clients <= 0:
    raise error(ValueError, _NAME, "max_num_clients must be a positive integer.",
                actual=max_num_clients)
  if context_tensor_specs is not None:
    raise error(ValueError, _NAME, "context_tensor_specs is not supported.",
                actual=repr(context_tensor_specs), hint="pass None")
  weights_type = type_of(model.initial_weights)
  batch_type = to_type(model.input_spec)
  client_input_type = to_type(collections.OrderedDict(
      train_data=t.SequenceType(batch_type), test_data=t.SequenceType(batch_type)))
  strategies = collections.OrderedDict(
      (name, build()) for name, build in personalize_fn_dict.items())

  @federated_computation(weights_type, client_input_type)
  def client_computation(weights, client_input):
    metrics = collections.OrderedDict()
    metrics[_BASELINE] = baseline_evaluate_fn(model, weights, client_input["test_data"])
    for name, strategy in strategies.items():
      metrics[name] = strategy(model, weights, client_input["train_data"],
                               client_input["test_data"])
    return metrics

  sampling = UnweightedReservoirSamplingFactory(max_num_clients).create(
      client_computation.type_signature.result)

  @federated_computation(t.FederatedType(weights_type, SERVER),
                         t.FederatedType(client_input_type, CLIENTS))
  def personalization_eval(server_model_weights, federated_client_input):
    metrics = fi.federated_map(client_computation, (
        fi.federated_broadcast(server_model_weights), federated_client_input))
    return sampling.next(sampling.initialize(), metrics).result

  return personalization_eval
