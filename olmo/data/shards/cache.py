"""A bounded local cache of token shards downloaded from an object store, shared by the
processes of one node.

Files are keyed by the manifest's sha256 of the shard (``<sha256>.npy``, its document index
``<sha256>.csv.gz``), so two datasets never collide and a changed shard is never served stale.
The folder is ``data.cache_dir``, else ``$OLMO_DATA_CACHE_DIR``, else ``~/.cache/olmo/shards``.

- **Download once per node.** Every shard has a lock file ``<sha256>.lock`` (``fcntl.flock``).
  A reader holds it shared while it uses the shard (a :class:`Lease`); a download happens under
  the exclusive lock, so several ranks asking for the same shard wait for one download.
- **Verified.** A download goes to a temporary name (``Location.download``), its sha256 is
  checked against the manifest's, and only then is it renamed into place; a mismatch is a
  ``ShardFormatError`` naming the shard and both hashes, and the bad file is deleted.
- **Bounded.** Before a download, room is made under a cache-wide lock: the files on disk plus
  the downloads in progress (each reserves its size in ``<sha256>.reserve``) must fit
  ``max_bytes``. Least-recently-used shards (by modification time, touched on every use) that no
  process holds are evicted; a shard bigger than the bound, or a bound too small for the shards
  in use, is an error saying so.

Torch-free, stdlib + olmo.storage only.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from olmo.data.shards.format import ShardFormatError
from olmo.fileio import sha256_file
from olmo.storage import Location

log = logging.getLogger(__name__)

ENV_CACHE_DIR = "OLMO_DATA_CACHE_DIR"
DEFAULT_MAX_BYTES = 64 << 30
_GLOBAL_LOCK = ".cache.lock"
_DATA_SUFFIXES = (".npy", ".csv.gz")
_HASH_CHUNK = 1 << 24


def default_cache_dir() -> Path:
    """``$OLMO_DATA_CACHE_DIR``, else ``~/.cache/olmo/shards``."""
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "olmo" / "shards"


class CacheFullError(RuntimeError):
    """The cache cannot hold a shard: bigger than the bound, or the bound is taken by shards in
    use."""


def format_bytes(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n:,} bytes"


@dataclass
class Lease:
    """A shard held in the cache: its local ``path`` stays until :meth:`release` (the shared
    lock keeps other processes from evicting it)."""

    path: Path
    _fd: int | None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __del__(self) -> None:
        self.release()


class ShardCache:
    """The cache folder ``root`` holding at most ``max_bytes`` of shards (see the module doc)."""

    def __init__(self, root: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"cache max_bytes must be a positive integer, got {max_bytes!r}")
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.max_bytes = max_bytes
        self.downloads = 0
        """Files this object downloaded (shards and indexes): what tests and logs count."""
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ShardCache({str(self.root)!r}, max_bytes={self.max_bytes})"

    def __getstate__(self) -> dict[str, object]:
        return {"root": self.root, "max_bytes": self.max_bytes, "downloads": 0}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._count_lock = threading.Lock()

    # ---- paths -----------------------------------------------------------------------------

    def path(self, sha256: str, suffix: str = ".npy") -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ShardFormatError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / f"{sha256}{suffix}"

    def _lock_fd(self, sha256: str, suffix: str = ".lock") -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        return os.open(self.path(sha256, suffix), os.O_RDWR | os.O_CREAT, 0o644)

    # ---- the public operations -------------------------------------------------------------

    def lease(self, source: Location, sha256: str, size: int) -> Lease:
        """The shard ``source`` (manifest ``sha256`` and ``size`` in bytes) as a local file held
        until the lease is released; downloaded and verified first if this node lacks it."""
        fd = self._lock_fd(sha256)
        try:
            path = self.path(sha256)
            while True:
                fcntl.flock(fd, fcntl.LOCK_SH)
                if path.is_file():
                    os.utime(path)  # most recently used
                    return Lease(path, fd)
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not path.is_file():
                    self._download(source, sha256, size, path)
                # Back to shared (not atomic: an evictor may slip in, so look again).
        except BaseException:
            os.close(fd)
            raise

    def ensure(self, source: Location, sha256: str, size: int) -> bool:
        """Make sure the shard is in the cache without holding it (prefetch); True when this
        call downloaded it."""
        before = self.downloads
        self.lease(source, sha256, size).release()
        return self.downloads != before

    def contains(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def index(self, source: Location, sha256: str) -> Path:
        """The local copy of a shard's ``.csv.gz`` document index (it has no manifest hash: it
        is kept under its shard's, and downloaded once per node under a lock of its own: the
        reader asking holds the shard's shared lock, which keeps both from eviction)."""
        path = self.path(sha256, ".csv.gz")
        if path.is_file():
            return path
        fd = self._lock_fd(sha256, ".index.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not path.is_file():
                source.download(path)
                self._count()
        finally:
            os.close(fd)
        return path

    # ---- internals -------------------------------------------------------------------------

    def _count(self) -> None:
        with self._count_lock:
            self.downloads += 1

    def _download(self, source: Location, sha256: str, size: int, path: Path) -> None:
        """Download under the shard's exclusive lock: room, reservation, temp file, hash check,
        rename."""
        if size > self.max_bytes:
            raise CacheFullError(
                f"{source}: shard of {format_bytes(size)} is bigger than the whole shard cache "
                f"({format_bytes(self.max_bytes)} at {self.root}); raise data.cache_max_bytes"
            )
        reserve = self.path(sha256, ".reserve")
        self._make_room(sha256, size, reserve)
        tmp = self.path(sha256, f".npy.{os.getpid()}.{threading.get_ident()}.download")
        try:
            source.download(tmp)
            self._count()
            actual = sha256_file(tmp, _HASH_CHUNK)
            if actual != sha256:
                raise ShardFormatError(
                    f"{source}: downloaded shard has sha256 {actual} but the manifest says "
                    f"{sha256}; the object was modified or corrupted (not kept in the cache)"
                )
            os.replace(tmp, path)
            log.debug("cached %s as %s", source, path.name)
        finally:
            tmp.unlink(missing_ok=True)
            reserve.unlink(missing_ok=True)

    def _make_room(self, sha256: str, size: int, reserve: Path) -> None:
        """Evict unheld shards, least recently used first, until ``size`` more bytes fit; then
        reserve them (all under the cache-wide lock, so concurrent downloads add up)."""
        fd = os.open(self.root / _GLOBAL_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            used, candidates = self._usage()
            for mtime_path in sorted(candidates):
                if used + size <= self.max_bytes:
                    break
                _, key = mtime_path
                if key != sha256:
                    used -= self._evict(key)
            if used + size > self.max_bytes:
                raise CacheFullError(
                    f"shard cache {self.root} cannot fit a shard of {format_bytes(size)}: "
                    f"{format_bytes(used)} of its {format_bytes(self.max_bytes)} are held by "
                    "shards in use or being downloaded; raise data.cache_max_bytes (or lower "
                    "data.prefetch_shards)"
                )
            reserve.write_text(str(size))
        finally:
            os.close(fd)

    def _usage(self) -> tuple[int, list[tuple[float, str]]]:
        """(bytes on disk and reserved, [(mtime, sha256) of every cached shard])."""
        used = 0
        shards: list[tuple[float, str]] = []
        for entry in os.scandir(self.root):
            name = entry.name
            try:
                if name.endswith(".reserve"):
                    used += int(Path(entry.path).read_text() or 0)
                elif name.endswith(_DATA_SUFFIXES) or name.endswith(".download"):
                    stat = entry.stat()
                    if not name.endswith(".download"):  # reserved already
                        used += stat.st_size
                    if name.endswith(".npy"):
                        shards.append((stat.st_mtime, name[: -len(".npy")]))
            except (FileNotFoundError, ValueError):
                continue
        return used, shards

    def _evict(self, sha256: str) -> int:
        """Delete a shard (and its index) unless a process holds it; the bytes freed."""
        fd = self._lock_fd(sha256)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # in use (or being downloaded) somewhere on this node
            freed = 0
            for suffix in _DATA_SUFFIXES:
                path = self.path(sha256, suffix)
                try:
                    freed += path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    continue
            log.debug("evicted %s from %s", sha256, self.root)
            return freed
        finally:
            os.close(fd)
