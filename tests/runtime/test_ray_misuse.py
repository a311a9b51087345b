"""Misuse of the Ray runtime: each a clear error (no Ray, a dead address, a client function
that cannot be pickled), and importing federax does not import Ray."""

import builtins
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import federax as fx


def test_importing_federax_does_not_import_ray():
  code = "import federax, sys; assert 'ray' not in sys.modules, 'ray imported'"
  subprocess.run([sys.executable, "-c", code], check=True)


def test_without_ray_the_error_names_the_install_command(monkeypatch):
  real_import = builtins.__import__

  def no_ray(name, *args, **kwargs):
    if name == "ray" or name.startswith("ray."):
      raise ImportError("No module named 'ray'")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_ray)
  with pytest.raises(ImportError, match=r"(?s)Ray is not installed.*pip install 'federax\[ray\]'"):
    fx.runtime.ray()


def test_an_unreachable_address_fails_fast(ray_cluster):
  start = time.monotonic()
  with pytest.raises(ConnectionError, match=r"no Ray cluster answers at '127.0.0.1:1'"):
    fx.runtime.ray("127.0.0.1:1", connect_timeout_s=2.0)
  assert time.monotonic() - start < 5.0


def test_a_client_function_that_cannot_be_pickled(ray_runtimes):
  lock = threading.Lock()

  def holds_a_lock(x):
    return x + (1.0 if lock is not None else 0.0)

  @fx.federated_computation(fx.FederatedType(np.float32, fx.CLIENTS))
  def comp(x):
    return fx.federated_sum(fx.federated_map(holds_a_lock, x))

  with ray_runtimes[2], pytest.raises(TypeError, match=r"cannot be sent to the Ray workers: "
                                      r"it cannot be serialized.*lock"):
    comp([1.0, 2.0])


def test_bad_num_workers(ray_cluster):
  with pytest.raises(ValueError, match="num_workers must be an int >= 1"):
    fx.runtime.ray(num_workers=0)


def test_address_none_starts_a_ray_of_its_own_beside_a_running_cluster_on_loopback(
    ray_cluster):
  # Ray's own default (ray.init() without an address) joins the latest cluster started on the
  # machine: a benchmark beside the tests' cluster lost its workers when that cluster stopped.
  code = ("import federax as fx, ray; fx.runtime.ray(num_workers=1); "
          "print('GCS', ray.get_runtime_context().gcs_address); "
          "print('NODES', *sorted({n['NodeManagerAddress'] for n in ray.nodes()}))")
  env = dict(os.environ)
  env.pop("RAY_ADDRESS", None)
  # Not the switch the tests' cluster is started with: the runtime keeps to loopback itself
  # (left alone, Ray "resolves" 127.0.0.1 to the machine's outward address and listens there).
  env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=180)
  assert out.returncode == 0, out.stderr[-2000:]
  gcs = out.stdout.split("GCS ")[-1].splitlines()[0].strip()
  assert gcs and gcs != ray_cluster.address
  assert gcs.startswith("127.0.0.1:"), gcs
  assert out.stdout.split("NODES ")[-1].split() == ["127.0.0.1"], out.stdout
