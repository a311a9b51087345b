"""An independent float64 NumPy re-implementation of the algorithms, for a linear softmax model.

Nothing here calls federax: the tests compare federax's compiled rounds against these loops.
"""

import numpy as np


def softmax(logits):
  z = np.exp(logits - logits.max(axis=1, keepdims=True))
  return z / z.sum(axis=1, keepdims=True)


def loss_and_grad(kernel, bias, batch):
  """Masked mean cross-entropy of `softmax(x @ kernel + bias)` and its gradient."""
  x, y = np.asarray(batch["x"], np.float64), np.asarray(batch["y"]).reshape(-1)
  mask = np.asarray(batch["mask"], np.float64)
  n = max(mask.sum(), 1.0)
  p = softmax(x @ kernel + bias)
  loss = -(mask * np.log(p[np.arange(len(y)), y])).sum() / n
  dlogits = p.copy()
  dlogits[np.arange(len(y)), y] -= 1.0
  dlogits *= mask[:, None] / n
  return loss, x.T @ dlogits, dlogits.sum(axis=0), mask.sum()


def local_training(kernel, bias, batches, lr, mu=0.0, momentum=None, accumulators=None):
  """SGD over the batches; with `accumulators` (Mime Lite) the momentum state stays fixed."""
  k, b = kernel.copy(), bias.copy()
  losses, count = [], 0
  for batch in batches:
    loss, gk, gb, n = loss_and_grad(k, b, batch)
    losses.append((loss * n, n))
    count += n
    gk, gb = gk + mu * (k - kernel), gb + mu * (b - bias)
    if accumulators is not None:
      gk, gb = momentum * accumulators[0] + gk, momentum * accumulators[1] + gb
    k, b = k - lr * gk, b - lr * gb
  return kernel - k, bias - b, count, losses


def mean_gradient(kernel, bias, batches):
  sums, count = [np.zeros_like(kernel), np.zeros_like(bias)], 0
  for batch in batches:
    _, gk, gb, n = loss_and_grad(kernel, bias, batch)
    sums[0] += gk * n
    sums[1] += gb * n
    count += n
  return sums[0] / count, sums[1] / count, count


def fed_avg_round(kernel, bias, clients, client_lr, server_lr, weighted=True, mu=0.0):
  """One round of FedAvg (FedProx with mu > 0); returns new weights and the training loss."""
  updates, weights, loss_sum, count = [], [], 0.0, 0
  for batches in clients:
    dk, db, n, losses = local_training(kernel, bias, batches, client_lr, mu)
    updates.append((dk, db))
    weights.append(n if weighted else 1.0)
    loss_sum += sum(l for l, _ in losses)
    count += n
  w = np.asarray(weights, np.float64) / np.sum(weights)
  dk = sum(wi * u[0] for wi, u in zip(w, updates))
  db = sum(wi * u[1] for wi, u in zip(w, updates))
  return kernel - server_lr * dk, bias - server_lr * db, loss_sum / count
