"""The run directory's lock: one process (`federax train` or `resume`) owns a run directory;
a second is refused naming the owner's pid; the lock goes with its owner, however it ends."""

import csv
import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest

from federax.cli import rundir
from federax.cli._errors import CLIError
from federax.cli.main import main


def rows(run_dir):
  with open(run_dir / "metrics.csv", newline="") as f:
    return list(csv.DictReader(f))


def test_lock_refuses_naming_the_holder_and_is_released_when_it_is_killed(tmp_path):
  # The holder locks as `rundir.owned` does (flock on RUN/.lock holding its pid), without
  # importing federax, so that it starts in milliseconds.
  holder = subprocess.Popen([sys.executable, "-c", (
      "import fcntl, os, sys, time\n"
      f"fd = os.open({os.fspath(tmp_path / rundir.LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
      "fcntl.flock(fd, fcntl.LOCK_EX)\n"
      "os.write(fd, str(os.getpid()).encode())\n"
      "print('locked', flush=True)\n"
      "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline() == "locked\n"
    with pytest.raises(CLIError, match=f"is in use by process {holder.pid} ") as error:
      with rundir.owned(tmp_path):
        pass
    assert error.value.status == rundir.BUSY
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with rundir.owned(tmp_path):  # The kernel released the lock with the killed process.
    assert (tmp_path / rundir.LOCK_FILE).read_text() == f"{os.getpid()}\n"
  fd = os.open(tmp_path / rundir.LOCK_FILE, os.O_RDWR)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # Released on leaving `owned`.
  finally:
    os.close(fd)


def test_resume_while_train_runs_is_refused_and_metrics_stay_intact(tmp_path, capsys):
  out = tmp_path / "run"
  rounds = 30
  train = subprocess.Popen(
      [sys.executable, "-m", "federax.cli", "train", "--out", str(out), "--rounds", str(rounds),
       "--clients-per-round", "3", "--epochs", "1", "--max-elements", "20", "--eval-every", "10",
       "--checkpoint-every", "3"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "program_state_3").exists():  # Training, lock held.
      assert train.poll() is None, train.communicate()
      assert time.monotonic() < deadline, "no checkpoint in time"
      time.sleep(0.01)
    assert main(["resume", str(out)]) == rundir.BUSY
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"in use by process {train.pid} " in err, err
    still_running = train.poll() is None
  finally:
    _, err = train.communicate(timeout=120)
  assert train.returncode == 0, err
  assert still_running, "train ended before resume was tried: raise `rounds`"
  assert [int(r["round"]) for r in rows(out)] == list(range(rounds + 1))
  assert (out / "summary.json").exists()
