"""A run with client states killed with SIGKILL resumes with every client's state bit for bit."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np

import federax as fx

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import client_state_run  # noqa: E402


def _states(store):
  ids = sorted(store.client_ids())
  return ids, [np.asarray(x) for x in
               __import__("jax").tree_util.tree_leaves(store.gather_stacked(ids))]


def _assert_same(a, b):
  ids_a, leaves_a = _states(a)
  ids_b, leaves_b = _states(b)
  assert ids_a == ids_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)  # Bit for bit.


def test_kill_9_then_resume_restores_every_client_state(tmp_path):
  total = 6
  # The uninterrupted run, in this process.
  reference, reference_state, reference_manager = client_state_run.run(
      tmp_path / "ref_ckpt", tmp_path / "ref_store", total)
  # The same run in a subprocess, killed with SIGKILL once round 3 is saved.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
  child = subprocess.Popen(
      [sys.executable, client_state_run.__file__, str(tmp_path / "ckpt"), str(tmp_path / "store"),
       str(total), "0.6"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  deadline = time.monotonic() + 60
  while not (tmp_path / "ckpt" / "program_state_3").exists():
    assert child.poll() is None, child.stderr.read().decode()[-2000:]
    assert time.monotonic() < deadline, "the child run did not reach round 3"
    time.sleep(0.02)
  time.sleep(0.3)  # Round 4's states are in the store; its checkpoint is not written yet.
  os.kill(child.pid, signal.SIGKILL)
  child.wait()
  child.stderr.close()
  manager = fx.program.FileProgramStateManager(tmp_path / "ckpt", keep_total=0)
  saved = manager.get_versions()
  assert saved[-1] < total  # Killed before the end.
  # Every saved version's client states equal the uninterrupted run's at that round.
  process = reference.process
  for version in saved:
    killed = fx.program.ClientStateStore(process.initial_client_state(), num_shards=3)
    killed.restore(manager.extras_path(version, "client_states"))
    expected = fx.program.ClientStateStore(process.initial_client_state(), num_shards=3)
    expected.restore(reference_manager.extras_path(version, "client_states"))
    _assert_same(killed, expected)
    assert len(killed) > 0 or version == 0
  # Resume in this process (the store directory may be ahead of the checkpoint: replaced).
  resumed, state, _ = client_state_run.run(tmp_path / "ckpt", tmp_path / "store", total)
  _assert_same(resumed.client_state_store, reference.client_state_store)
  for x, y in zip(fx.program.flatten(state).values(), fx.program.flatten(reference_state).values()):
    np.testing.assert_array_equal(x, y)
