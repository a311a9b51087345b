"""Extracts the wanted files of a downloaded archive, flat, atomically and bounded in size.

No file is written past its published size, or, where none is published, `MAX_EXPANSION` times
the archive's size: an archive bomb stops there, before the disk fills. Any failure leaves
nothing extracted behind.
"""

from __future__ import annotations

import gzip
import lzma
import os
import pathlib
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

MAX_EXPANSION = 1000
"""Where no size is published for an extracted file, the most it may hold: this many times the
archive's size. Real data compresses 3-30 fold; an archive bomb, thousands of times."""
_CHUNK = 1 << 20
# What tarfile and the decompressors raise on bad bytes (bz2 and gzip raise OSError, EOFError).
_READ_ERRORS = (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError, gzip.BadGzipFile,
                ValueError, OSError)


class ArchiveError(Exception):
  """The archive is corrupt, lacks a file, or extracts to more than its bounds (see message)."""


class _Corrupt(Exception):
  """Reading (decompressing) the archive failed: its bytes are bad, not the disk."""


class _TooBig(Exception):
  """A file exceeds its bound or differs from its published size."""


def archive_kind(name: str) -> str:
  """'tar', 'lzma' (also .xz: one compressed file) or 'plain' (used as downloaded)."""
  if name.endswith((".tar.bz2", ".tbz2", ".tar.gz", ".tgz", ".tar.xz", ".tar")):
    return "tar"
  if name.endswith((".lzma", ".xz")):
    return "lzma"
  return "plain"


def _reading(call: Any, *args: Any) -> Any:
  """`call(*args)`, a read of the archive: its errors mean corrupt bytes."""
  try:
    return call(*args)
  except _READ_ERRORS as e:
    raise _Corrupt(" ".join(f"{type(e).__name__}: {e}".split())) from None


def _copy_bounded(source: Any, target: pathlib.Path, limit: int) -> int:
  """Copies `source` to `target` through `target.part`; more than `limit` bytes is refused."""
  part = target.with_name(target.name + ".part")
  written = 0
  try:
    with open(part, "wb") as out:
      # One chunk decompressed at a time: memory stays bounded too.
      while chunk := _reading(source.read, _CHUNK):
        written += len(chunk)
        if written > limit:
          raise _TooBig(f"{target.name!r} holds more than {limit} bytes")
        out.write(chunk)
  except BaseException:
    part.unlink(missing_ok=True)
    raise
  os.replace(part, target)
  return written


def _extract_tar(archive: pathlib.Path, dest_dir: pathlib.Path, limits: Mapping[str, int],
                 written: dict[str, int]) -> None:
  wanted, seen = set(limits), []
  with _reading(tarfile.open, archive, "r:*") as tar:
    members = iter(tar)
    while (member := _reading(next, members, None)) is not None:
      name = os.path.basename(member.name)
      seen.append(member.name)
      if not (member.isfile() and name in wanted):
        continue  # Only the wanted names, flat: no member path can escape `dest_dir`.
      if member.size > limits[name]:  # Its header says so: refused before writing.
        raise _TooBig(f"{name!r} is {member.size} bytes in its tar header, more than "
                      f"{limits[name]}")
      with tar.extractfile(member) as source:
        written[name] = _copy_bounded(source, dest_dir / name, limits[name])
      wanted.discard(name)
  if wanted:
    raise ArchiveError(
        f"Archive {os.fspath(archive)!r} lacks {sorted(wanted)}; it holds {seen[:10]}. It is "
        "not the expected archive: delete it and download again.")


def extract(archive: pathlib.Path, dest_dir: pathlib.Path, files: Sequence[str],
            sizes: Mapping[str, int]) -> None:
  """Extracts `files` from `archive` into `dest_dir`; see `download.extract`.

  Raises:
    ArchiveError: the archive is corrupt or lacks a file, or a file exceeds its bound or
      differs from its published size. Nothing extracted is left behind.
  """
  bound = MAX_EXPANSION * max(archive.stat().st_size, 1)
  written: dict[str, int] = {}
  try:
    if archive_kind(archive.name) == "lzma":
      target = dest_dir / archive.name.rsplit(".", 1)[0]
      with _reading(lzma.open, archive, "rb") as source:
        written[target.name] = _copy_bounded(source, target, sizes.get(target.name, bound))
    else:
      _extract_tar(archive, dest_dir, {f: sizes.get(f, bound) for f in files}, written)
    for name, size in sizes.items():
      if name in written and written[name] != size:
        raise _TooBig(f"{name!r} is {written[name]} bytes, its published size is {size}")
  except (_Corrupt, _TooBig, ArchiveError) as e:
    for name in written:
      (dest_dir / name).unlink(missing_ok=True)
    if isinstance(e, ArchiveError):
      raise
    if isinstance(e, _Corrupt):
      raise ArchiveError(f"Archive {os.fspath(archive)!r} is corrupt ({e}): it is not the "
                         "published archive; nothing was extracted.") from None
    unbounded = [f for f in files if f not in sizes]
    note = (f" (files without a published size may hold up to {MAX_EXPANSION} times the "
            "archive)" if unbounded else "")
    raise ArchiveError(f"Archive {os.fspath(archive)!r} does not extract to the published "
                       f"files: {e}{note}. It is not the published archive (or is an archive "
                       "bomb); nothing was extracted.") from None
  missing = [f for f in files if not (dest_dir / f).is_file()]
  if missing:
    raise ArchiveError(f"After extracting {os.fspath(archive)!r}, {missing} are still missing "
                       f"from {os.fspath(dest_dir)!r}.")
