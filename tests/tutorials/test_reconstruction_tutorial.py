"""TFF 0.87's "Federated Reconstruction for Matrix Factorization" on MovieLens 100K, run as a
notebook: the loader's counts, the server state without user embeddings, TFF's printed metric
layout, training that lowers the loss, and the test RatingAccuracy it states."""

import re

import pytest

from tutorials import notebooks

pytestmark = pytest.mark.slow  # A notebook in a fresh process on real data (~30 s).

_METRICS = re.compile(r"\('(\w+)', np\.(?:float32|int32)\(([-\d.e+]+)\)\)")


def metrics(line: str) -> dict:
  return {k: float(v) for k, v in _METRICS.findall(line)}


def test_matrix_factorization_tutorial(tmp_path):
  out = notebooks.run('federated_reconstruction_for_matrix_factorization', tmp_path)
  lines = out.splitlines()
  assert 'Num users: 943' in lines and 'Num movies: 1682' in lines
  assert '754 94 95' in lines  # The tutorial's 80/10/10 split of users.
  assert 'Item variables shape: (1682, 50)' in lines
  rounds = [l for l in lines if l.startswith('Train round ')]
  assert len(rounds) == 5
  first, last = metrics(rounds[0]), metrics(rounds[-1])
  assert list(first) == ['rating_accuracy', 'loss', 'num_non_finite_clients']  # TFF's order.
  assert last['loss'] < 0.6 * first['loss']
  initial = next(l for l in lines if l.startswith('Initial Eval:'))
  final = next(l for l in lines if l.startswith('Final Eval:'))
  assert initial.startswith("Initial Eval: OrderedDict([('current_round_metrics', OrderedDict("
                            "[('rating_accuracy', ")
  assert "('total_rounds_metrics'" in initial
  assert metrics(final)['loss'] < 0.6 * metrics(initial)['loss']
  test = metrics(next(l for l in lines if l.startswith('Final Test:')))
  # The test users' RatingAccuracy after 5 rounds (20 rounds give about 0.29).
  assert test['rating_accuracy'] > metrics(initial)['rating_accuracy']
  print('test rating_accuracy', test['rating_accuracy'], 'loss', test['loss'])
