"""One storage layer for every location the stack takes: a local folder, ``s3://`` or ``gs://``.

Every place that takes a path (the trainer's run directory and data, ``olmo-ckpt``, the eval
worker, data-prep's inputs and output) takes a URI as well and reaches it through ``Location``,
which wraps an fsspec file system (s3fs, gcsfs; fsspec's own for local paths and the in-memory
store of tests). Nothing here speaks HTTP itself.

Object stores cannot rename, so the rules that make a write safe there live with the contracts
that need them (``olmo.checkpoints.objectstore``: the object ``COMPLETE`` is written last and
trusted alone). This module only moves bytes.

Credentials and endpoints come from each store's own standard configuration, so the same image
works on every cloud:

- ``s3://``: botocore's chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a web identity
  token from EKS's IAM roles for service accounts, instance metadata). An S3-compatible store
  (MinIO, Ceph, R2, a test server) is named by ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``.
- ``gs://``: Google's application default credentials (GKE workload identity, or a key file
  named by ``GOOGLE_APPLICATION_CREDENTIALS``).

Torch-free, and fsspec is imported only when a location is used, so the torch-free services that
never see a URI do not pay for it.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

StrPath = str | os.PathLike[str]

# Stores reached by URI. ``memory`` is fsspec's in-process store: a stand-in object store for
# tests (it has no rename either).
REMOTE_PROTOCOLS = ("s3", "gs", "gcs", "memory")
ENV_S3_ENDPOINT = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


class StorageError(RuntimeError):
    """A location cannot be used as asked (a bad URI, a store without credentials)."""


def protocol_of(path: StrPath | Location) -> str | None:
    """``"s3"`` for ``s3://b/k``; None for a local path (``file://`` counts as local)."""
    text = path.uri if isinstance(path, Location) else os.fspath(path)
    if "://" not in text:
        return None
    protocol = text.split("://", 1)[0].lower()
    return None if protocol == "file" else protocol


def is_remote(path: StrPath | Location | None) -> bool:
    """Whether ``path`` is a URI of an object store (not a local path)."""
    return path is not None and protocol_of(path) is not None


def check_uri(path: StrPath) -> str:
    """``path`` as a string when it is a local path or a URI of a supported store; else
    StorageError naming what is supported."""
    text = os.fspath(path)
    protocol = protocol_of(text)
    if protocol is None:
        return text.removeprefix("file://") if text.startswith("file://") else text
    if protocol not in REMOTE_PROTOCOLS:
        raise StorageError(
            f"{text}: unsupported storage scheme {protocol}:// (supported: a local path, "
            "s3://bucket/prefix, gs://bucket/prefix)"
        )
    rest = text.split("://", 1)[1]
    if protocol != "memory" and not rest.split("/", 1)[0]:
        raise StorageError(f"{text}: no bucket name (expected {protocol}://bucket/prefix)")
    return text


def storage_options(protocol: str) -> dict[str, Any]:
    """What ``fsspec.filesystem(protocol, ...)`` is given: the endpoint of an S3-compatible store
    (from the standard environment variables, read at each call), nothing else."""
    if protocol == "s3":
        for name in ENV_S3_ENDPOINT:
            if os.environ.get(name):
                return {"endpoint_url": os.environ[name]}
    return {}


def filesystem(protocol: str | None) -> AbstractFileSystem:
    """The fsspec file system of a protocol (None: local). fsspec caches instances per
    arguments and process, so this is cheap to call for every operation."""
    import fsspec

    if protocol is None:
        return fsspec.filesystem("file")
    return fsspec.filesystem(protocol, **storage_options(protocol))


@dataclass(frozen=True)
class Location:
    """A file or folder on some store, by URI (``s3://b/run``) or local path (``/data/run``).

    Paths are joined with ``/``; a folder on an object store is a key prefix, so it "exists"
    as soon as one object lies under it.
    """

    uri: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "uri", check_uri(self.uri).rstrip("/") or "/")

    # ---- naming ----------------------------------------------------------------------------

    @property
    def protocol(self) -> str | None:
        return protocol_of(self.uri)

    @property
    def is_remote(self) -> bool:
        return self.protocol is not None

    @property
    def fs(self) -> AbstractFileSystem:
        return filesystem(self.protocol)

    @property
    def path(self) -> str:
        """The path as the file system takes it (``bucket/key`` for a store)."""
        if self.protocol is None:
            return self.uri
        return self.fs._strip_protocol(self.uri)

    @property
    def name(self) -> str:
        return posixpath.basename(self.uri.rstrip("/"))

    @property
    def parent(self) -> Location:
        head = self.uri.rsplit("/", 1)[0]
        return Location(head if head and not head.endswith(":/") else self.uri)

    def __truediv__(self, part: str) -> Location:
        part = str(part).strip("/")
        return Location(f"{self.uri.rstrip('/')}/{part}") if part else self

    def __str__(self) -> str:
        return self.uri

    def local_path(self) -> Path:
        """The local path (ValueError for a remote location)."""
        if self.is_remote:
            raise ValueError(f"{self.uri} is not a local path")
        return Path(self.uri)

    # ---- reading ---------------------------------------------------------------------------

    def _fresh(self) -> AbstractFileSystem:
        """The file system with no cached listing of this location: another process (a trainer,
        an eval worker, a rotation) changes the store, and s3fs/gcsfs cache listings."""
        fs = self.fs
        if self.is_remote:
            fs.invalidate_cache(self.path)
        return fs

    def exists(self) -> bool:
        return bool(self._fresh().exists(self.path))

    def is_file(self) -> bool:
        return bool(self._fresh().isfile(self.path))

    def read_bytes(self) -> bytes:
        return self.fs.cat_file(self.path)

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def read_range(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` (a ranged GET on an object store)."""
        return self.fs.cat_file(self.path, start=start, end=end)

    def open(self, mode: str = "rb", **kwargs: Any) -> IO[Any]:
        return self.fs.open(self.path, mode, **kwargs)

    def size(self) -> int:
        return int(self._fresh().size(self.path))

    def children(self) -> list[tuple[str, bool]]:
        """Direct children as (name, is_folder), sorted by name; [] when there are none."""
        try:
            entries = self._fresh().ls(self.path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        prefix = self.path.rstrip("/")
        for entry in entries:
            name = entry["name"].rstrip("/")
            if name == prefix:  # a file listed as itself
                continue
            out.append((posixpath.basename(name), entry.get("type") == "directory"))
        return sorted(out)

    def files(self) -> dict[str, dict[str, Any]]:
        """Every file under this folder, recursively: relative path → fsspec's info (``size``,
        and the store's modification time as ``mtime``, ``LastModified`` or ``updated``)."""
        try:
            found = self._fresh().find(self.path, detail=True, withdirs=False)
        except FileNotFoundError:
            return {}
        prefix = self.path.rstrip("/") + "/"
        return {
            name[len(prefix) :]: info
            for name, info in found.items()
            if name.startswith(prefix) and info.get("type") != "directory"
        }

    # ---- writing ---------------------------------------------------------------------------

    def write_bytes(self, data: bytes) -> None:
        """Write the whole file. Locally the write is atomic (temporary file, fsync, rename); an
        object store makes one PUT visible whole by itself."""
        if self.is_remote:
            self.fs.pipe_file(self.path, data)
            return
        from olmo.fileio import write_atomic

        path = Path(self.uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def upload(self, local: StrPath) -> None:
        """Copy the local file ``local`` here (multipart on S3 for large files)."""
        if not self.is_remote:
            raise ValueError(f"{self.uri} is local: copy files with shutil")
        self.fs.put_file(os.fspath(local), self.path)

    def download(self, local: StrPath) -> Path:
        """Copy this file to the local path ``local`` through a temporary name beside it, so a
        killed download never leaves a partial file under the final name."""
        dest = Path(local)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        try:
            self.fs.get_file(self.path, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest

    def remove(self) -> None:
        """Delete this file, or this folder and everything under it; a missing one is fine."""
        try:
            if self.fs.isdir(self.path):
                self.fs.rm(self.path, recursive=True)
            else:
                self.fs.rm_file(self.path)
        except FileNotFoundError:
            pass

    def remove_files(self, relative: list[str]) -> None:
        """Delete the listed files under this folder (one batched request on S3)."""
        if relative:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm([f"{self.path.rstrip('/')}/{rel}" for rel in relative])


def location(path: StrPath | Location) -> Location:
    """A ``Location`` for a local path or a URI (StorageError for an unsupported scheme)."""
    if isinstance(path, Location):
        return path
    return Location(os.fspath(path))


def describe_error(error: BaseException) -> str | None:
    """A one-line explanation of an error raised by a store's client library (botocore, Google
    auth, the HTTP layer under them), or None for any other error."""
    module = type(error).__module__ or ""
    name = type(error).__name__
    if name == "NoCredentialsError" or module.startswith("google.auth"):
        return (
            f"no credentials for the object store ({name}: {error}); set AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY or a role (s3://), or application default credentials (gs://)"
        )
    store = module.startswith(("botocore", "aiobotocore", "aiohttp", "gcsfs"))
    return f"object store error: {name}: {error}" if store else None


def check_reachable(path: StrPath | Location) -> None:
    """StorageError (one line) unless the bucket of ``path`` exists and answers with the
    credentials at hand; a local path passes. A missing bucket would otherwise look like an
    empty one, and ``exists`` would swallow a missing-credentials error."""
    if not is_remote(path):
        return
    loc = location(path)
    bucket = loc.path.lstrip("/").split("/", 1)[0]
    try:
        loc.fs.info(bucket)
    except FileNotFoundError:
        endpoint = loc.fs.storage_options.get("endpoint_url")
        where = f" at {endpoint}" if endpoint else ""
        raise StorageError(
            f"{loc}: bucket {bucket} does not exist{where} (or is not visible)"
        ) from None
    except PermissionError as e:
        raise StorageError(f"{loc}: access to bucket {bucket} denied ({e})") from None
    except Exception as e:
        if (why := describe_error(e)) is None:
            raise
        raise StorageError(f"{loc}: {why}") from None


def modified_time(info: dict[str, Any]) -> float | None:
    """A file's modification time (Unix seconds) from fsspec's info, whichever store gave it."""
    for key in ("mtime", "LastModified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            from datetime import datetime

            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def walk_local_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, path) of every regular file under ``root``, sorted."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        yield path.relative_to(root).as_posix(), path
