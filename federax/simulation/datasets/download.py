"""Finding data sets in a local cache, or downloading them (resumable, verified) into it.

Where files are looked for, in order: the loader's `cache_dir` argument, the `FEDERAX_DATA_DIR`
environment variable, `~/.cache/federax`. Files already present in any of them are used as they
are and the network is never touched; otherwise the archive is downloaded into the first of them
(to a `.part` file, resumed with HTTP Range requests, retried with exponential backoff), checked
against its published sha256 (or size), renamed into place, and extracted. `FEDERAX_OFFLINE=1`
forbids downloads.
"""

from __future__ import annotations

import hashlib
import http.client
import lzma
import os
import pathlib
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Optional

ENV_DATA_DIR = "FEDERAX_DATA_DIR"
ENV_OFFLINE = "FEDERAX_OFFLINE"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "federax")

Progress = Callable[[int, Optional[int]], None]
"""Called as `progress(bytes_done, bytes_total)` while downloading; `bytes_total` may be None."""


class RemoteFile(NamedTuple):
  """A published file (usually an archive) and the files it provides once extracted.

  Attributes:
    url: where it is published.
    files: the file names it provides (looked for, and extracted, flat in the cache directory).
    sha256: the published sha256 of the downloaded file, or None where none is published.
    size: its size in bytes, checked when known (the only check where no checksum exists).
    file_sha256: optional sha256 of extracted files, checked right after extraction.
  """

  url: str
  files: tuple[str, ...]
  sha256: Optional[str] = None
  size: Optional[int] = None
  file_sha256: Mapping[str, str] = {}


class DataNotFoundError(FileNotFoundError):
  """A data set's files are not on disk and could not be downloaded."""


class DownloadError(OSError):
  """A download failed after all retries."""


class ChecksumError(OSError):
  """A downloaded or extracted file does not match its published sha256 or size."""


def search_dirs(cache_dir: Optional[str | os.PathLike] = None) -> list[pathlib.Path]:
  """The directories searched for data, in order; downloads go into the first.

  Example:
    >>> search_dirs('/data')  # with FEDERAX_DATA_DIR unset
    [PosixPath('/data'), PosixPath('.../.cache/federax')]
  """
  candidates = [cache_dir, os.environ.get(ENV_DATA_DIR) or None, DEFAULT_CACHE_DIR]
  dirs: list[pathlib.Path] = []
  for candidate in candidates:
    if candidate is not None:
      path = pathlib.Path(os.path.expanduser(os.fspath(candidate))).absolute()
      if path not in dirs:
        dirs.append(path)
  return dirs


def sha256sum(path: str | os.PathLike) -> str:
  """The hex sha256 of a file, read in 1 MiB chunks."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def verify(path: str | os.PathLike, sha256: Optional[str] = None,
           size: Optional[int] = None) -> None:
  """Checks a file's size and sha256 against the expected values (None skips a check).

  Raises:
    ChecksumError: on a mismatch; the message gives both values.
  """
  if size is not None and os.path.getsize(path) != size:
    raise ChecksumError(
        f"{os.fspath(path)!r} has {os.path.getsize(path)} bytes, expected {size}: the file is "
        "truncated or not the published one.")
  if sha256 is not None:
    actual = sha256sum(path)
    if actual != sha256.lower():
      raise ChecksumError(
          f"{os.fspath(path)!r} has sha256 {actual}, expected {sha256.lower()}: the file is "
          "corrupt or not the published one.")


_RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


def _fetch_into(url: str, part: pathlib.Path, progress: Optional[Progress],
                timeout: float) -> None:
  """Streams `url` into `part`, resuming from its current size when the server allows."""
  done = part.stat().st_size if part.exists() else 0
  headers = {"User-Agent": "federax"}
  if done:
    headers["Range"] = f"bytes={done}-"
  try:
    response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout)
  except urllib.error.HTTPError as e:
    if e.code == 416 and done:
      return  # Nothing past what we hold: the .part is complete; verification decides.
    raise
  with response:
    total = None
    if done and response.status == 206:
      match = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", ""))
      total = int(match.group(1)) if match else None
      mode = "ab"
    else:
      done, mode = 0, "wb"  # A fresh download, or a server that ignored the Range header.
      length = response.headers.get("Content-Length")
      total = int(length) if length is not None else None
    with open(part, mode) as f:
      if progress is not None:
        progress(done, total)
      while chunk := response.read(1 << 20):
        f.write(chunk)
        done += len(chunk)
        if progress is not None:
          progress(done, total)
  if total is not None and done < total:
    raise ConnectionError(f"connection closed after {done} of {total} bytes")


def download(url: str, dest: str | os.PathLike, *, sha256: Optional[str] = None,
             size: Optional[int] = None, progress: Optional[Progress] = None, retries: int = 4,
             backoff: float = 1.0, timeout: float = 60.0) -> pathlib.Path:
  """Downloads `url` to `dest` through `dest.part`: resumable, retried, verified, atomic.

  Args:
    url: the file to fetch (http, https or file).
    dest: where the verified file ends up.
    sha256: the expected sha256, if published.
    size: the expected size in bytes, if known.
    progress: called as `progress(bytes_done, bytes_total)`.
    retries: attempts after the first; each resumes from what the `.part` file holds.
    backoff: seconds before the first retry, doubled on each later one.
    timeout: seconds a connection may stay silent.

  Returns:
    `dest`, as a path.

  Raises:
    DownloadError: if every attempt failed (the `.part` file is kept for a later resume).
    ChecksumError: if the download does not match `sha256` or `size` (the `.part` is deleted,
      so the next attempt starts afresh, and `dest` is never written).

  Example:
    Over the network::

      download('https://example.org/data.tar.bz2', '/tmp/data.tar.bz2', sha256='ab12...')
  """
  dest = pathlib.Path(dest)
  dest.parent.mkdir(parents=True, exist_ok=True)
  part = dest.with_name(dest.name + ".part")
  for attempt in range(retries + 1):
    try:
      _fetch_into(url, part, progress, timeout)
      break
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
      permanent = (isinstance(e, urllib.error.HTTPError) and e.code not in _RETRYABLE_HTTP)
      if permanent or attempt == retries:
        reason = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else e
        raise DownloadError(
            f"Downloading {url} failed after {attempt + 1} attempt(s): {reason}. The partial "
            f"file {os.fspath(part)!r} is kept; calling again resumes it.") from e
      time.sleep(backoff * 2**attempt)
  try:
    verify(part, sha256, size)
  except ChecksumError:
    part.unlink()
    raise
  os.replace(part, dest)
  return dest


def _archive_kind(name: str) -> str:
  if name.endswith((".tar.bz2", ".tbz2", ".tar.gz", ".tgz", ".tar.xz", ".tar")):
    return "tar"
  if name.endswith((".lzma", ".xz")):
    return "lzma"
  return "plain"


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike,
            files: Sequence[str]) -> None:
  """Extracts the named files from an archive into `dest_dir`, flat and atomically.

  A tar archive gives the members whose base names are in `files` (nothing else is written,
  so member paths cannot escape `dest_dir`); an `.lzma`/`.xz` file decompresses to its name
  without the suffix, streaming.

  Raises:
    ChecksumError: if the archive lacks one of `files` (the message lists what it holds).
  """
  archive, dest_dir = pathlib.Path(archive), pathlib.Path(dest_dir)
  kind = _archive_kind(archive.name)
  if kind == "lzma":
    target = dest_dir / archive.name.rsplit(".", 1)[0]
    part = target.with_name(target.name + ".part")
    with lzma.open(archive, "rb") as source, open(part, "wb") as out:
      shutil.copyfileobj(source, out, 1 << 20)
    os.replace(part, target)
  elif kind == "tar":
    wanted, seen = set(files), []
    with tarfile.open(archive, "r:*") as tar:
      for member in tar:
        name = os.path.basename(member.name)
        seen.append(member.name)
        if member.isfile() and name in wanted:
          part = dest_dir / (name + ".part")
          with tar.extractfile(member) as source, open(part, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
          os.replace(part, dest_dir / name)
          wanted.discard(name)
    if wanted:
      raise ChecksumError(
          f"Archive {os.fspath(archive)!r} lacks {sorted(wanted)}; it holds {seen[:10]}. It is "
          "not the expected archive: delete it and download again.")
  missing = [f for f in files if not (dest_dir / f).is_file()]
  if missing:
    raise ChecksumError(f"After extracting {os.fspath(archive)!r}, {missing} are still missing "
                        f"from {os.fspath(dest_dir)!r}.")


def _not_found(remote: RemoteFile, dirs: Sequence[pathlib.Path], reason: str
               ) -> DataNotFoundError:
  looked = "\n".join(f"  {d / f}" for d in dirs for f in remote.files)
  return DataNotFoundError(
      f"Data files {list(remote.files)} were not found. Looked for:\n{looked}\n{reason}\n"
      f"To provide them, download {remote.url} yourself and place its files "
      f"{list(remote.files)} in one of those directories, or set {ENV_DATA_DIR} to the "
      "directory that holds them.")


def ensure(remote: RemoteFile, cache_dir: Optional[str | os.PathLike] = None,
           progress: Optional[Progress] = None, **download_kwargs) -> pathlib.Path:
  """Returns a directory holding all of `remote.files`, downloading them only if none does.

  Args:
    remote: the published archive and the files wanted from it.
    cache_dir: the loader's `cache_dir` argument (searched first; see `search_dirs`).
    progress: called as `progress(bytes_done, bytes_total)` while downloading.
    **download_kwargs: passed to `download` (retries, backoff, timeout).

  Returns:
    The first searched directory that holds every file of `remote.files`.

  Raises:
    DataNotFoundError: if the files are nowhere and downloading is disabled or fails; the
      message names each path looked at and how to provide the files.
    ChecksumError: if the download or an extracted file fails verification.

  Example:
    With `URL` the address of an archive holding the two files::

      directory = ensure(RemoteFile(URL, ('shakespeare_train.h5', 'shakespeare_test.h5')))
  """
  dirs = search_dirs(cache_dir)
  for directory in dirs:
    if all((directory / f).is_file() for f in remote.files):
      return directory
  if os.environ.get(ENV_OFFLINE, "").lower() not in ("", "0", "false", "no"):
    raise _not_found(remote, dirs, f"Downloads are disabled ({ENV_OFFLINE} is set).")
  target = dirs[0]
  name = urllib.parse.urlparse(remote.url).path.rsplit("/", 1)[-1]
  archive = target / name
  if archive.is_file():  # Left by an interrupted extraction: reuse it only if it verifies.
    try:
      verify(archive, remote.sha256, remote.size)
    except ChecksumError:
      archive.unlink()
  if not archive.is_file():
    try:
      download(remote.url, archive, sha256=remote.sha256, size=remote.size, progress=progress,
               **download_kwargs)
    except DownloadError as e:
      raise _not_found(remote, dirs, str(e)) from e
  if _archive_kind(name) != "plain":
    extract(archive, target, remote.files)
    for f, digest in remote.file_sha256.items():
      try:
        verify(target / f, digest)
      except ChecksumError:
        (target / f).unlink()
        raise
    archive.unlink()  # The extracted files are what loaders read; the archive is only bulk.
  return target
