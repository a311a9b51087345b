"""Downloads from misbehaving servers on loopback: bounded in size and time, never corrupt.

Each server here breaks one promise (a bad Content-Length, an endless or trickling body, a bad
archive, an archive bomb); the download must stop at the published size and the deadline, and
leave nothing corrupt in the cache. Two processes downloading into one cache share one download.
"""

import hashlib
import http.server
import io
import lzma
import os
import pathlib
import socket
import subprocess
import sys
import tarfile
import threading
import time

import pytest

from federax.simulation.datasets import download

PAYLOAD = bytes(range(256)) * 40  # 10 KiB.
SHA = hashlib.sha256(PAYLOAD).hexdigest()
ROOT = pathlib.Path(__file__).resolve().parents[2]


class Server:
  """A loopback HTTP server whose routes are functions of the request handler."""

  def __init__(self):
    self.routes = {}
    self.requests = []
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = "HTTP/1.0"

      def log_message(self, *args):
        pass

      def do_GET(self):
        server.requests.append(self.path)
        route = server.routes.get(self.path)
        if route is None:
          self.send_error(404)
          return
        try:
          route(self)
        except (BrokenPipeError, ConnectionResetError):
          pass  # The client hung up, as it should.

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.httpd.daemon_threads = True
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
    threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True).start()

  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()


@pytest.fixture
def server():
  s = Server()
  yield s
  s.close()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
  monkeypatch.delenv(download.ENV_DATA_DIR, raising=False)
  monkeypatch.delenv(download.ENV_OFFLINE, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _body(data, length=None, chunk=None, pause=0.0, limit_s=8.0):
  """A route sending `data` with a Content-Length header of `length` (none if None)."""
  def route(handler):
    handler.send_response(200)
    if length is not None:
      handler.send_header("Content-Length", str(length))
    handler.end_headers()
    start = time.monotonic()
    for i in range(0, len(data), chunk or len(data) or 1):
      handler.wfile.write(data[i:i + (chunk or len(data))])
      handler.wfile.flush()
      if time.monotonic() - start > limit_s:
        return  # A bound on the test, should the client never give up.
      time.sleep(pause)
  return route


def test_a_malformed_content_length_is_ignored_and_the_checksum_decides(server, tmp_path):
  for value in ("abc", "-5", "1e3"):
    server.routes[f"/{value}"] = _body(PAYLOAD, length=value)
    dest = download.download(server.url + f"/{value}", tmp_path / value, sha256=SHA, retries=0)
    assert dest.read_bytes() == PAYLOAD
  server.routes["/short"] = _body(PAYLOAD[:100], length="abc")
  with pytest.raises(download.ChecksumError, match="has 100 bytes, expected 10240"):
    download.download(server.url + "/short", tmp_path / "short", size=len(PAYLOAD), retries=0)


def test_an_endless_body_stops_at_the_published_size(server, tmp_path):
  def endless(handler):
    handler.send_response(200)
    handler.end_headers()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
      handler.wfile.write(b"\0" * 65536)
  server.routes["/endless"] = endless
  seen = []
  start = time.monotonic()
  with pytest.raises(download.ChecksumError, match=r"sent more than the 1024 bytes published for "
                     r"it; it is not the published file. Stopped there"):
    download.download(server.url + "/endless", tmp_path / "f", size=1024, retries=0,
                      progress=lambda done, total: seen.append(done))
  assert time.monotonic() - start < 4
  assert max(seen) <= 1024
  assert not (tmp_path / "f").exists() and not (tmp_path / "f.part").exists()


def test_content_length_beyond_the_published_size_is_refused_before_reading(server, tmp_path):
  server.routes["/big"] = _body(PAYLOAD, length=len(PAYLOAD))
  with pytest.raises(download.ChecksumError, match="announces 10240 bytes, but its published size "
                     "is 1024"):
    download.download(server.url + "/big", tmp_path / "f", size=1024, retries=0)


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_trickling_server_meets_the_deadline(server, tmp_path, where):
  if where == "body":
    server.routes["/slow"] = _body(PAYLOAD[:1000], length=1000, chunk=1, pause=0.1)
  else:
    def slow_headers(handler):  # One byte of the status line every 0.1 s, for up to 8 s.
      for byte in (b"HTTP/1.0 200 OK\r\n" + b"X-Slow: 1\r\n" * 20)[:80]:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.1)
    server.routes["/slow"] = slow_headers
  start = time.monotonic()
  with pytest.raises(download.DownloadError, match=r"did not finish within its deadline of 1\.5 s"
                     r" \(attempt 1\); the server is too slow or stalled") as info:
    download.download(server.url + "/slow", tmp_path / "f", timeout=3, deadline=1.5,
                      backoff=0)
  elapsed = time.monotonic() - start
  assert 1.4 < elapsed < 3.0, elapsed  # A 3 s socket timeout never fires at 10 bytes/s.
  if where == "body":
    assert "is kept; calling again resumes it" in str(info.value)
    assert 3 < (tmp_path / "f.part").stat().st_size < 1000
  else:
    assert "Nothing was downloaded" in str(info.value)


def _tar_bz2(members):
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return buffer.getvalue()


@pytest.mark.parametrize("name", ["db.sqlite.lzma", "a.tar.bz2"])
def test_a_bad_archive_is_deleted_so_the_next_call_downloads_it_afresh(server, tmp_path, name):
  # Like Stack Overflow's archive: no published checksum or size to refuse it by.
  files = ("db.sqlite",) if name.endswith(".lzma") else ("a.h5",)
  good = (lzma.compress(PAYLOAD, format=lzma.FORMAT_ALONE) if name.endswith(".lzma")
          else _tar_bz2({"a.h5": PAYLOAD}))
  remote = download.RemoteFile(server.url + "/" + name, files)
  cache = tmp_path / "cache"
  server.routes["/" + name] = _body(b"<html>503 try later</html>" * 10)
  with pytest.raises(download.ChecksumError, match=rf"Archive '.*{name}' is corrupt \(.*\): it is "
                     "not the published archive; nothing was extracted. The archive was "
                     "deleted; calling again downloads it afresh"):
    download.ensure(remote, cache, retries=0)
  assert sorted(os.listdir(cache)) == []  # No archive, no partial file, no lock file.
  server.routes["/" + name] = _body(good)
  assert (download.ensure(remote, cache, retries=0) / files[0]).read_bytes() == PAYLOAD
  assert len(server.requests) == 2


def test_archive_bombs_stop_at_the_published_sizes(server, tmp_path):
  zeros = b"\0" * 20_000_000
  bomb = _tar_bz2({"a.h5": zeros})
  assert len(bomb) < 1000  # 20 MB in a few hundred bytes.
  server.routes["/bomb.tar.bz2"] = _body(bomb)
  published = download.RemoteFile(server.url + "/bomb.tar.bz2", ("a.h5",),
                                   file_sizes={"a.h5": 4096})
  with pytest.raises(download.ChecksumError, match=r"'a.h5' is 20000000 bytes in its tar header, "
                     r"more than 4096. It is not the published archive \(or is an archive bomb\)"):
    download.ensure(published, tmp_path / "c1", retries=0)
  assert os.listdir(tmp_path / "c1") == []
  unpublished = download.RemoteFile(server.url + "/bomb.tar.bz2", ("a.h5",))
  with pytest.raises(download.ChecksumError, match=rf"more than {1000 * len(bomb)}.*up to 1000 "
                     "times the archive"):
    download.ensure(unpublished, tmp_path / "c2", retries=0)
  assert os.listdir(tmp_path / "c2") == []


def test_an_lzma_bomb_stops_while_streaming(server, tmp_path):
  bomb = lzma.compress(b"\0" * 8_000_000, format=lzma.FORMAT_ALONE)
  server.routes["/db.sqlite.lzma"] = _body(bomb)
  remote = download.RemoteFile(server.url + "/db.sqlite.lzma", ("db.sqlite",))
  with pytest.raises(download.ChecksumError, match=rf"'db.sqlite' holds more than "
                     rf"{1000 * len(bomb)} bytes"):
    download.ensure(remote, tmp_path / "c", retries=0)
  assert os.listdir(tmp_path / "c") == []
  sized = remote._replace(file_sizes={"db.sqlite": 10_000})
  with pytest.raises(download.ChecksumError, match="'db.sqlite' holds more than 10000 bytes"):
    download.ensure(sized, tmp_path / "c", retries=0)


def test_an_archive_whose_file_differs_from_its_published_size(server, tmp_path):
  server.routes["/a.tar.bz2"] = _body(_tar_bz2({"a.h5": PAYLOAD}))
  remote = download.RemoteFile(server.url + "/a.tar.bz2", ("a.h5",),
                               file_sizes={"a.h5": len(PAYLOAD) + 1})
  with pytest.raises(download.ChecksumError, match=r"'a.h5' is 10240 bytes, its published size "
                     r"is 10241"):
    download.ensure(remote, tmp_path / "c", retries=0)
  assert os.listdir(tmp_path / "c") == []


def test_cached_files_are_checked_against_their_published_hash_and_size(server, tmp_path):
  remote = download.RemoteFile(server.url + "/never.tar.bz2", ("a.h5", "b.h5"),
                               file_sha256={"a.h5": SHA}, file_sizes={"b.h5": 3})
  cache = tmp_path / "cache"
  cache.mkdir()
  (cache / "a.h5").write_bytes(PAYLOAD[:-1] + b"!")
  (cache / "b.h5").write_bytes(b"abc")
  with pytest.raises(download.ChecksumError, match=rf"The cached file '{cache / 'a.h5'}' has "
                     rf"sha256 [0-9a-f]{{64}}, expected {SHA}: .* Delete it \(federax then "
                     "downloads .*never.tar.bz2 again\\)"):
    download.ensure(remote, cache)
  (cache / "a.h5").write_bytes(PAYLOAD)
  (cache / "b.h5").write_bytes(b"abcd")
  with pytest.raises(download.ChecksumError, match="b.h5' has 4 bytes, expected 3"):
    download.ensure(remote, cache)
  (cache / "b.h5").write_bytes(b"abc")
  assert download.ensure(remote, cache) == cache
  assert server.requests == []  # Checked on disk: the network was never touched.


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_the_offline_message_mentions_no_partial_file_that_does_not_exist(tmp_path):
  remote = download.RemoteFile(f"http://127.0.0.1:{_free_port()}/a.tar.bz2", ("a.h5",))
  with pytest.raises(download.DataNotFoundError) as info:
    download.ensure(remote, tmp_path / "c", retries=0)
  message = str(info.value)
  assert "Nothing was downloaded" in message and "partial" not in message
  assert not (tmp_path / "c" / "a.tar.bz2.part").exists()


def test_a_cache_directory_that_cannot_be_created(tmp_path):
  (tmp_path / "file").write_text("")
  remote = download.RemoteFile("http://127.0.0.1:9/a.tar.bz2", ("a.h5",))
  with pytest.raises(download.DataNotFoundError, match=r"The cache directory '.*file/c' cannot "
                     r"be written \(.*\); pass a writable cache_dir"):
    download.ensure(remote, tmp_path / "file" / "c")


# A child process: imports download.py without federax's __init__ (and so without JAX), waits
# for the start signal, then asks for the files.
_CHILD = """
import os, pathlib, sys, time, types
root = pathlib.Path(sys.argv[1])
for name in ("federax", "federax.simulation", "federax.simulation.datasets"):
  package = types.ModuleType(name)
  package.__path__ = [str(root.joinpath(*name.split(".")))]
  sys.modules[name] = package
from federax.simulation.datasets import download
url, cache, go = sys.argv[2:5]
while not os.path.exists(go):
  time.sleep(0.005)
try:
  directory = download.ensure(download.RemoteFile(url, ("a.h5", "b.h5")), cache, retries=0,
                              deadline=20)
except Exception as e:
  print(f"{type(e).__name__}: {e}")
  sys.exit(1)
print(directory)
"""


def test_two_processes_downloading_into_one_cache_share_one_download(server, tmp_path):
  archive = _tar_bz2({"a.h5": PAYLOAD, "b.h5": PAYLOAD[::-1]})
  # Slow enough (about 0.3 s) that the second process asks while the first downloads.
  server.routes["/ab.tar.bz2"] = _body(archive, length=len(archive), chunk=len(archive) // 6 + 1,
                                       pause=0.05)
  for trial in range(3):
    cache, go = tmp_path / f"cache{trial}", tmp_path / f"go{trial}"
    children = [subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(ROOT), server.url + "/ab.tar.bz2", str(cache),
         str(go)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)]
    time.sleep(0.3)  # Both have started and are waiting.
    go.write_text("")
    outputs = [child.communicate(timeout=30)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    assert [out.strip() for out in outputs] == [str(cache)] * 2
    assert sorted(os.listdir(cache)) == ["a.h5", "b.h5"]  # No archive, .part or lock left.
    assert (cache / "b.h5").read_bytes() == PAYLOAD[::-1]
  assert server.requests == ["/ab.tar.bz2"] * 3  # One download per cache.


def test_waiting_for_another_process_meets_the_deadline(tmp_path):
  from federax.simulation.datasets import _lock  # pylint: disable=g-import-not-at-top
  remote = download.RemoteFile("http://127.0.0.1:9/a.tar.bz2", ("a.h5",))
  cache = tmp_path / "c"
  cache.mkdir()
  with _lock.locked(cache / ".a.tar.bz2.lock"):  # As another downloader would hold it.
    start = time.monotonic()
    with pytest.raises(download.DataNotFoundError, match=rf"process {os.getpid()} still holds "
                       r"'.*\.a\.tar\.bz2\.lock' \(downloading a.tar.bz2\) past the deadline of "
                       r"0\.3 s"):
      download.ensure(remote, cache, deadline=0.3)
    assert time.monotonic() - start < 2
  assert os.listdir(cache) == []  # The holder removed its lock file.


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "shakespeare-tff").is_dir(),
                    reason="shared Shakespeare data not present")
def test_the_real_shakespeare_files_pass_the_cached_file_checks():
  from federax.simulation.datasets import shakespeare  # pylint: disable=g-import-not-at-top
  directory = ROOT.parent / "shared" / "data" / "shakespeare-tff"
  assert download.ensure(shakespeare.SHAKESPEARE, directory) == directory
