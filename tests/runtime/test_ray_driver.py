"""The driver of a Ray run: SIGKILLed mid-run, `federax resume` continues it from its checkpoint
and ends bit-identical to an uninterrupted run, with nothing of the killed driver left running
on the cluster (a local Ray of the driver's own listening on loopback only: test_ray_misuse)."""

import concurrent.futures
import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from federax.cli.main import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
# FedProx's Synthetic(1,1), 3 clients a round, a checkpoint every round: long enough (8 rounds)
# that a kill after round 2's checkpoint lands mid-run.
ARGS = ["--rounds", "8", "--clients-per-round", "3", "--epochs", "1", "--max-elements", "20",
        "--eval-every", "4", "--eval-clients", "3", "--checkpoint-every", "1", "--seed", "5",
        "--runtime", "ray", "--ray-workers", "2"]


def _final_state(run_dir):
  latest = max((run_dir / "checkpoints").glob("program_state_*"),
               key=lambda p: int(p.name.rsplit("_", 1)[1]))
  with np.load(latest / "state.npz") as npz:
    return latest.name, {k: npz[k] for k in npz.files}


def _running(pid: int) -> bool:
  """Whether process `pid` runs (a zombie, dead and waiting for its parent, does not)."""
  try:
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
  except OSError:
    return False
  return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _descendants(pids) -> set:
  """The processes started by processes `pids`, and by those, ..., now (from /proc)."""
  parents = {}
  for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
    try:
      fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
      continue
    parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
  found, todo = set(), list(pids)
  while todo:
    for child in parents.get(todo.pop(), []):
      if child not in found:
        found.add(child)
        todo.append(child)
  return found


def _job_workers(ray) -> dict:
  """The live Ray actors of other drivers' jobs than this process's: actor id -> pid."""
  from ray._private import state
  ours = ray.get_runtime_context().get_job_id()
  return {a: info["Pid"] for a, info in state.actors().items()
          if info["State"] == "ALIVE" and info["JobID"] != ours}


def _wait_for(condition, timeout_s: float, what: str) -> None:
  deadline = time.monotonic() + timeout_s
  while not condition():
    assert time.monotonic() < deadline, what
    time.sleep(0.02)


def _kill_after_round_2(driver, run_dir, ray) -> tuple[dict, set]:
  """SIGKILLs `driver` once round 2's checkpoint is written; returns its workers (actor ->
  pid) and the processes it started, as they were just before."""
  try:
    def checkpointed():
      assert driver.poll() is None, driver.communicate()[1][-3000:]
      return (run_dir / "checkpoints" / "program_state_2").exists()
    _wait_for(checkpointed, 120, "no checkpoint of round 2 in time")
    return _job_workers(ray), _descendants([driver.pid])
  finally:
    driver.send_signal(signal.SIGKILL)
    driver.communicate()


@pytest.mark.slow
def test_a_killed_driver_resumes_bit_identical_and_leaves_nothing_running(
    ray_cluster, tmp_path, monkeypatch):
  import ray

  import federax as fx
  monkeypatch.setenv("FEDERAX_COMPILATION_CACHE", str(tmp_path / "cache"))
  address = ray_cluster.address
  assert address.startswith("127.0.0.1:"), address
  flags = [*ARGS, "--ray-address", address]
  fx.runtime.ray(num_workers=2)  # This process's two workers, before the node below exists.
  assert not _job_workers(ray)
  # The driver to kill: another process on the same cluster, on a node of its own (this
  # process's workers may hold the other nodes' CPUs), removed after the test.
  node = ray_cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")
  try:
    cpus = ray.available_resources().get("CPU", 0)
    run_dir = tmp_path / "killed"
    driver = subprocess.Popen([sys.executable, "-m", "federax.cli", "train", "--out",
                               str(run_dir), *flags], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    killed = concurrent.futures.ThreadPoolExecutor(1).submit(
        _kill_after_round_2, driver, run_dir, ray)
    # Meanwhile the uninterrupted run, here.
    assert main(["train", "--out", str(tmp_path / "reference"), *flags]) == 0
    theirs, started = killed.result()
    assert not (run_dir / "summary.json").exists(), "the run ended before it was killed"
    assert len(theirs) == 2, theirs
    # Nothing of the killed driver is left: Ray ends its job's workers and frees their CPUs,
    # and whatever it started itself is gone.
    left = set(theirs.values()) | started
    _wait_for(lambda: not any(_running(pid) for pid in left), 30,
              f"the killed driver's workers or children still run: {theirs}, {started}")
    _wait_for(lambda: ray.available_resources().get("CPU", 0) >= cpus, 30,
              "the killed driver's CPUs were not freed")
    assert not _job_workers(ray)
    versions = sorted(int(p.name.rsplit("_", 1)[1])
                      for p in (run_dir / "checkpoints").glob("program_state_*"))
    assert 2 <= versions[-1] < 8, versions
    # The restarted driver (this process) resumes from the latest checkpoint.
    assert main(["resume", str(run_dir)]) == 0
  finally:
    node_processes = _descendants([info.process.pid for infos in node.all_processes.values()
                                   for info in infos]) | {
        info.process.pid for infos in node.all_processes.values() for info in infos}
    ray_cluster.remove_node(node)
  # The node added here is gone with its raylet, its agents and the workers it ran.
  _wait_for(lambda: not any(_running(pid) for pid in node_processes), 30,
            f"the added node's processes still run: {node_processes}")
  reference = tmp_path / "reference"
  assert (run_dir / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()
  name, state = _final_state(run_dir)
  reference_name, reference_state = _final_state(reference)
  assert name == reference_name == "program_state_8"
  assert state.keys() == reference_state.keys()
  for key in state:
    np.testing.assert_array_equal(state[key], reference_state[key], err_msg=key)
  assert json.loads((run_dir / "summary.json").read_text())["rounds"] == 8

