"""A local multi-node Ray cluster for the Ray runtime's tests: one per session, on loopback."""

import os

import pytest

CLUSTER_NODES = 3  # A head and two more nodes, one CPU each: up to 3 workers, one per node.


@pytest.fixture(scope="session")
def ray_cluster():
  """Ray connected to a 3-node local cluster (`ray.cluster_utils.Cluster`), every node bound to
  127.0.0.1. Skips when Ray is not installed."""
  # Left alone, Ray resolves 127.0.0.1 to the machine's outward address: keep it on loopback.
  os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
  ray = pytest.importorskip("ray")
  from ray._private import ray_constants
  from ray.cluster_utils import Cluster

  ray_constants.ENABLE_RAY_CLUSTER = False  # If Ray was imported before the variable was set.
  cluster = Cluster(initialize_head=True, head_node_args=dict(
      num_cpus=1, node_ip_address="127.0.0.1", include_dashboard=False))
  for _ in range(CLUSTER_NODES - 1):
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
  ray.init(address=cluster.address, _node_ip_address="127.0.0.1", logging_level="ERROR",
           log_to_driver=False)
  try:
    yield cluster
  finally:
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="session")
def ray_runtimes(ray_cluster):
  """`workers -> fx.runtime.ray(num_workers=workers)` for 1, 2 and 3 workers (sharing them)."""
  import federax as fx

  return {k: fx.runtime.ray(num_workers=k) for k in (1, 2, 3)}
