"""olmo.storage: one layer for local paths, s3:// (a real S3 API server on 127.0.0.1) and the
fsspec stores that go through the same code (gs://, memory://)."""

from __future__ import annotations

import pytest

from olmo import storage
from olmo.storage import Location, StorageError, location


def _roundtrip(root: Location) -> None:
    (root / "a" / "b.txt").write_text("hello")
    (root / "a" / "c" / "d.bin").write_bytes(b"\x00" * 1000)
    (root / "e.txt").write_bytes(b"e")
    assert (root / "a" / "b.txt").read_text() == "hello"
    assert (root / "a" / "b.txt").exists() and (root / "a" / "b.txt").is_file()
    assert (root / "a").exists() and not (root / "a").is_file()
    assert root.children() == [("a", True), ("e.txt", False)]
    assert sorted(root.files()) == ["a/b.txt", "a/c/d.bin", "e.txt"]
    assert root.files()["a/c/d.bin"]["size"] == 1000
    assert (root / "a" / "c" / "d.bin").read_range(10, 20) == b"\x00" * 10
    assert (root / "a" / "c" / "d.bin").size() == 1000
    assert all(storage.modified_time(i) is not None for i in root.files().values())
    (root / "a").remove()
    assert not (root / "a" / "b.txt").exists()
    assert root.children() == [("e.txt", False)]
    (root / "missing").remove()  # a missing location is fine
    assert (root / "nothing-here").children() == []
    assert (root / "nothing-here").files() == {}


def test_local_paths_and_uris_share_one_interface(tmp_path, s3_bucket):
    _roundtrip(location(tmp_path / "run"))
    _roundtrip(location(f"{s3_bucket}/prefix/run"))
    _roundtrip(location("memory://olmo-test/run"))


def test_s3_upload_download_never_leave_a_partial_file(tmp_path, s3_bucket):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 4096)
    remote = location(f"{s3_bucket}/x/src.bin")
    remote.upload(src)
    assert remote.size() == src.stat().st_size
    dest = remote.download(tmp_path / "out" / "copy.bin")
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["copy.bin"]
    with pytest.raises(FileNotFoundError):
        location(f"{s3_bucket}/x/none.bin").download(tmp_path / "out" / "none.bin")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["copy.bin"]


def test_the_s3_endpoint_comes_from_the_standard_variables(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    assert storage.storage_options("s3") == {}
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert storage.storage_options("s3") == {"endpoint_url": "http://127.0.0.1:9"}
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:10")
    assert storage.storage_options("s3") == {"endpoint_url": "http://127.0.0.1:10"}
    assert storage.storage_options("gs") == {}


def test_gs_uris_reach_gcsfs(monkeypatch):
    import gcsfs

    # Anonymous: the default credentials would probe the GCE metadata server (off this machine).
    options = storage.storage_options
    monkeypatch.setattr(
        storage, "storage_options", lambda p: {"token": "anon"} if p == "gs" else options(p)
    )
    loc = location("gs://bucket/run/checkpoints")
    assert loc.is_remote and loc.protocol == "gs" and loc.path == "bucket/run/checkpoints"
    assert isinstance(loc.fs, gcsfs.GCSFileSystem)
    assert (loc / "step000001").uri == "gs://bucket/run/checkpoints/step000001"
    assert loc.parent.uri == "gs://bucket/run" and loc.name == "checkpoints"


@pytest.mark.parametrize(
    ("text", "remote"),
    [("/data/run", False), ("run", False), ("file:///data/run", False), ("s3://b/k", True)],
)
def test_local_or_remote(text, remote):
    assert storage.is_remote(text) is remote
    assert location(text).is_remote is remote


@pytest.mark.parametrize("bad", ["ftp://host/x", "s3:///key", "hdfs://nn/x"])
def test_unsupported_uris_say_what_is_supported(bad):
    with pytest.raises(StorageError, match=r"s3://|bucket"):
        location(bad)


def test_check_reachable_names_a_missing_bucket(s3_bucket, tmp_path):
    storage.check_reachable(f"{s3_bucket}/runs/r1")  # an empty prefix of a bucket that exists
    storage.check_reachable(tmp_path / "anything")  # local paths pass
    with pytest.raises(StorageError, match=r"bucket no-such-bucket-x does not exist at http"):
        storage.check_reachable("s3://no-such-bucket-x/runs")


def test_client_errors_become_one_line():
    from botocore.exceptions import NoCredentialsError

    assert "no credentials" in storage.describe_error(NoCredentialsError())
    assert storage.describe_error(ValueError("x")) is None
