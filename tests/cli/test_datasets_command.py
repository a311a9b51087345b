"""Tests for `federax datasets list | download | where`, offline (downloads come from file://)."""

import hashlib
import io
import re
import sys
import tarfile

import pytest

from federax.cli import datasets_command
from federax.cli.main import main
from federax.simulation.datasets import cifar100, download, emnist, shakespeare, stackoverflow


class TTY(io.StringIO):
  def isatty(self):
    return True


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
  """No FEDERAX_DATA_DIR, an empty HOME (so ~/.cache/federax is empty), downloads allowed, and
  no way to reach the network."""
  monkeypatch.delenv(download.ENV_DATA_DIR, raising=False)
  monkeypatch.delenv(download.ENV_OFFLINE, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path / "home"))

  def no_network(url, *args, **kwargs):
    if not url.startswith("file://"):
      raise AssertionError(f"a test tried to download {url}")
    return real_download(url, *args, **kwargs)

  real_download = download.download
  monkeypatch.setattr(download, "download", no_network)
  return tmp_path


@pytest.fixture
def archive(tmp_path):
  """A published archive on a file:// URL, as `emnist`'s registry entry (files: a.h5, b.h5)."""
  path = tmp_path / "server" / "fake_emnist.tar.bz2"
  path.parent.mkdir()
  with tarfile.open(path, "w:bz2") as tar:
    for name, payload in (("a.h5", b"A" * 5000), ("b.h5", b"B" * 3000)):
      info = tarfile.TarInfo(f"fake_emnist/{name}")
      info.size = len(payload)
      tar.addfile(info, io.BytesIO(payload))
  remote = download.RemoteFile(url=path.as_uri(), files=("a.h5", "b.h5"),
                               sha256=hashlib.sha256(path.read_bytes()).hexdigest())
  return remote


@pytest.fixture
def fake_emnist(archive, monkeypatch):
  info = datasets_command.DATASETS["emnist"]._replace(remotes=(archive,))
  monkeypatch.setitem(datasets_command.DATASETS, "emnist", info)
  return archive


def place(directory, remote):
  directory.mkdir(parents=True, exist_ok=True)
  for name in remote.files:
    (directory / name).write_bytes(b"x" * 1000)
  return directory


def one_line_error(capsys, prog):
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith(f"{prog}: error: "), err
  return err


def test_registry_covers_every_published_file_of_the_loaders():
  registered = [r for info in datasets_command.DATASETS.values() for r in info.remotes]
  published = [value for module in (emnist, shakespeare, stackoverflow, cifar100)
               for value in vars(module).values() if isinstance(value, download.RemoteFile)]
  assert all(any(p is r for r in registered) for p in published), "add it to DATASETS"
  assert len(published) == 7


def test_list_shows_every_data_set_and_what_is_cached(tmp_path, capsys):
  cache = place(tmp_path / "cache", shakespeare.SHAKESPEARE)
  assert main(["datasets", "list", "--cache-dir", str(cache)]) == 0
  out = capsys.readouterr().out
  lines = {line.split()[0]: line for line in out.splitlines()[3:]}
  assert set(lines) == set(datasets_command.DATASETS)
  assert str(cache) in lines["shakespeare"] and "2.0 kB on disk" in lines["shakespeare"]
  assert lines["emnist"].rstrip().endswith("no") and "unknown" in lines["emnist"]
  assert "local only" in lines["femnist"] and "generated" in lines["synthetic"]


def test_where_prints_the_directory_found_through_the_environment(tmp_path, monkeypatch, capsys):
  cache = place(tmp_path / "data", emnist.DIGITS_ONLY)
  monkeypatch.setenv(download.ENV_DATA_DIR, str(cache))
  assert main(["datasets", "where", "emnist"]) == 0
  assert capsys.readouterr().out == f"{cache}\n"


def test_where_prefers_cache_dir(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv(download.ENV_DATA_DIR, str(place(tmp_path / "env", emnist.DIGITS_ONLY)))
  flag = place(tmp_path / "flag", emnist.DIGITS_ONLY)
  assert main(["datasets", "where", "emnist", "--cache-dir", str(flag)]) == 0
  assert capsys.readouterr().out == f"{flag}\n"


def test_where_not_cached_exits_1_and_says_how_to_get_it(tmp_path, capsys):
  assert main(["datasets", "where", "cifar100", "--cache-dir", str(tmp_path / "c")]) == 1
  err = one_line_error(capsys, "federax datasets where")
  assert "fed_cifar100_train.h5" in err and str(tmp_path / "c") in err
  assert "federax datasets download cifar100" in err


def test_where_stackoverflow_partly_cached_names_what_is_missing(tmp_path, capsys):
  cache = place(tmp_path / "c", stackoverflow.WORD_COUNTS)
  assert main(["datasets", "where", "stackoverflow", "--cache-dir", str(cache)]) == 1
  err = one_line_error(capsys, "federax datasets where")
  assert "stackoverflow.sqlite" in err and "stackoverflow.word_count" not in err


@pytest.mark.parametrize("name", ["femnist", "synthetic"])
def test_where_for_data_sets_federax_does_not_cache(name, capsys):
  assert main(["datasets", "where", name]) == 1
  assert "is not cached by federax" in one_line_error(capsys, "federax datasets where")


@pytest.mark.parametrize("action", ["where", "download"])
def test_unknown_name_lists_the_known_ones(action, capsys):
  assert main(["datasets", action, "emnst"]) == 2
  err = one_line_error(capsys, f"federax datasets {action}")
  assert "unknown data set 'emnst' (did you mean 'emnist'?)" in err
  assert all(name in err for name in datasets_command.DATASETS)


def test_missing_action_is_a_usage_error(capsys):
  with pytest.raises(SystemExit) as exit_info:
    main(["datasets"])
  assert exit_info.value.code == 2 and "federax datasets: error:" in capsys.readouterr().err


def test_download_fetches_verifies_and_extracts(fake_emnist, tmp_path, capsys):
  cache = tmp_path / "cache"
  assert main(["datasets", "download", "emnist", "--cache-dir", str(cache)]) == 0
  assert (cache / "a.h5").read_bytes() == b"A" * 5000 and (cache / "b.h5").is_file()
  assert not (cache / "fake_emnist.tar.bz2").exists()  # Only the extracted files are kept.
  out = capsys.readouterr().out
  assert f"emnist is now in {cache}" in out and "emnist.load_data(only_digits=True)" in out
  assert main(["datasets", "where", "emnist", "--cache-dir", str(cache)]) == 0
  assert capsys.readouterr().out == f"{cache}\n"


def test_download_of_a_cached_data_set_touches_nothing(fake_emnist, tmp_path, monkeypatch,
                                                       capsys):
  cache = place(tmp_path / "cache", fake_emnist)
  monkeypatch.setattr(download, "download", None)  # Calling it would fail.
  assert main(["datasets", "download", "emnist", "--cache-dir", str(cache)]) == 0
  assert f"emnist is already in {cache}" in capsys.readouterr().out


def test_download_shows_bytes_on_a_terminal(fake_emnist, tmp_path, monkeypatch):
  for name in ("rich", "rich.console", "rich.progress", "rich.table", "rich.text"):
    monkeypatch.setitem(sys.modules, name, None)  # The plain display, easy to read back.
  terminal = TTY()
  monkeypatch.setattr(sys, "stderr", terminal)
  assert main(["datasets", "download", "emnist", "--cache-dir", str(tmp_path / "c")]) == 0
  shown = terminal.getvalue()
  assert "emnist: fake_emnist.tar.bz2" in shown and "100%" in shown
  assert re.search(r"\d+/\d+ bytes|\d\.\d/\d\.\d kB", shown)


def test_download_with_a_bad_checksum_exits_1(archive, tmp_path, monkeypatch, capsys):
  bad = archive._replace(sha256="0" * 64)
  info = datasets_command.DATASETS["emnist"]._replace(remotes=(bad,))
  monkeypatch.setitem(datasets_command.DATASETS, "emnist", info)
  assert main(["datasets", "download", "emnist", "--cache-dir", str(tmp_path / "c")]) == 1
  err = capsys.readouterr().err
  assert err.startswith("federax datasets download: error: ") and "expected 0000" in err
  assert not (tmp_path / "c" / "a.h5").exists()


def test_download_offline_exits_1_naming_the_variable(fake_emnist, tmp_path, monkeypatch,
                                                      capsys):
  monkeypatch.setenv(download.ENV_OFFLINE, "1")
  assert main(["datasets", "download", "emnist", "--cache-dir", str(tmp_path / "c")]) == 1
  err = capsys.readouterr().err
  assert "FEDERAX_OFFLINE" in err and fake_emnist.url in err


def test_download_synthetic_has_nothing_to_do(capsys):
  assert main(["datasets", "download", "synthetic"]) == 0
  assert "nothing to download" in capsys.readouterr().out


def test_download_femnist_says_to_run_leaf(capsys):
  assert main(["datasets", "download", "femnist"]) == 2
  assert "run LEAF" in one_line_error(capsys, "federax datasets download")
