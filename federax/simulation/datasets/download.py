"""Finding data sets in a local cache, or downloading them (resumable, verified) into it.

Where files are looked for, in order: the loader's `cache_dir` argument, the `FEDERAX_DATA_DIR`
environment variable, `~/.cache/federax`. Files already present in any of them are used as they
are and the network is never touched; otherwise the archive is downloaded into the first of them
(to a `.part` file, resumed with HTTP Range requests, retried with exponential backoff), checked
against its published sha256 (or size), renamed into place, and extracted. `FEDERAX_OFFLINE=1`
forbids downloads.

A hostile or broken server cannot make it misbehave: a download stops at the published size,
gives up at an overall deadline however slowly bytes trickle in, and an archive extracts to no
more than its files' published sizes (or, where none is published, `MAX_EXPANSION` times the
archive). Files found in the cache are checked against their published sizes and sha256 before
use. One process at a time downloads a cache entry (an advisory lock); the others wait, then
use what it wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import pathlib
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Optional

from federax.simulation.datasets import _archives, _http, _lock
from federax.simulation.datasets._archives import MAX_EXPANSION as MAX_EXPANSION

ENV_DATA_DIR = "FEDERAX_DATA_DIR"
ENV_OFFLINE = "FEDERAX_OFFLINE"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "federax")
DEFAULT_DEADLINE_S = 6 * 3600.0
"""How long one `download` (all its attempts) or one wait for another process may take."""

Progress = Callable[[int, Optional[int]], None]
"""Called as `progress(bytes_done, bytes_total)` while downloading; `bytes_total` may be None."""


class RemoteFile(NamedTuple):
  """A published file (usually an archive) and the files it provides once extracted.

  Attributes:
    url: where it is published.
    files: the file names it provides (looked for, and extracted, flat in the cache directory).
    sha256: the published sha256 of the downloaded file, or None where none is published.
    size: its size in bytes, checked when known (the only check where no checksum exists).
    file_sha256: optional sha256 of extracted files, checked after extraction and whenever
      the files are found in a cache.
    file_sizes: optional sizes in bytes of extracted files: extraction stops past them, and
      cached files of another size are refused.
  """

  url: str
  files: tuple[str, ...]
  sha256: Optional[str] = None
  size: Optional[int] = None
  file_sha256: Mapping[str, str] = {}
  file_sizes: Mapping[str, int] = {}


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


def _kept(part: pathlib.Path) -> str:
  """What a failed download leaves behind, in words."""
  held = part.stat().st_size if part.is_file() else 0
  if held:
    return (f"The partial file {os.fspath(part)!r} ({held} bytes) is kept; calling again "
            "resumes it.")
  return "Nothing was downloaded."


def download(url: str, dest: str | os.PathLike, *, sha256: Optional[str] = None,
             size: Optional[int] = None, progress: Optional[Progress] = None, retries: int = 4,
             backoff: float = 1.0, timeout: float = 60.0,
             deadline: Optional[float] = DEFAULT_DEADLINE_S) -> pathlib.Path:
  """Downloads `url` to `dest` through `dest.part`: resumable, retried, verified, atomic.

  Args:
    url: the file to fetch (http, https or file).
    dest: where the verified file ends up.
    sha256: the expected sha256, if published.
    size: the expected size in bytes, if known; the transfer stops as soon as the server sends
      more.
    progress: called as `progress(bytes_done, bytes_total)`.
    retries: attempts after the first; each resumes from what the `.part` file holds.
    backoff: seconds before the first retry, doubled on each later one.
    timeout: seconds a connection may stay silent.
    deadline: seconds all attempts together may take (however slowly the bytes come); None
      for no limit.

  Returns:
    `dest`, as a path.

  Raises:
    DownloadError: if every attempt failed, or the deadline passed (the `.part` file is kept
      for a later resume).
    ChecksumError: if the download does not match `sha256` or `size` (the `.part` is deleted,
      so the next attempt starts afresh, and `dest` is never written).

  Example:
    Over the network::

      download('https://example.org/data.tar.bz2', '/tmp/data.tar.bz2', sha256='ab12...')
  """
  dest = pathlib.Path(dest)
  dest.parent.mkdir(parents=True, exist_ok=True)
  part = dest.with_name(dest.name + ".part")
  stop_at = None if deadline is None else time.monotonic() + deadline
  for attempt in range(retries + 1):
    try:
      _http.fetch_into(url, part, progress, timeout, size, stop_at)
      break
    except _http.DeadlineExceeded:
      raise DownloadError(
          f"Downloading {url} did not finish within its deadline of {deadline:g} s (attempt "
          f"{attempt + 1}); the server is too slow or stalled. {_kept(part)}") from None
    except _http.WrongSize as e:
      part.unlink(missing_ok=True)
      raise ChecksumError(str(e)) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
      permanent = (isinstance(e, urllib.error.HTTPError) and e.code not in _RETRYABLE_HTTP)
      wait = backoff * 2**attempt
      late = stop_at is not None and time.monotonic() + wait >= stop_at
      if permanent or attempt == retries or late:
        reason = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else e
        when = " (its deadline leaves no time for another)" if late and not permanent else ""
        raise DownloadError(f"Downloading {url} failed after {attempt + 1} attempt(s){when}: "
                            f"{reason}. {_kept(part)}") from e
      time.sleep(wait)
  try:
    verify(part, sha256, size)
  except ChecksumError:
    part.unlink()
    raise
  os.replace(part, dest)
  return dest


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike, files: Sequence[str],
            sizes: Optional[Mapping[str, int]] = None) -> None:
  """Extracts the named files from an archive into `dest_dir`, flat, atomically and bounded.

  A tar archive gives the members whose base names are in `files` (nothing else is written,
  so member paths cannot escape `dest_dir`); an `.lzma`/`.xz` file decompresses to its name
  without the suffix, streaming. No file is written past its size in `sizes` (or, where none
  is given, `MAX_EXPANSION` times the archive's size): an archive bomb stops there.

  Args:
    archive: the downloaded archive.
    dest_dir: where the files go.
    files: the file names wanted.
    sizes: the published sizes of (some of) the files, in bytes.

  Raises:
    ChecksumError: if the archive is corrupt, lacks one of `files` (the message lists what it
      holds), or a file would exceed its bound or differs from its published size. Nothing
      partial is left in `dest_dir`.
  """
  try:
    _archives.extract(pathlib.Path(archive), pathlib.Path(dest_dir), files, dict(sizes or {}))
  except _archives.ArchiveError as e:
    raise ChecksumError(str(e)) from None


_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, this process.


def _verify_cached(remote: RemoteFile, directory: pathlib.Path) -> None:
  """Checks cached files against their published sizes and sha256 (each file hashed once).

  Raises:
    ChecksumError: naming the file, what was expected and what was found.
  """
  for name in remote.files:
    path = directory / name
    stat = path.stat()
    expected_size = remote.file_sizes.get(name)
    expected_sha = remote.file_sha256.get(name)
    problem = None
    if expected_size is not None and stat.st_size != expected_size:
      problem = f"has {stat.st_size} bytes, expected {expected_size}"
    elif expected_sha is not None:
      key = (os.fspath(path), stat.st_size, stat.st_mtime_ns)
      actual = _verified.get(key) or sha256sum(path)
      if actual != expected_sha.lower():
        problem = f"has sha256 {actual}, expected {expected_sha.lower()}"
      else:
        _verified[key] = actual
    if problem:
      raise ChecksumError(
          f"The cached file {os.fspath(path)!r} {problem}: it is damaged or not the published "
          f"file. Delete it (federax then downloads {remote.url} again) or replace it with the "
          "published file.")


def _not_found(remote: RemoteFile, dirs: Sequence[pathlib.Path], reason: str
               ) -> DataNotFoundError:
  looked = "\n".join(f"  {d / f}" for d in dirs for f in remote.files)
  return DataNotFoundError(
      f"Data files {list(remote.files)} were not found. Looked for:\n{looked}\n{reason}\n"
      f"To provide them, download {remote.url} yourself and place its files "
      f"{list(remote.files)} in one of those directories, or set {ENV_DATA_DIR} to the "
      "directory that holds them.")


def _present(remote: RemoteFile, directory: pathlib.Path) -> bool:
  if not all((directory / f).is_file() for f in remote.files):
    return False
  _verify_cached(remote, directory)
  return True


def ensure(remote: RemoteFile, cache_dir: Optional[str | os.PathLike] = None,
           progress: Optional[Progress] = None, **download_kwargs) -> pathlib.Path:
  """Returns a directory holding all of `remote.files`, downloading them only if none does.

  Files found are checked against `remote.file_sizes` and `remote.file_sha256` first. A
  download holds a lock on its cache entry: a second process (or thread) asking for the same
  files waits for it, then uses what it extracted.

  Args:
    remote: the published archive and the files wanted from it.
    cache_dir: the loader's `cache_dir` argument (searched first; see `search_dirs`).
    progress: called as `progress(bytes_done, bytes_total)` while downloading.
    **download_kwargs: passed to `download` (retries, backoff, timeout, deadline); the
      deadline also bounds the wait for another process.

  Returns:
    The first searched directory that holds every file of `remote.files`.

  Raises:
    DataNotFoundError: if the files are nowhere and downloading is disabled or fails (or the
      cache directory cannot be written); the message names each path looked at and how to
      provide the files.
    ChecksumError: if a cached file, the download or an extracted file fails verification,
      or the archive is corrupt (it is deleted: the next call downloads it again).

  Example:
    With `URL` the address of an archive holding the two files::

      directory = ensure(RemoteFile(URL, ('shakespeare_train.h5', 'shakespeare_test.h5')))
  """
  dirs = search_dirs(cache_dir)
  for directory in dirs:
    if _present(remote, directory):
      return directory
  if os.environ.get(ENV_OFFLINE, "").lower() not in ("", "0", "false", "no"):
    raise _not_found(remote, dirs, f"Downloads are disabled ({ENV_OFFLINE} is set).")
  target = dirs[0]
  name = urllib.parse.urlparse(remote.url).path.rsplit("/", 1)[-1]
  archive = target / name
  deadline = download_kwargs.get("deadline", DEFAULT_DEADLINE_S)
  stop_at = None if deadline is None else time.monotonic() + deadline
  with contextlib.ExitStack() as stack:
    try:
      target.mkdir(parents=True, exist_ok=True)
      waited = stack.enter_context(_lock.locked(target / f".{name}.lock", stop_at))
    except _lock.LockTimeout as e:
      raise _not_found(remote, dirs, f"{e} (downloading {name}) past the deadline of "
                       f"{deadline:g} s.") from None
    except OSError as e:
      raise _not_found(remote, dirs, f"The cache directory {os.fspath(target)!r} cannot be "
                       f"written ({e.strerror or e}); pass a writable cache_dir.") from None
    if waited and _present(remote, target):
      return target  # Another process downloaded it while we waited.
    return _fetch_and_extract(remote, dirs, archive, progress, download_kwargs)


def _fetch_and_extract(remote: RemoteFile, dirs: Sequence[pathlib.Path], archive: pathlib.Path,
                       progress: Optional[Progress], download_kwargs: dict) -> pathlib.Path:
  """Downloads `archive` (unless a verified copy is there) and extracts it (lock held)."""
  target = archive.parent
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
  if _archives.archive_kind(archive.name) != "plain":
    try:
      extract(archive, target, remote.files, remote.file_sizes)
      for f, digest in remote.file_sha256.items():
        try:
          verify(target / f, digest)
        except ChecksumError:
          (target / f).unlink()
          raise
    except ChecksumError as e:
      # A corrupt archive must not block every later call: delete it so the next one
      # downloads it afresh.
      archive.unlink(missing_ok=True)
      raise ChecksumError(f"{e} The archive was deleted; calling again downloads it afresh."
                          ) from None
    archive.unlink()  # The extracted files are what loaders read; the archive is only bulk.
  return target
