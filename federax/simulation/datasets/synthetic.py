"""FedProx's Synthetic(alpha, beta) and Synthetic-IID federated classification data.

From Li et al., "Federated Optimization in Heterogeneous Networks" (MLSys 2020), Section 5.1,
following the authors' generator (litian96/FedProx, data/synthetic_*/generate_synthetic.py and
data/synthetic_iid/generate_iid.py). For device k:

    u_k ~ N(0, alpha^2),  B_k ~ N(0, beta^2)
    W_k [classes x features], b_k [classes]: entries ~ N(u_k, 1)
    v_k [features]: entries ~ N(B_k, 1)
    x ~ N(v_k, Sigma),  Sigma diagonal with Sigma_jj = j^(-1.2) (j = 1..features)
    y = argmax(softmax(W_k x + b_k))

The paper writes N(0, alpha); the reference code draws `np.random.normal(0, alpha)`, i.e. alpha
is the standard deviation, and so does this module (they agree for alpha in {0, 1}). Device k
holds `int(lognormal(4, 2)) + 50` examples, the first 90% for train and the rest for test, as
in the reference code. Synthetic-IID shares one W, b ~ N(0, 1) and v = 0 across devices.
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

import numpy as np

TRAIN_FRACTION = 0.9


class SyntheticParams(NamedTuple):
  """The generating parameters, one row per client (in `client_ids` order).

  Attributes:
    client_ids: 'f_00000', 'f_00001', ... (the reference code's user names).
    u: [clients] prior means of W and b.
    B: [clients] prior means of v.
    W: [clients, classes, features].
    b: [clients, classes].
    v: [clients, features], the mean of x.
    sigma_diag: [features], the variance of each feature of x.
    num_samples: [clients], examples per client (train + test).
  """

  client_ids: list[str]
  u: np.ndarray
  B: np.ndarray
  W: np.ndarray
  b: np.ndarray
  v: np.ndarray
  sigma_diag: np.ndarray
  num_samples: np.ndarray


def generate_params(alpha: float, beta: float, num_clients: int = 30, seed: int = 0,
                    num_features: int = 60, num_classes: int = 10,
                    iid: bool = False) -> SyntheticParams:
  """Draws the per-client generating parameters of Synthetic(alpha, beta) (or Synthetic-IID).

  Raises:
    ValueError: if alpha or beta is negative, or a count is not positive.

  Example:
    >>> generate_params(1.0, 1.0, num_clients=5).W.shape
    (5, 10, 60)
  """
  if alpha < 0 or beta < 0:
    raise ValueError(f"alpha and beta are standard deviations and must be >= 0, got "
                     f"alpha={alpha}, beta={beta}.")
  for name, value in (("num_clients", num_clients), ("num_features", num_features),
                      ("num_classes", num_classes)):
    if int(value) != value or value < 1:
      raise ValueError(f"{name} must be a positive integer, got {value!r}.")
  rng = np.random.default_rng([seed, 0])
  num_samples = rng.lognormal(4, 2, num_clients).astype(np.int64) + 50
  sigma_diag = np.arange(1, num_features + 1, dtype=np.float64) ** -1.2
  if iid:
    u = B = np.zeros(num_clients)
    W = np.broadcast_to(rng.normal(0, 1, (num_classes, num_features)),
                        (num_clients, num_classes, num_features)).copy()
    b = np.broadcast_to(rng.normal(0, 1, num_classes), (num_clients, num_classes)).copy()
    v = np.zeros((num_clients, num_features))
  else:
    u = rng.normal(0, alpha, num_clients)
    B = rng.normal(0, beta, num_clients)
    v = rng.normal(B[:, None], 1, (num_clients, num_features))
    W = rng.normal(u[:, None, None], 1, (num_clients, num_classes, num_features))
    b = rng.normal(u[:, None], 1, (num_clients, num_classes))
  client_ids = [f"f_{k:05d}" for k in range(num_clients)]
  return SyntheticParams(client_ids, u, B, W, b, v, sigma_diag, num_samples)


def generate_client(params: SyntheticParams, k: int, seed: int = 0
                    ) -> collections.OrderedDict[str, np.ndarray]:
  """All of client k's examples: `x` float32[n, features], `y` int32[n] (train rows first).

  Each client has its own random stream, so a client's data does not depend on which other
  clients were generated, or in which order.
  """
  rng = np.random.default_rng([seed, 1, k])
  n = int(params.num_samples[k])
  x = params.v[k] + rng.standard_normal((n, params.v.shape[1])) * np.sqrt(params.sigma_diag)
  x = x.astype(np.float32)
  # Labels from the float32 values handed out, so that they can be recomputed exactly.
  logits = x.astype(np.float64) @ params.W[k].T + params.b[k]
  return collections.OrderedDict(x=x, y=np.argmax(logits, axis=1).astype(np.int32))


def load_data(alpha: float, beta: float, num_clients: int = 30, seed: int = 0,
              num_features: int = 60, num_classes: int = 10, iid: bool = False,
              return_params: bool = False) -> tuple[Any, ...]:
  """FedProx's Synthetic(alpha, beta) as (train, test) `ClientData`, generated lazily.

  Args:
    alpha: spread of the per-client models (standard deviation of u_k).
    beta: spread of the per-client input means (standard deviation of B_k).
    num_clients: number of devices (the reference code uses 30).
    seed: all randomness derives from it.
    num_features: dimension of x (60 in the paper).
    num_classes: number of labels (10 in the paper).
    iid: Synthetic-IID (alpha and beta are then ignored).
    return_params: also return the `SyntheticParams`.

  Returns:
    `(train, test)` or `(train, test, params)`; elements `OrderedDict(x=float32[features],
    y=int32[])`. A client's examples are generated when its dataset is first created.

  Raises:
    ValueError: if alpha or beta is negative, or a count is not positive.

  Example:
    >>> synthetic = fx.simulation.datasets.synthetic
    >>> train, test = synthetic.load_data(1.0, 1.0, num_clients=30, seed=0)   # Synthetic(1,1)
    >>> train_iid, test_iid = synthetic.load_data(0, 0, iid=True)              # Synthetic-IID
    >>> len(train.client_ids)
    30
  """
  from federax.simulation.client_data import ClientData  # pylint: disable=g-import-not-at-top
  from federax.data import Dataset  # pylint: disable=g-import-not-at-top
  from federax.data._elements import frozen  # pylint: disable=g-import-not-at-top

  params = generate_params(alpha, beta, num_clients, seed, num_features, num_classes, iid)
  index = {c: k for k, c in enumerate(params.client_ids)}

  def split(train: bool):
    def create_dataset(client_id: str) -> Dataset:
      k = index[client_id]
      data = generate_client(params, k, seed)
      cut = int(TRAIN_FRACTION * params.num_samples[k])
      part = slice(None, cut) if train else slice(cut, None)
      return Dataset.from_tensor_slices(frozen(
          collections.OrderedDict((name, a[part]) for name, a in data.items())))
    return ClientData.from_clients_and_fn(params.client_ids, create_dataset)

  result = (split(True), split(False))
  return result + (params,) if return_params else result
