"""Misuse of the heavy-hitters API: each a clear error naming what was expected."""

import numpy as np
import pytest

import federax as fx

iblt = fx.analytics.heavy_hitters.iblt


@pytest.mark.parametrize("argument, value, expected", [
    ("capacity", 0, r"capacity must be an int at least 1\..*actual:   0"),
    ("capacity", -5, r"capacity must be an int at least 1"),
    ("capacity", 2.5, r"capacity must be an int.*actual:   2\.5"),
    ("secure_sum_bitwidth", 0, r"secure_sum_bitwidth must be an int in \[1, 62\] when it is not "
     r"None\..*expected: an int in \[1, 62\] or None.*actual:   0"),
    ("secure_sum_bitwidth", 63, r"secure_sum_bitwidth must be an int in \[1, 62\]"),
    ("secure_sum_bitwidth", True, r"secure_sum_bitwidth must be an int.*actual:   True"),
    ("max_heavy_hitters", -1, r"max_heavy_hitters must be an int at least 1 when it is not "
     r"None.*actual:   -1"),
    ("max_heavy_hitters", 0, r"max_heavy_hitters must be an int at least 1"),
    ("string_max_bytes", 0, r"string_max_bytes must be an int at least 1"),
    ("max_words_per_user", 0, r"max_words_per_user must be an int at least 1 when"),
    ("k_anonymity", 0, r"k_anonymity must be an int at least 1"),
    ("repetitions", 2, r"repetitions must be an int at least 3"),
    ("batch_size", 0, r"batch_size must be an int at least 1"),
])
def test_arguments_out_of_range_are_named(argument, value, expected):
  with pytest.raises(ValueError, match=rf"(?s)build_iblt_computation\({argument}=\.\.\.\): "
                     + expected):
    iblt.build_iblt_computation(**{argument: value})


def test_a_postprocessor_must_be_callable():
  with pytest.raises(TypeError, match=r"(?s)string_postprocessor=...\): must be callable or None.*"
                     r"actual:   str"):
    iblt.build_iblt_computation(string_postprocessor="upper")


def test_client_data_that_are_not_strings_are_refused():
  computation = iblt.build_iblt_computation(capacity=10)
  with pytest.raises(fx.FederatedTypeError, match=r"(?s)expected strings.*expected: str.*"
                     r"actual:   int64"):
    computation([[np.array([1, 2, 3])]])
  with pytest.raises(fx.FederatedTypeError, match=r"(?s)one_round_computation: argument\[client 0\]"
                     r"\[element 0\]: the shape does not fit.*expected: str\[\?\]"):
    computation([np.array(["a", "b"])])  # Strings, but not a dataset of batches per client.


def test_a_postprocessor_must_keep_one_string_per_string():
  computation = iblt.build_iblt_computation(capacity=10, string_postprocessor=lambda s: s[:1])
  with pytest.raises(ValueError, match=r"(?s)the postprocessor must return one string per "
                     r"string.*expected: \(2,\).*actual:   \(1,\)"):
    computation([[np.array(["a", "b"])]])


def test_dp_parameters_out_of_range_are_named():
  dp = fx.analytics.heavy_hitters
  with pytest.raises(ValueError, match=r"(?s)laplace_threshold\(epsilon=...\): epsilon must be "
                     r"positive.*actual:   0"):
    dp.laplace_threshold(0, 0.1, 8)
  with pytest.raises(ValueError, match=r"delta must lie in \(0, 1\)"):
    dp.laplace_threshold(1.0, 1.0, 8)
  with pytest.raises(ValueError, match=r"(?s)l0_sensitivity must be an int of at least 1.*"
                     r"hint: pass max_words_per_user"):
    dp.laplace_threshold(1.0, 0.1, None)
  with pytest.raises(ValueError, match=r"(?s)one count per heavy hitter.*actual:   \(3,\)"):
    dp.privatize_heavy_hitters(np.array([b"a", b"b"]), np.array([1, 2, 3]),
                               key=np.zeros(2, np.uint32), epsilon=1.0, delta=0.1,
                               l0_sensitivity=1)
