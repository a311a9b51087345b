"""Tests for FedProx's Synthetic(alpha, beta): the statistics the paper defines, recomputed."""

import numpy as np
import pytest

from federax.simulation.datasets import synthetic


def _stack(dataset):
  elements = list(dataset)
  return (np.stack([e["x"] for e in elements]), np.array([e["y"] for e in elements]))


def test_structure_split_and_labels_from_params():
  train, test, params = synthetic.load_data(1.0, 1.0, num_clients=8, seed=3, return_params=True)
  assert train.client_ids == [f"f_{k:05d}" for k in range(8)] == test.client_ids
  spec = train.element_type_structure
  assert list(spec) == ["x", "y"]
  assert spec["x"].shape == (60,) and spec["x"].dtype == np.float32
  assert spec["y"].shape == () and spec["y"].dtype == np.int32
  for k, cid in enumerate(params.client_ids):
    n = int(params.num_samples[k])
    assert n >= 50
    assert train.create_dataset(cid)._node.immutable()  # Read-only: kept between calls.
    x_train, y_train = _stack(train.create_dataset(cid))
    x_test, y_test = _stack(test.create_dataset(cid))
    assert len(y_train) == int(0.9 * n) and len(y_test) == n - int(0.9 * n)
    for x, y in ((x_train, y_train), (x_test, y_test)):
      logits = x.astype(np.float64) @ params.W[k].T + params.b[k]
      np.testing.assert_array_equal(y, np.argmax(logits, axis=1))


def test_x_mean_and_covariance_follow_v_and_power_law():
  params = synthetic.generate_params(0.5, 0.5, num_clients=3, seed=1)
  params = params._replace(num_samples=np.full(3, 200_000))
  data = synthetic.generate_client(params, 2, seed=1)
  x = data["x"].astype(np.float64)
  sigma = np.arange(1, 61) ** -1.2
  np.testing.assert_allclose(params.sigma_diag, sigma)
  stderr = np.sqrt(sigma / len(x))
  assert np.all(np.abs(x.mean(0) - params.v[2]) < 5 * stderr)
  np.testing.assert_allclose(x.var(0), sigma, rtol=0.02)
  off_diagonal = np.cov(x[:, :5].T) - np.diag(sigma[:5])
  assert np.abs(off_diagonal).max() < 0.01


def test_priors_have_the_papers_spreads():
  params = synthetic.generate_params(0.5, 1.5, num_clients=4000, seed=0)
  np.testing.assert_allclose(params.u.std(), 0.5, rtol=0.05)
  np.testing.assert_allclose(params.B.std(), 1.5, rtol=0.05)
  # W_k, b_k entries ~ N(u_k, 1); v_k entries ~ N(B_k, 1).
  w_dev = params.W.reshape(4000, -1) - params.u[:, None]
  np.testing.assert_allclose([w_dev.mean(), w_dev.std()], [0, 1], atol=0.01)
  np.testing.assert_allclose((params.b - params.u[:, None]).std(), 1, rtol=0.02)
  v_dev = params.v - params.B[:, None]
  np.testing.assert_allclose([v_dev.mean(), v_dev.std()], [0, 1], atol=0.01)
  # Sizes: int(lognormal(4, 2)) + 50, whose median is int(e^4) + 50 = 104.
  assert params.num_samples.min() >= 50
  assert abs(np.median(params.num_samples) - 104) < 6


def test_iid_shares_the_model_and_input_distribution():
  _, _, params = synthetic.load_data(1.0, 1.0, num_clients=5, iid=True, return_params=True)
  assert np.all(params.W == params.W[0]) and np.all(params.b == params.b[0])
  assert np.all(params.v == 0)


def test_reproducible_and_order_independent():
  a, _ = synthetic.load_data(1, 1, num_clients=4, seed=7)
  b, _ = synthetic.load_data(1, 1, num_clients=4, seed=7)
  c, _ = synthetic.load_data(1, 1, num_clients=4, seed=8)
  late = _stack(b.create_dataset("f_00003"))  # Asked for first here, last below.
  for cid in a.client_ids:
    x, y = _stack(a.create_dataset(cid))
    if cid == "f_00003":
      np.testing.assert_array_equal(x, late[0])
  x7, _ = _stack(a.create_dataset("f_00000"))
  x8, _ = _stack(c.create_dataset("f_00000"))
  assert x7.shape != x8.shape or not np.array_equal(x7, x8)


def test_errors():
  with pytest.raises(ValueError, match="must be >= 0, got alpha=-1, beta=0"):
    synthetic.load_data(-1, 0)
  with pytest.raises(ValueError, match="num_clients must be a positive integer, got 0"):
    synthetic.load_data(1, 1, num_clients=0)
  with pytest.raises(ValueError, match="num_features must be a positive integer, got 2.5"):
    synthetic.generate_params(1, 1, num_features=2.5)
