"""Hostile command lines and run directories (issue 20): each refused with one line on stderr and
the exit status (2 for bad input, 1 when a run cannot go on), nothing written or changed.
The run directory's lock: test_run_lock.py."""

import csv
import os
import pathlib
import shutil
import time
import tomllib

import numpy as np
import pytest

from federax import program
from federax.cli import _task, config, rundir
from federax.cli._errors import CLIError
from federax.cli.experiment import keep_total
from federax.cli.main import main
from federax.simulation.datasets import download

QUICK = ["--rounds", "4", "--clients-per-round", "3", "--epochs", "1", "--max-elements", "20",
         "--eval-every", "2", "--checkpoint-every", "2"]
ROOT = os.geteuid() == 0


@pytest.fixture
def read_only(monkeypatch):
  """`read_only(directory)`: mode 555, and, for root (whom modes do not stop: CI runs as root),
  writes into it refused as the kernel refuses them to other users (os.access, os.mkdir)."""
  made = []

  def make(directory):
    directory.chmod(0o555)
    made.append(directory)
    if not ROOT:
      return
    real_access, real_mkdir = os.access, os.mkdir
    locked = {pathlib.Path(d).resolve() for d in made}

    def access(path, mode, *args, **kwargs):
      if mode & os.W_OK and pathlib.Path(path).resolve() in locked:
        return False
      return real_access(path, mode, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
      if pathlib.Path(path).resolve().parent in locked:
        raise PermissionError(13, "Permission denied", os.fspath(path))
      return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "mkdir", mkdir)

  yield make
  for directory in made:
    directory.chmod(0o755)


def refused(capsys, argv, status, *words):
  """Runs the command; asserts its status, one line on stderr holding `words`, no traceback."""
  assert main(argv) == status
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "Traceback" not in err, err
  for word in words:
    assert word in err, (word, err)
  return err


def rows(run_dir):
  with open(run_dir / "metrics.csv", newline="") as f:
    return list(csv.DictReader(f))


def checkpoints(run_dir):
  return sorted(int(p.name.rsplit("_", 1)[1])
                for p in (run_dir / "checkpoints").glob("program_state_*"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished 4-round run, trained once for the module; it saved every round but kept the
  first checkpoint and the latest (`--keep-checkpoints 1`): 0 and 4."""
  run_dir = tmp_path_factory.mktemp("finished") / "run"
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("FEDERAX_COMPILATION_CACHE",
                 str(tmp_path_factory.getbasetemp() / "federax-compilation-cache"))
    assert main(["train", "--out", str(run_dir), *QUICK, "--checkpoint-every", "1",
                 "--keep-checkpoints", "1"]) == 0
  return run_dir


@pytest.fixture
def run_dir(finished, tmp_path):
  """A copy of the finished run, for a test to damage."""
  return shutil.copytree(finished, tmp_path / "run")


# --- train: flags checked against the data, before a run directory is written ------------------

def test_more_clients_per_round_than_the_population_is_refused(tmp_path, capsys):
  out = tmp_path / "run"
  refused(capsys, ["train", "--out", str(out), "--clients-per-round", "31"], 2,
          "clients_per_round 31 exceeds the 30 training clients")
  assert not out.exists()


def test_absurd_batch_size_is_refused_before_any_allocation(tmp_path, capsys):
  out = tmp_path / "run"
  start = time.perf_counter()
  refused(capsys, ["train", "--out", str(out), "--batch-size", "1000000000"], 2,
          "batch_size 1000000000 is too large", "memory")
  assert time.perf_counter() - start < 20  # It took 87 s to fail allocating 224 GiB.
  assert not out.exists()


def test_padded_batch_memory_is_checked_against_the_data(tmp_path):
  from federax.simulation import baselines
  settings = config.resolve({}, {"batch_size": 7, "clients_per_round": 3})
  task = baselines.create_task("synthetic", baselines.ClientSpec(num_epochs=1, batch_size=7))
  # Synthetic(1,1)'s padded example: x float32[60], y int32, mask bool.
  needed = 7 * (60 * 4 + 4 + 1) * 3
  _task.check_against_data(settings, task.datasets, memory=needed)
  with pytest.raises(CLIError, match="batch_size 7 is too large"):
    _task.check_against_data(settings, task.datasets, memory=needed - 1)
  sequential = config.resolve({}, {"batch_size": 7, "clients_per_round": 3,
                                   "runtime": "sequential"})
  _task.check_against_data(sequential, task.datasets, memory=needed // 3)  # One client at once.


@pytest.mark.parametrize("out, words", [
    ("", ["out must be a directory path, got ''"]),
    ("a_file/run", ["cannot create the run directory", "a_file is not a directory"]),
    ("a_file/sub/run", ["a_file is not a directory"]),
])
def test_bad_out_is_refused(tmp_path, monkeypatch, capsys, out, words):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "a_file").write_text("not a directory")
  before = sorted(p.name for p in tmp_path.iterdir())
  refused(capsys, ["train", "--out", out, *QUICK], 2, *words)
  assert sorted(p.name for p in tmp_path.iterdir()) == before  # "" trained into "." before.


def test_out_in_a_read_only_directory_is_refused(tmp_path, capsys, read_only):
  parent = tmp_path / "read-only"
  parent.mkdir()
  read_only(parent)
  refused(capsys, ["train", "--out", str(parent / "run"), *QUICK], 2,
          "cannot create the run directory", "Permission denied")


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(bytes(range(256)) * 4), ["is not valid TOML", "not UTF-8"]),
    (lambda p: p.mkdir(), ["is a directory"]),
    (lambda p: p.write_text('rounds = 3\n[train]\nseed = 2\n'),
     ["setting 'rounds' is outside the [train] table"]),
])
def test_bad_config_file_is_refused(tmp_path, capsys, make, words):
  path = tmp_path / "experiment.toml"
  make(path)
  refused(capsys, ["train", "--config", str(path), "--out", str(tmp_path / "run")], 2, *words)
  assert not (tmp_path / "run").exists()


def test_offline_task_without_data_lists_the_places_looked_and_the_fix(tmp_path, monkeypatch,
                                                                        capsys):
  monkeypatch.setenv(download.ENV_OFFLINE, "1")
  monkeypatch.delenv(download.ENV_DATA_DIR, raising=False)
  monkeypatch.setattr(download, "DEFAULT_CACHE_DIR", str(tmp_path / "cache"))
  err = refused(capsys, ["train", "--task", "emnist", "--out", str(tmp_path / "run")], 2,
                "were not found. Looked for: ", "FEDERAX_OFFLINE", "set FEDERAX_DATA_DIR")
  for name in ("fed_emnist_train.h5", "fed_emnist_test.h5"):
    assert os.fspath(tmp_path / "cache" / name) in err
  assert not (tmp_path / "run").exists()


def test_damaged_data_files_give_one_line_naming_the_file(tmp_path, capsys):
  leaf = tmp_path / "leaf"  # A LEAF shard whose images are 1 pixel (DataFormatError).
  for split in ("train", "test"):
    (leaf / split).mkdir(parents=True)
    (leaf / split / "a.json").write_text(
        '{"users": ["u1"], "num_samples": [1], "user_data": {"u1": {"x": [[0.5]], "y": [3]}}}')
  refused(capsys, ["train", "--task", "emnist_digits", "--data-dir", str(leaf), "--out",
                   str(tmp_path / "run")], 2, "a.json", "shape")
  hdf5 = tmp_path / "h5"  # Shakespeare's HDF5 files, cut short (ChecksumError: its size).
  hdf5.mkdir()
  for name in ("shakespeare_train.h5", "shakespeare_test.h5"):
    (hdf5 / name).write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
  refused(capsys, ["train", "--task", "shakespeare", "--data-dir", str(hdf5), "--out",
                   str(tmp_path / "run")], 2, "shakespeare_t", "expected")
  assert not (tmp_path / "run").exists()


# --- checkpoints kept ---------------------------------------------------------------------------

def test_keep_checkpoints_1_keeps_the_first_and_the_latest(finished):
  assert checkpoints(finished) == [0, 4]  # It raised a ValueError, then kept the first plus 0.


@pytest.mark.parametrize("keep", [0, 1, 2, 3])
def test_keep_checkpoints_n_keeps_the_first_and_the_n_latest(tmp_path, keep):
  manager = program.FileProgramStateManager(tmp_path, keep_total=keep_total(keep))
  for version in range(7):
    manager.save({"w": np.float32(version)}, version)
  expected = list(range(7)) if keep == 0 else [0, *range(7 - keep, 7)]
  assert manager.get_versions() == expected


# --- resume: refused before anything is written -------------------------------------------------

def test_resume_with_fewer_rounds_than_done_is_refused_before_config_is_touched(run_dir, capsys):
  before = (run_dir / "config.toml").read_bytes()
  refused(capsys, ["resume", str(run_dir), "--rounds", "1"], 2,
          "--rounds 1 is fewer than the 4 rounds already done", "--rounds 4 or more")
  assert (run_dir / "config.toml").read_bytes() == before
  # A config.toml edited (or written by an older federax) to fewer rounds: the same refusal.
  (run_dir / "config.toml").write_text(before.decode().replace("rounds = 4", "rounds = 2"))
  refused(capsys, ["resume", str(run_dir)], 2, "rounds = 2 is fewer than the 4 rounds")


@pytest.mark.parametrize("kind", ["empty directory", "file"])
def test_newer_program_state_that_is_not_a_checkpoint_is_refused(run_dir, capsys, kind):
  entry = run_dir / "checkpoints" / "program_state_6"
  entry.mkdir() if kind == "empty directory" else entry.write_text("")
  before = (run_dir / "metrics.csv").read_bytes()
  refused(capsys, ["resume", str(run_dir), "--rounds", "8"], 1,
          f"program_state_6' is an {kind}" if kind != "file" else "program_state_6' is a file",
          "the latest checkpoint is round 4")
  assert entry.exists() and (run_dir / "metrics.csv").read_bytes() == before
  assert "rounds = 4" in (run_dir / "config.toml").read_text()


@pytest.mark.parametrize("content, words", [
    ("", ["config.toml' is empty", "rather than resume with defaults"]),
    ('[train]\ntask = "synthetic"\n', ["is incomplete", "lacks algorithm, rounds"]),
])
def test_emptied_config_toml_is_refused_not_replaced_by_defaults(run_dir, capsys, content,
                                                                  words):
  (run_dir / "config.toml").write_text(content)
  refused(capsys, ["resume", str(run_dir)], 2, *words)
  assert (run_dir / "config.toml").read_text() == content
  assert checkpoints(run_dir) == [0, 4]


def test_resume_of_a_read_only_run_is_refused(run_dir, capsys, read_only):
  before = (run_dir / "config.toml").read_bytes()
  read_only(run_dir)
  refused(capsys, ["resume", str(run_dir), "--rounds", "6"], 2, "is not writable")
  assert (run_dir / "config.toml").read_bytes() == before


def test_config_is_written_atomically(tmp_path, monkeypatch):
  settings = config.resolve({}, {"rounds": 3})
  rundir.write_config(tmp_path, settings)
  before = (tmp_path / "config.toml").read_bytes()

  def disk_full(fd):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(os, "fsync", disk_full)
  with pytest.raises(CLIError, match="No space left on device"):
    rundir.write_config(tmp_path, config.resolve({}, {"rounds": 9}))
  assert (tmp_path / "config.toml").read_bytes() == before  # Not emptied, not half written.
  assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]  # No temporary left.


# --- non-ASCII paths ----------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["runs/\U0001F600-run", 'a "quoted" \\ path', "tab\there",
                                  "line\nbreak", "del\x7f", "caf\u00e9"])
def test_config_strings_round_trip_through_toml(text):
  assert tomllib.loads(f"out = {config.toml_string(text)}")["out"] == text


def test_run_directory_with_an_emoji_in_its_path_resumes(tmp_path):
  out = tmp_path / "runs \U0001F600" / "run"
  assert main(["train", "--out", str(out), *QUICK, "--rounds", "2"]) == 0
  assert main(["resume", str(out), "--rounds", "3"]) == 0
  assert [int(r["round"]) for r in rows(out)] == [0, 1, 2, 3]
  assert tomllib.loads((out / "config.toml").read_text())["train"]["out"] == str(out)


# --- plot and datasets --------------------------------------------------------------------------

@pytest.mark.parametrize("content, words", [
    (bytes(range(256)), ["is not a CSV file: not UTF-8"]),
    (b"round,client_work/train/loss\n0,\n1,0.5\ninf,0.4\n", ["line 4", "'inf'", "whole number"]),
    (b"round,client_work/train/loss\n0,\nnan,0.5\n", ["line 3", "'nan'", "whole number"]),
    (b"round,client_work/train/loss\n0,\n1.5,0.5\n", ["'1.5'", "whole number"]),
    (b"round,loss\n1,\x00\n", ["line 2", "expected a number"]),
])
def test_plot_of_a_damaged_csv_is_refused(tmp_path, capsys, content, words):
  (tmp_path / "metrics.csv").write_bytes(content)
  refused(capsys, ["plot", str(tmp_path)], 2, "metrics.csv", *words)
  assert not (tmp_path / "metrics.png").exists()


def test_datasets_download_into_a_cache_dir_under_a_file_is_refused(tmp_path, capsys):
  (tmp_path / "a_file").write_text("")
  refused(capsys, ["datasets", "download", "emnist", "--cache-dir",
                   str(tmp_path / "a_file" / "cache")], 2, "a_file is not a directory")


def test_datasets_download_into_a_cache_dir_under_a_read_only_parent_is_refused(
    tmp_path, capsys, read_only):
  parent = tmp_path / "read-only"
  parent.mkdir()
  read_only(parent)
  refused(capsys, ["datasets", "download", "emnist", "--cache-dir", str(parent / "cache")], 2,
          "is not writable")
