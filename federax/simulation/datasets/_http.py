"""Streams one URL into a file: resumed with Range, stopped at a size and at a deadline.

A socket timeout only bounds the silence between two packets: a server that sends one byte a
second never trips it. A watchdog thread shuts the download's sockets down at its deadline, so a
read blocked in the headers or in the body returns at once, and the transfer stops as soon as a
server sends more than the file's size.
"""

from __future__ import annotations

import http.client
import pathlib
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Optional

_CHUNK = 1 << 20
Progress = Callable[[int, Optional[int]], None]


class DeadlineExceeded(Exception):
  """The overall deadline passed (not an OSError: never retried)."""


class _Watchdog:
  """Shuts the sockets of a download down at its deadline, whatever phase it is stuck in."""

  def __init__(self, stop_at: Optional[float]):
    self.sockets: list[socket.socket] = []
    self._lock = threading.Lock()
    self._expired = False
    self._timer = None
    if stop_at is not None:
      self._timer = threading.Timer(max(0.0, stop_at - time.monotonic()), self._expire)
      self._timer.daemon = True
      self._timer.start()

  def _expire(self) -> None:
    with self._lock:
      self._expired = True
      for sock in self.sockets:
        try:
          sock.shutdown(socket.SHUT_RDWR)
        except OSError:
          pass  # Already closed.

  def add(self, sock: socket.socket) -> None:
    with self._lock:
      self.sockets.append(sock)
      if self._expired:
        sock.shutdown(socket.SHUT_RDWR)

  def cancel(self) -> None:
    if self._timer is not None:
      self._timer.cancel()


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
  """urllib's opener, with every HTTP(S) connection's socket handed to `watchdog`."""

  class Watched:  # A mixin over urllib's HTTP and HTTPS handlers.
    def do_open(self, http_class, req, **kwargs):
      def connection(host, **connection_kwargs):
        conn = http_class(host, **connection_kwargs)
        connect = conn.connect

        def watched_connect():
          connect()
          watchdog.add(conn.sock)
        conn.connect = watched_connect
        return conn
      return super().do_open(connection, req, **kwargs)

  class HTTP(Watched, urllib.request.HTTPHandler):
    pass

  class HTTPS(Watched, urllib.request.HTTPSHandler):
    pass

  return urllib.request.build_opener(HTTP, HTTPS)


def _int_header(value: Optional[str]) -> Optional[int]:
  """A non-negative integer header, or None where absent or malformed (as http.client does)."""
  try:
    number = int(value) if value is not None else None
  except ValueError:
    return None
  return number if number is not None and number >= 0 else None


class WrongSize(Exception):
  """The server announced another size than the published one, or sent more (see message)."""


def fetch_into(url: str, part: pathlib.Path, progress: Optional[Progress], timeout: float,
               size: Optional[int], stop_at: Optional[float]) -> None:
  """Streams `url` into `part`, resuming from its current size when the server allows.

  Raises:
    WrongSize: if the server announces or sends more than `size` bytes.
    DeadlineExceeded: past `stop_at` (a `time.monotonic()` time).
    urllib.error.URLError, http.client.HTTPException, OSError: as urllib raises them (a
      dropped connection is a `ConnectionError`).
  """
  done = part.stat().st_size if part.exists() else 0
  headers = {"User-Agent": "federax"}
  if done:
    headers["Range"] = f"bytes={done}-"
  watchdog = _Watchdog(stop_at)
  expired = lambda: stop_at is not None and time.monotonic() >= stop_at  # noqa: E731
  try:
    try:
      response = _opener(watchdog).open(urllib.request.Request(url, headers=headers),
                                        timeout=timeout)
    except urllib.error.HTTPError as e:
      if e.code == 416 and done:
        return  # Nothing past what we hold: the .part is complete; verification decides.
      raise
    except (urllib.error.URLError, http.client.HTTPException, OSError):
      if expired():
        raise DeadlineExceeded() from None
      raise
    with response:
      if done and response.status == 206:
        match = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", ""))
        total = int(match.group(1)) if match else None
        mode = "ab"
      else:
        done, mode = 0, "wb"  # A fresh download, or a server that ignored the Range header.
        total = _int_header(response.headers.get("Content-Length"))
      if size is not None and total is not None and total != size:
        raise WrongSize(
            f"{url} announces {total} bytes, but its published size is {size}: it is not the "
            "published file. Nothing was kept.")
      limit = size if size is not None else total
      read = getattr(response, "read1", response.read)  # read1: returns what has arrived.
      with open(part, mode) as f:
        if progress is not None:
          progress(done, total)
        while True:
          try:
            chunk = read(_CHUNK)
          except (http.client.HTTPException, OSError):
            if expired():
              raise DeadlineExceeded() from None
            raise
          if not chunk:
            break
          if limit is not None and done + len(chunk) > limit:
            said = "published" if size is not None else "announced"
            raise WrongSize(
                f"{url} sent more than the {limit} bytes {said} for it; it is not the "
                "published file. Stopped there; nothing was kept.")
          f.write(chunk)
          done += len(chunk)
          if progress is not None:
            progress(done, total)
          if expired():
            raise DeadlineExceeded()
      if expired():
        raise DeadlineExceeded()
  finally:
    watchdog.cancel()
  if total is not None and done < total:
    raise ConnectionError(f"connection closed after {done} of {total} bytes")


