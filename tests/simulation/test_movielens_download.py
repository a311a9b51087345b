"""MovieLens without a data directory: GroupLens's zip fetched from a loopback server into the
cache, checked against its sha256, read from the zip, and read from the cache afterwards."""

import hashlib
import io
import zipfile

import pytest

from federax.simulation.datasets import download, movielens

from test_download import Server

# Three users' ratings in u.data's layout (user, item, rating, timestamp).
U_DATA = "1\t10\t5\t100\n1\t20\t3\t101\n2\t10\t4\t102\n3\t30\t1\t103\n3\t10\t2\t104\n"


def zipped(u_data: str) -> bytes:
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as z:
    z.writestr("ml-100k/u.data", u_data)
    z.writestr("ml-100k/README", "GroupLens")
  return buffer.getvalue()


@pytest.fixture
def grouplens(tmp_path, monkeypatch):
  """A loopback GroupLens serving ml-100k.zip, published under its true sha256 and size."""
  monkeypatch.delenv(download.ENV_DATA_DIR, raising=False)
  monkeypatch.delenv(download.ENV_OFFLINE, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  server = Server()
  body = zipped(U_DATA)
  server.files["/ml-100k.zip"] = body
  name, separator, _, folder = movielens._LAYOUTS["100k"]
  remote = download.RemoteFile(url=server.url + "/ml-100k.zip", files=("ml-100k.zip",),
                               size=len(body), sha256=hashlib.sha256(body).hexdigest())
  monkeypatch.setitem(movielens._LAYOUTS, "100k", (name, separator, remote, folder))
  yield server
  server.close()


def test_downloads_once_then_reads_the_cache(grouplens, tmp_path):
  cache = tmp_path / "cache"
  for _ in range(2):
    clients = movielens.load_data(cache_dir=cache)
    assert sorted(clients.client_ids) == ["1", "2", "3"]
    ratings = sorted(float(e["y"][0]) for e in clients.create_dataset("3"))
    assert ratings == [1.0, 2.0]
  assert [path for path, _ in grouplens.log] == ["/ml-100k.zip"]  # The second call: cached.
  assert (cache / "ml-100k.zip").is_file()


def test_a_tampered_zip_is_refused_and_not_kept(grouplens, tmp_path):
  body = grouplens.files["/ml-100k.zip"]
  grouplens.files["/ml-100k.zip"] = zipped(U_DATA.replace("\t5\t", "\t1\t"))[:len(body)].ljust(
      len(body), b"\0")
  with pytest.raises(download.ChecksumError, match="sha256 .*, expected"):
    movielens.load_data(cache_dir=tmp_path / "cache")
  assert not (tmp_path / "cache" / "ml-100k.zip").exists()
  assert not (tmp_path / "cache" / "ml-100k.zip.part").exists()  # Not resumed from next time.
