"""In-memory client data with a NaN or Inf feature: `ClientData.from_dict` and `from_arrays`
refuse it, naming the client, the feature and the example, or drop those examples with a
warning naming their clients (`non_finite="drop"`)."""

import warnings

import numpy as np
import pytest

import federax as fx
from federax.simulation.client_data import ClientData
from federax.simulation.dataset import Dataset


def features(n, bad_rows=(), value=np.nan, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 2, 3)).astype(np.float32)
  for row in bad_rows:
    x[row, 1, 2] = value
  return {"x": x, "y": np.arange(n, dtype=np.int32), "w": np.ones(n, np.float64)}


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_from_dict_refuses_a_non_finite_feature_naming_client_feature_and_example(value):
  data = {"ok": features(3), "bad": features(6, bad_rows=(4, 2), value=value)}
  with pytest.raises(ValueError, match=r"ClientData.from_dict\(data\): client 'bad' has 2 of 6 "
                     r"examples with a NaN or Inf in \['x'\] \(the first: example 2\)") as e:
    ClientData.from_dict(data)
  assert 'non_finite="drop"' in str(e.value)


def test_from_dict_drops_the_examples_and_warns_once_naming_every_client():
  data = {"a": features(4, bad_rows=(0,)), "ok": features(2), "b": features(5, (1, 3, 4)),
          "lazy": Dataset.from_tensor_slices(features(2))}
  data["b"]["w"][0] = np.inf  # A second feature: the rows of both go.
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    cd = ClientData.from_dict(data, non_finite="drop")
  assert len(caught) == 1 and issubclass(caught[0].category, fx.simulation.NonFiniteWarning)
  assert caught[0].filename == __file__  # The user's line, not the library's.
  assert str(caught[0].message) == ("ClientData.from_dict(data): dropped 5 examples with a NaN "
                                    "or Inf feature from 2 clients: 'a' (1 of 4), 'b' (4 of 5).")
  kept = {c: cd.create_dataset(c).to_stacked()["y"].tolist() for c in cd.client_ids}
  assert kept == {"a": [1, 2, 3], "ok": [0, 1], "b": [2], "lazy": [0, 1]}
  for client in cd.client_ids:
    stacked = cd.create_dataset(client).to_stacked()
    assert all(np.isfinite(stacked[k]).all() for k in ("x", "w"))


def test_from_arrays_refuses_or_drops_rows_and_keeps_clients_left_empty():
  ids = np.array([b"p", b"q", b"p", b"r", b"q", b"r"])
  data = features(6, bad_rows=(2, 3, 5))
  with pytest.raises(ValueError, match=r"client 'p' has 1 of 2 examples with a NaN or Inf in "
                     r"\['x'\] \(the first: example 1\)"):
    ClientData.from_arrays(ids, data)
  with pytest.warns(fx.simulation.NonFiniteWarning,
                    match=r"dropped 3 examples .* 2 clients: 'p' \(1 of 2\), 'r' \(2 of 2\)\."):
    cd = ClientData.from_arrays(ids, data, non_finite="drop")
  assert cd.client_ids == ["p", "q", "r"]
  assert [cd.create_dataset(c).to_stacked()["y"].tolist() if len(cd.create_dataset(c)) else []
          for c in cd.client_ids] == [[0], [1, 4], []]


def test_finite_data_and_integer_features_pass_untouched():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    cd = ClientData.from_dict({"a": {"x": np.array([1.0, 2.0]), "y": np.array([-1, 10**9])}})
    assert cd.create_dataset("a").to_stacked()["y"].tolist() == [-1, 10**9]
    cd = ClientData.from_arrays(np.array([1, 1, 2]), {"x": np.zeros((3, 2), np.float16)})
    assert [len(cd.create_dataset(c)) for c in cd.client_ids] == [2, 1]


@pytest.mark.parametrize("make", [lambda p: ClientData.from_dict({}, non_finite=p),
                                  lambda p: ClientData.from_arrays(np.array([]), {},
                                                                   non_finite=p)])
def test_an_unknown_policy_is_refused(make):
  with pytest.raises(ValueError, match=r"non_finite must say what to do with a NaN or Inf "
                     r"feature.\n  expected: 'raise' or 'drop'\n  actual:   'skip'"):
    make("skip")
