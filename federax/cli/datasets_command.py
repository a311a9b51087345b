"""`federax datasets list | download NAME | where NAME`: the data sets and their local cache.

The remote files are the loaders' own `download.RemoteFile` constants (this module only lists
them), and the cache is searched exactly as the loaders search it (`download.search_dirs`: the
`--cache-dir` flag, then `$FEDERAX_DATA_DIR`, then `~/.cache/federax`), so `federax datasets
download emnist` fetches what `emnist.load_data()` then reads without touching the network.
"""

from __future__ import annotations

import argparse
import difflib
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple, Optional

from federax.cli._errors import CLIError, one_line
from federax.cli.progress import DownloadProgress, format_bytes, print_table
from federax.simulation.datasets import (cifar100, download, emnist, shakespeare,
                                         stackoverflow)

NOT_CACHED = 1  # `where`'s exit status when the files are not on disk; also a failed download.
INTERRUPTED = 130


class DatasetInfo(NamedTuple):
  """A data set as the command shows it.

  Attributes:
    name: the command-line name.
    description: one line: what it is, partitioned how.
    remotes: the published files to download; empty where there is nothing to download.
    loader: how to load it in Python.
    no_download: why there is nothing to download (where `remotes` is empty).
  """

  name: str
  description: str
  remotes: tuple[download.RemoteFile, ...]
  loader: str
  no_download: str = ""


_MODULE = "federax.simulation.datasets"
DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("emnist", "Federated EMNIST, digits only: 3,383 writers, 10 classes",
                (emnist.DIGITS_ONLY,), f"{_MODULE}.emnist.load_data(only_digits=True)"),
    DatasetInfo("emnist-full", "Federated EMNIST, all characters: 3,400 writers, 62 classes",
                (emnist.ALL_CHARACTERS,), f"{_MODULE}.emnist.load_data(only_digits=False)"),
    DatasetInfo("shakespeare", "Shakespeare's lines by play and role: 715 clients",
                (shakespeare.SHAKESPEARE,), f"{_MODULE}.shakespeare.load_data()"),
    DatasetInfo("stackoverflow", "Stack Overflow posts by user, word and tag counts",
                (stackoverflow.STACKOVERFLOW, stackoverflow.WORD_COUNTS,
                 stackoverflow.TAG_COUNTS), f"{_MODULE}.stackoverflow.load_data()"),
    DatasetInfo("cifar100", "CIFAR-100, Pachinko-partitioned: 500 train, 100 test clients",
                (cifar100.FED_CIFAR100,), f"{_MODULE}.cifar100.load_data()"),
    DatasetInfo("femnist", "FEMNIST from LEAF's own output, by writer: 62 classes", (),
                f"{_MODULE}.femnist.load_data(data_dir)",
                "LEAF's FEMNIST is not published as files: run LEAF "
                "(github.com/TalwalkarLab/leaf) and pass its output directory to "
                f"{_MODULE}.femnist.load_data(data_dir)"),
    DatasetInfo("synthetic", "FedProx's Synthetic(alpha, beta), generated on the fly", (),
                f"{_MODULE}.synthetic.load_data(alpha, beta)",
                f"it is generated on the fly by {_MODULE}.synthetic.load_data(alpha, beta)"),
)}


def get_dataset(name: str) -> DatasetInfo:
  """The registered data set called `name`.

  Raises:
    CLIError: for an unknown name; the message lists the known ones.
  """
  if name in DATASETS:
    return DATASETS[name]
  close = difflib.get_close_matches(name, DATASETS, n=1)
  hint = f" (did you mean {close[0]!r}?)" if close else ""
  raise CLIError(f"unknown data set {name!r}{hint}; known: {', '.join(DATASETS)}.")


def locate(remote: download.RemoteFile, cache_dir: Optional[str | os.PathLike] = None
           ) -> Optional[pathlib.Path]:
  """The first searched directory holding all of `remote.files` (as `download.ensure` looks)."""
  for directory in download.search_dirs(cache_dir):
    if all((directory / f).is_file() for f in remote.files):
      return directory
  return None


def _archive_name(remote: download.RemoteFile) -> str:
  return remote.url.rsplit("/", 1)[-1]


def _size_text(info: DatasetInfo, found: Sequence[Optional[pathlib.Path]]) -> str:
  """The download's size where published; else what the cached files take; else 'unknown'."""
  if not info.remotes:
    return "-"
  if all(r.size is not None for r in info.remotes):
    return format_bytes(sum(r.size for r in info.remotes))
  if all(d is not None for d in found):
    on_disk = sum((d / f).stat().st_size for d, r in zip(found, info.remotes) for f in r.files)
    return f"{format_bytes(on_disk)} on disk"
  return "unknown"


def _cached_text(info: DatasetInfo, found: Sequence[Optional[pathlib.Path]]) -> str:
  if not info.remotes:
    return "local only (LEAF)" if info.name == "femnist" else "generated"
  if all(d is not None for d in found):
    return ", ".join(dict.fromkeys(os.fspath(d) for d in found))
  if any(d is not None for d in found):
    return f"partly ({sum(d is not None for d in found)} of {len(found)} archives)"
  return "no"


def list_datasets(args: argparse.Namespace) -> int:
  rows = []
  for info in DATASETS.values():
    found = [locate(r, args.cache_dir) for r in info.remotes]
    rows.append((info.name, info.description, _size_text(info, found),
                 _cached_text(info, found)))
  print_table("federax data sets", ("name", "description", "size", "cached"), rows)
  return 0


def check_writable(directory: pathlib.Path, flag: bool) -> None:
  """Refuses a cache directory that cannot be created or written, before any download.

  Args:
    directory: the directory downloads go into.
    flag: whether it was given as `--cache-dir` (the message then names the flag).

  Raises:
    CLIError: naming the directory, or the ancestor that stops its creation.
  """
  name = f"--cache-dir {os.fspath(directory)}" if flag else f"the cache {os.fspath(directory)}"
  existing = directory
  while not existing.exists() and existing != existing.parent:
    existing = existing.parent
  if not existing.is_dir():
    raise CLIError(f"{name} cannot be created: {os.fspath(existing)} is not a directory.")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise CLIError((f"{name} is not writable" if existing == directory else
                    f"{name} cannot be created: {os.fspath(existing)} is not writable")
                   + "; pass a writable --cache-dir.")


def download_dataset(args: argparse.Namespace) -> int:
  info = get_dataset(args.name)
  if not info.remotes:
    if info.name == "femnist":
      raise CLIError(f"femnist cannot be downloaded: {info.no_download}.")
    print(f"{info.name}: nothing to download, {info.no_download}.")
    return 0
  directories, fetched = [], False
  for remote in info.remotes:
    found = locate(remote, args.cache_dir)
    if found is not None:
      directories.append(found)
      continue
    fetched = True
    check_writable(download.search_dirs(args.cache_dir)[0], args.cache_dir is not None)
    try:
      with DownloadProgress(f"{info.name}: {_archive_name(remote)}") as progress:
        directories.append(download.ensure(remote, args.cache_dir, progress=progress))
    except OSError as e:  # Not found, a failed checksum, a full disk: one line, status 1.
      print(f"{args.prog}: error: {one_line(str(e))}", file=sys.stderr)
      return NOT_CACHED
    except KeyboardInterrupt:
      print(f"{args.prog}: interrupted; the partial download is kept and the same command "
            "resumes it.", file=sys.stderr)
      return INTERRUPTED
  where = ", ".join(dict.fromkeys(os.fspath(d) for d in directories))
  print(f"{info.name} is {'now' if fetched else 'already'} in {where}; load it with "
        f"{info.loader}.")
  return 0


def where_dataset(args: argparse.Namespace) -> int:
  info = get_dataset(args.name)
  if not info.remotes:
    raise CLIError(f"{info.name} is not cached by federax: {info.no_download}.", NOT_CACHED)
  found = [locate(r, args.cache_dir) for r in info.remotes]
  missing = [f for d, r in zip(found, info.remotes) if d is None for f in r.files]
  if missing:
    looked = ", ".join(os.fspath(d) for d in download.search_dirs(args.cache_dir))
    raise CLIError(f"{info.name} is not cached: {', '.join(missing)} not found in {looked}; "
                   f"run `federax datasets download {info.name}`.", NOT_CACHED)
  for directory in dict.fromkeys(found):
    print(os.fspath(directory))
  return 0


_ACTIONS = {
    "list": (list_datasets, "list the data sets, their size and whether they are cached"),
    "download": (download_dataset, "download a data set into the cache (resumable)"),
    "where": (where_dataset, "print the directory holding a data set's cached files"),
}


def add_parser(subparsers: Any) -> None:
  """Registers `federax datasets {list,download,where}`."""
  parser = subparsers.add_parser(
      "datasets", help="list, download and locate the federated data sets",
      description="The federated data sets federax loads, and their local cache: searched in "
      f"--cache-dir, then ${download.ENV_DATA_DIR}, then ~/.cache/federax; downloads go to the "
      f"first. ${download.ENV_OFFLINE}=1 forbids downloads.")
  actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
  for action, (_, help_text) in _ACTIONS.items():
    sub = actions.add_parser(action, help=help_text, description=help_text[0].upper()
                             + help_text[1:] + ".")
    if action != "list":
      sub.add_argument("name", metavar="NAME", help=f"one of: {', '.join(DATASETS)}")
    sub.add_argument("--cache-dir", metavar="DIR", default=None,
                     help="the directory searched first (and downloaded into)")
    sub.set_defaults(func=run, prog=sub.prog, action=action)


def run(args: argparse.Namespace) -> int:
  """Runs `federax datasets ACTION`."""
  return _ACTIONS[args.action][0](args)
