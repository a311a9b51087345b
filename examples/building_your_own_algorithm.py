"""Building your own federated learning algorithm: FedAvg from core intrinsics.

    python examples/building_your_own_algorithm.py [--rounds 5]

TFF's tutorial "Building Your Own Federated Learning Algorithm", on federax: the four parts
of FedAvg (client update, server update, broadcast, aggregation) written with
`fx.federated_computation`, `fx.federated_broadcast`, `fx.federated_map`,
`fx.federated_mean` and `fx.sequence_reduce`, around a `fx.learning` model and optimizer,
wrapped in an `fx.templates.IterativeProcess`. As in the tutorial, the server averages the
client models without weights; `build_unweighted_fed_avg` computes the same.
"""

from __future__ import annotations

import argparse

import jax

import federax as fx
from federax.learning import optimizers
from federax.learning.models import FunctionalModel

# Reuse the composing example's model and data (Synthetic(1,1), no download).
from composing_learning_algorithms import client_datasets, logistic_regression


def build_fed_avg(model: FunctionalModel, client_optimizer,
                  server_optimizer) -> fx.templates.IterativeProcess:
  """FedAvg as an `IterativeProcess` over `<weights, server optimizer state>@SERVER`."""
  weights_type = fx.type_of(model.initial_weights)
  batch_type = fx.to_type(model.input_spec)
  trainable_type = weights_type.trainable

  # --- Local computations: plain JAX on one client's (or the server's) values -----------------

  @fx.computation
  def server_init():
    return model.initial_weights, server_optimizer.initialize(model.initial_weights.trainable)

  @fx.computation(weights_type)
  def client_start(weights):
    return weights, client_optimizer.initialize(weights.trainable)

  @fx.computation(client_start.type_signature.result, batch_type)
  def client_step(progress, batch):
    weights, optimizer_state = progress
    gradients = jax.grad(lambda trainable: model.forward_pass(
        weights._replace(trainable=trainable), batch, training=True).loss)(weights.trainable)
    optimizer_state, trainable = client_optimizer.next(optimizer_state, weights.trainable,
                                                       gradients)
    return weights._replace(trainable=trainable), optimizer_state

  @fx.computation(client_start.type_signature.result)
  def client_trainable(progress):
    return progress[0].trainable

  state_type = server_init.type_signature.result

  @fx.computation(state_type, trainable_type)
  def server_update(state, mean_client_trainable):
    weights, optimizer_state = state
    update = jax.tree_util.tree_map(lambda w, c: w - c, weights.trainable, mean_client_trainable)
    optimizer_state, trainable = server_optimizer.next(optimizer_state, weights.trainable, update)
    return weights._replace(trainable=trainable), optimizer_state

  @fx.computation(state_type)
  def weights_of(state):
    return state[0]

  # --- Federated computations: the orchestration -----------------------------------------------

  @fx.federated_computation(weights_type, fx.SequenceType(batch_type))
  def client_update(weights, data):
    return client_trainable(fx.sequence_reduce(data, client_start(weights), client_step))

  @fx.federated_computation
  def initialize_fn():
    return fx.federated_eval(server_init, fx.SERVER)

  @fx.federated_computation(fx.FederatedType(state_type, fx.SERVER),
                            fx.FederatedType(fx.SequenceType(batch_type), fx.CLIENTS))
  def next_fn(state, client_data):
    weights = fx.federated_broadcast(fx.federated_map(weights_of, state))
    client_models = fx.federated_map(client_update, (weights, client_data))
    return fx.federated_map(server_update, (state, fx.federated_mean(client_models)))

  return fx.templates.IterativeProcess(initialize_fn, next_fn)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--clients", type=int, default=10)
  args = parser.parse_args()

  data = client_datasets(args.clients, seed=0)
  model = logistic_regression(data[0].element_spec)
  process = build_fed_avg(model, optimizers.build_sgdm(0.05), optimizers.build_sgdm(1.0))
  print("next:", process.next.type_signature)
  evaluate = fx.learning.algorithms.build_fed_eval(model)
  state = process.initialize()
  for round_num in range(1, args.rounds + 1):
    state = process.next(state, data)
    eval_state = evaluate.set_model_weights(evaluate.initialize(), state[0])
    _, eval_metrics = evaluate.next(eval_state, data)
    current = eval_metrics["client_work"]["eval"]["current_round_metrics"]
    print(f"round {round_num}: loss {float(current['loss']):.4f}  "
          f"accuracy {float(current['sparse_categorical_accuracy']):.4f}")


if __name__ == "__main__":
  main()
