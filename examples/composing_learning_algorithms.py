"""Composing learning algorithms: FedAvg with client-side gradient clipping, from four blocks.

    python examples/composing_learning_algorithms.py [--rounds 5] [--clip-norm 0.5]

TFF's tutorial "Composing Learning Algorithms", on federax: a custom `ClientWorkProcess` that
clips every local gradient to a global L2 norm, composed with the stock distributor,
aggregator and finalizer by `compose_learning_process`. The data are FedProx's Synthetic(1,1)
(generated, no download) and the model a hand-written multinomial logistic regression.
"""

from __future__ import annotations

import argparse
import collections

import jax
import jax.numpy as jnp
import numpy as np

import federax as fx
from federax import aggregators
from federax.learning import metrics, optimizers, templates
from federax.learning.models import FunctionalModel, ModelWeights
from federax.learning.models import metrics as model_metrics
from federax.simulation.datasets import synthetic

BATCH_SIZE = 10
DIMENSION, CLASSES = 60, 10


def logistic_regression(input_spec) -> FunctionalModel:
  """Multinomial logistic regression 60 -> 10 from zeros, with accuracy."""

  def predict_on_batch(weights, x, training):
    kernel, bias = weights.trainable
    return x @ kernel + bias

  def loss(logits, labels, sample_weight):
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
    return model_metrics.weighted_mean(losses, sample_weight)

  return FunctionalModel(
      initial_weights=ModelWeights([np.zeros((DIMENSION, CLASSES), np.float32),
                                    np.zeros(CLASSES, np.float32)], []),
      predict_on_batch_fn=predict_on_batch, loss_fn=loss,
      metrics_fns=model_metrics.to_metrics_fns([model_metrics.sparse_categorical_accuracy()]),
      input_spec=input_spec)


def build_gradient_clipping_client_work(model: FunctionalModel, optimizer,
                                        clip_norm: float) -> templates.ClientWorkProcess:
  """Local training whose every gradient is scaled to L2 norm at most `clip_norm`."""
  weights_type = fx.type_of(model.initial_weights)
  batch_type = fx.to_type(model.input_spec)
  metrics_type = fx.type_of(model.initialize_metrics_state())

  @fx.computation(weights_type)
  def start(weights):
    return weights, optimizer.initialize(weights.trainable), model.initialize_metrics_state()

  @fx.computation(start.type_signature.result, batch_type)
  def train_on_batch(progress, batch):
    weights, optimizer_state, local_metrics = progress

    def batch_loss(trainable):
      output = model.forward_pass(weights._replace(trainable=trainable), batch, training=True)
      return output.loss, output

    gradients, output = jax.grad(batch_loss, has_aux=True)(weights.trainable)
    norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree_util.tree_leaves(gradients)))
    scale = jnp.minimum(1.0, clip_norm / jnp.maximum(norm, 1e-12))
    gradients = jax.tree_util.tree_map(lambda g: g * scale, gradients)
    optimizer_state, trainable = optimizer.next(optimizer_state, weights.trainable, gradients)
    return (weights._replace(trainable=trainable), optimizer_state,
            model.update_metrics_state(local_metrics, batch, output))

  @fx.computation(start.type_signature.result, weights_type)
  def finish(progress, initial_weights):
    weights, _, local_metrics = progress
    update = jax.tree_util.tree_map(jnp.subtract, initial_weights.trainable, weights.trainable)
    result = templates.ClientResult(update=update,
                                    update_weight=local_metrics["num_examples"].astype(jnp.float32))
    return result, local_metrics

  @fx.federated_computation(weights_type, fx.SequenceType(batch_type))
  def client_update(weights, data):
    return finish(fx.sequence_reduce(data, start(weights), train_on_batch), weights)

  aggregate_metrics = metrics.sum_then_finalize(model.finalize_metrics, metrics_type)

  @fx.federated_computation
  def initialize():
    return fx.federated_value((), fx.SERVER)

  @fx.federated_computation(initialize.type_signature.result,
                            fx.FederatedType(weights_type, fx.CLIENTS),
                            fx.FederatedType(fx.SequenceType(batch_type), fx.CLIENTS))
  def next_fn(state, weights, client_data):
    results, local_metrics = fx.federated_map(client_update, (weights, client_data))
    measurements = fx.federated_zip(
        collections.OrderedDict(train=aggregate_metrics(local_metrics)))
    return fx.templates.MeasuredProcessOutput(state, results, measurements)

  return templates.ClientWorkProcess(initialize, next_fn)


def build_fed_avg_with_clipping(model: FunctionalModel, client_learning_rate: float,
                                clip_norm: float) -> templates.LearningProcess:
  """The four blocks: broadcast, clipped local SGD, example-weighted mean, server SGD 1.0."""
  weights_type = fx.type_of(model.initial_weights)
  return templates.compose_learning_process(
      initial_model_weights_fn=fx.computation(lambda: model.initial_weights),
      model_weights_distributor=templates.build_broadcast_process(weights_type),
      client_work=build_gradient_clipping_client_work(
          model, optimizers.build_sgdm(client_learning_rate), clip_norm),
      model_update_aggregator=aggregators.MeanFactory().create(weights_type.trainable,
                                                               fx.TensorType(np.float32)),
      model_finalizer=templates.build_apply_optimizer_finalizer(optimizers.build_sgdm(1.0),
                                                                weights_type))


def client_datasets(num_clients: int, seed: int):
  train, _ = synthetic.load_data(alpha=1.0, beta=1.0, num_clients=num_clients, seed=seed)
  return [train.create_dataset(c).masked_batch(BATCH_SIZE) for c in train.client_ids]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--clients", type=int, default=10)
  parser.add_argument("--clip-norm", type=float, default=0.5)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  data = client_datasets(args.clients, args.seed)
  process = build_fed_avg_with_clipping(logistic_regression(data[0].element_spec), 0.05,
                                        args.clip_norm)
  print("state:", process.initialize.type_signature.formatted_representation(), sep="\n")
  state = process.initialize()
  for round_num in range(1, args.rounds + 1):
    state, round_metrics = process.next(state, data)
    train = round_metrics["client_work"]["train"]
    print(f"round {round_num}: loss {float(train['loss']):.4f}  "
          f"accuracy {float(train['sparse_categorical_accuracy']):.4f}")
  print("metrics:", round_metrics)


if __name__ == "__main__":
  main()
