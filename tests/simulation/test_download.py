"""Tests for the cache lookup and the resumable, verified downloads, on a local HTTP server."""

import hashlib
import http.server
import io
import lzma
import os
import pathlib
import re
import socket
import tarfile
import threading

import pytest

from federax.simulation.datasets import download

PAYLOAD = bytes(range(256)) * 4000  # 1 MB: spans several read chunks.
SHA = hashlib.sha256(PAYLOAD).hexdigest()
# The shared data lives next to the project root (../shared/data), never inside it.
DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
SHAKESPEARE = DATA / "shakespeare-tff"


class Server:
  """A local server of fixed files that honours Range and can misbehave on request."""

  def __init__(self):
    self.files: dict[str, bytes] = {}
    self.log: list[tuple[str, str | None]] = []  # (path, Range header) of each request
    self.fail_first = 0  # Answer this many requests with 503.
    self.cut_first = 0  # Send only half the body (then close) on this many requests.
    self.ignore_range = False
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def log_message(self, *args):
        pass

      def do_GET(self):
        server.log.append((self.path, self.headers.get("Range")))
        if server.fail_first:
          server.fail_first -= 1
          self.send_error(503)
          return
        body = server.files.get(self.path)
        if body is None:
          self.send_error(404)
          return
        start, status = 0, 200
        match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if match and not server.ignore_range:
          start = int(match.group(1))
          if start >= len(body):
            self.send_error(416)
            return
          status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) - start))
        if status == 206:
          self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        chunk = body[start:]
        if server.cut_first:
          server.cut_first -= 1
          chunk = chunk[:len(chunk) // 2]
          self.close_connection = True
        self.wfile.write(chunk)

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
    self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
    self.thread.start()

  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()


@pytest.fixture
def server():
  s = Server()
  s.files["/data.bin"] = PAYLOAD
  yield s
  s.close()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
  """No FEDERAX_DATA_DIR, a HOME of our own (so ~/.cache/federax is empty), downloads allowed."""
  monkeypatch.delenv(download.ENV_DATA_DIR, raising=False)
  monkeypatch.delenv(download.ENV_OFFLINE, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  return tmp_path


def test_full_download_verifies_and_reports_progress(server, isolated):
  calls = []
  dest = download.download(server.url + "/data.bin", isolated / "out" / "data.bin", sha256=SHA,
                           size=len(PAYLOAD), progress=lambda d, t: calls.append((d, t)))
  assert dest.read_bytes() == PAYLOAD
  assert not (isolated / "out" / "data.bin.part").exists()
  assert calls[0] == (0, len(PAYLOAD)) and calls[-1] == (len(PAYLOAD), len(PAYLOAD))
  assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))


def test_resumes_a_truncated_part_with_range(server, isolated):
  dest = isolated / "data.bin"
  (isolated / "data.bin.part").write_bytes(PAYLOAD[:300_000])
  calls = []
  download.download(server.url + "/data.bin", dest, sha256=SHA,
                    progress=lambda d, t: calls.append((d, t)))
  assert dest.read_bytes() == PAYLOAD
  assert server.log == [("/data.bin", "bytes=300000-")]
  assert calls[0] == (300_000, len(PAYLOAD))


def test_restarts_when_the_server_ignores_range(server, isolated):
  server.ignore_range = True
  (isolated / "data.bin.part").write_bytes(b"garbage" * 10)
  download.download(server.url + "/data.bin", isolated / "data.bin", sha256=SHA)
  assert (isolated / "data.bin").read_bytes() == PAYLOAD


def test_complete_part_answered_416_is_verified(server, isolated):
  (isolated / "data.bin.part").write_bytes(PAYLOAD)
  download.download(server.url + "/data.bin", isolated / "data.bin", sha256=SHA)
  assert (isolated / "data.bin").read_bytes() == PAYLOAD


def test_retries_server_errors_and_resumes_cut_connections(server, isolated):
  server.fail_first, server.cut_first = 2, 1
  download.download(server.url + "/data.bin", isolated / "data.bin", sha256=SHA, backoff=0)
  assert (isolated / "data.bin").read_bytes() == PAYLOAD
  ranges = [r for _, r in server.log]
  assert ranges[:3] == [None, None, None]  # Two 503s, then the cut transfer.
  assert ranges[3] == f"bytes={len(PAYLOAD) // 2}-"  # Resumed where the cut left off.


def test_gives_up_after_retries_and_keeps_the_part(server, isolated):
  server.fail_first = 10
  with pytest.raises(download.DownloadError, match=r"failed after 3 attempt\(s\): HTTP 503.*"
                     r"Nothing was downloaded"):  # No partial file to speak of.
    download.download(server.url + "/data.bin", isolated / "data.bin", retries=2, backoff=0)
  assert len(server.log) == 3
  server.log.clear()
  server.cut_first, server.fail_first = 1, 0
  with pytest.raises(download.DownloadError, match=rf"partial file .*data.bin.part.* "
                     rf"\({len(PAYLOAD) // 2} bytes\) is kept; calling again resumes it"):
    download.download(server.url + "/data.bin", isolated / "data.bin", retries=0)


def test_not_found_is_not_retried(server, isolated):
  with pytest.raises(download.DownloadError, match="after 1 attempt.*HTTP 404"):
    download.download(server.url + "/nothing", isolated / "x", backoff=0)
  assert len(server.log) == 1


def test_checksum_mismatch_is_refused_and_removed(server, isolated):
  dest = isolated / "data.bin"
  with pytest.raises(download.ChecksumError, match=f"has sha256 {SHA}, expected {'0' * 64}"):
    download.download(server.url + "/data.bin", dest, sha256="0" * 64)
  assert not dest.exists() and not (isolated / "data.bin.part").exists()
  with pytest.raises(download.ChecksumError, match=f"announces {len(PAYLOAD)} bytes, but its "
                     "published size is 5"):
    download.download(server.url + "/data.bin", dest, size=5)
  assert not dest.exists() and not (isolated / "data.bin.part").exists()


def _tar_bz2(members):
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return buffer.getvalue()


def test_ensure_downloads_extracts_flat_and_cleans_up(server, isolated):
  archive = _tar_bz2({"datasets/a_train.h5": b"train", "a_test.h5": b"test",
                      "../evil.h5": b"x"})
  server.files["/a.tar.bz2"] = archive
  remote = download.RemoteFile(
      server.url + "/a.tar.bz2", ("a_train.h5", "a_test.h5"),
      sha256=hashlib.sha256(archive).hexdigest(),
      file_sha256={"a_test.h5": hashlib.sha256(b"test").hexdigest()})
  cache = isolated / "cache"
  assert download.ensure(remote, cache) == cache.absolute()
  assert (cache / "a_train.h5").read_bytes() == b"train"
  assert (cache / "a_test.h5").read_bytes() == b"test"
  assert sorted(os.listdir(cache)) == ["a_test.h5", "a_train.h5"]  # No archive, no evil.h5.
  assert not (isolated / "evil.h5").exists()
  server.log.clear()
  download.ensure(remote, cache)  # Present now: no request at all.
  assert server.log == []


def test_ensure_decompresses_lzma(server, isolated):
  server.files["/db.sqlite.lzma"] = lzma.compress(PAYLOAD, format=lzma.FORMAT_ALONE)
  # PAYLOAD compresses 2,200-fold: more than an unpublished file may (MAX_EXPANSION).
  remote = download.RemoteFile(server.url + "/db.sqlite.lzma", ("db.sqlite",),
                               file_sizes={"db.sqlite": len(PAYLOAD)})
  directory = download.ensure(remote, isolated / "c")
  assert (directory / "db.sqlite").read_bytes() == PAYLOAD
  assert not (directory / "db.sqlite.lzma").exists()


def test_lzma_that_does_not_yield_the_expected_file(server, isolated):
  server.files["/db.sqlite.lzma"] = lzma.compress(b"x")
  remote = download.RemoteFile(server.url + "/db.sqlite.lzma", ("other.sqlite",))
  with pytest.raises(download.ChecksumError, match=r"\['other.sqlite'\] are still missing"):
    download.ensure(remote, isolated / "c")


def test_bad_leftover_archive_is_replaced(server, isolated):
  archive = _tar_bz2({"a.h5": b"a"})
  server.files["/a.tar.bz2"] = archive
  (isolated / "c").mkdir()
  (isolated / "c" / "a.tar.bz2").write_bytes(b"corrupt")
  remote = download.RemoteFile(server.url + "/a.tar.bz2", ("a.h5",),
                               sha256=hashlib.sha256(archive).hexdigest())
  assert (download.ensure(remote, isolated / "c") / "a.h5").read_bytes() == b"a"
  assert len(server.log) == 1


def test_extracted_file_checksum_and_missing_member(server, isolated):
  archive = _tar_bz2({"a_train.h5": b"train"})
  server.files["/a.tar.bz2"] = archive
  remote = download.RemoteFile(server.url + "/a.tar.bz2", ("a_train.h5",),
                               file_sha256={"a_train.h5": "1" * 64})
  with pytest.raises(download.ChecksumError, match="a_train.h5.* expected 1111"):
    download.ensure(remote, isolated / "c")
  assert not (isolated / "c" / "a_train.h5").exists()
  remote = download.RemoteFile(server.url + "/a.tar.bz2", ("a_train.h5", "a_test.h5"))
  with pytest.raises(download.ChecksumError, match=r"lacks \['a_test.h5'\]; it holds "
                     r"\['a_train.h5'\]"):
    download.ensure(remote, isolated / "d")


def test_local_files_are_used_without_network(isolated, monkeypatch):
  remote = download.RemoteFile("http://127.0.0.1:9/never.tar.bz2", ("x.h5",))
  env_dir = isolated / "env"
  env_dir.mkdir()
  (env_dir / "x.h5").write_bytes(b"")
  monkeypatch.setenv(download.ENV_DATA_DIR, str(env_dir))
  assert download.ensure(remote, isolated / "arg") == env_dir.absolute()
  home_cache = isolated / "home" / ".cache" / "federax"
  home_cache.mkdir(parents=True)
  (home_cache / "x.h5").write_bytes(b"")
  monkeypatch.delenv(download.ENV_DATA_DIR)
  assert download.ensure(remote) == home_cache


def test_search_dirs_order(isolated, monkeypatch):
  home = isolated / "home" / ".cache" / "federax"
  assert download.search_dirs() == [home]
  monkeypatch.setenv(download.ENV_DATA_DIR, str(isolated / "env"))
  assert download.search_dirs("~/x") == [isolated / "home" / "x", isolated / "env", home]
  assert download.search_dirs(isolated / "env") == [isolated / "env", home]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_offline_error_names_every_path_and_the_fix(isolated, monkeypatch):
  remote = download.RemoteFile(f"http://127.0.0.1:{_free_port()}/a.tar.bz2",
                               ("a_train.h5", "a_test.h5"))
  monkeypatch.setenv(download.ENV_DATA_DIR, str(isolated / "env"))
  monkeypatch.setenv(download.ENV_OFFLINE, "1")
  with pytest.raises(download.DataNotFoundError) as info:
    download.ensure(remote, isolated / "arg")
  message = str(info.value)
  for directory in (isolated / "arg", isolated / "env", isolated / "home/.cache/federax"):
    for name in remote.files:
      assert str(directory / name) in message
  assert "Downloads are disabled (FEDERAX_OFFLINE is set)" in message
  assert remote.url in message and "set FEDERAX_DATA_DIR" in message
  monkeypatch.delenv(download.ENV_OFFLINE)
  with pytest.raises(download.DataNotFoundError, match=r"(?s)a_test.h5.*Downloading .*a.tar.bz2 "
                     r"failed after 1 attempt.*place its files"):
    download.ensure(remote, isolated / "arg", retries=0)


@pytest.mark.skipif(not SHAKESPEARE.is_dir(), reason="shared Shakespeare data not present")
def test_real_shakespeare_files_match_the_published_sha256():
  from federax.simulation.datasets import shakespeare  # pylint: disable=g-import-not-at-top
  for name, digest in shakespeare.SHAKESPEARE.file_sha256.items():
    download.verify(SHAKESPEARE / name, digest)
  with pytest.raises(download.ChecksumError, match="shakespeare_test.h5.*expected 67100f52"):
    download.verify(SHAKESPEARE / "shakespeare_test.h5",
                    shakespeare.SHAKESPEARE.file_sha256["shakespeare_train.h5"])
