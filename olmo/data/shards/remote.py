"""Token shards on an object store (``s3://``, ``gs://``; ``memory://`` in tests), read through
the node's bounded local cache (``cache.ShardCache``) and prefetched ahead of the data order: the
``cache`` way of reading them (the ``range`` way, for data larger than the cache, is below).

``open_shards(["s3://bucket/tokens"])`` reads ``manifest.json`` from the store and lists its
shards in a :class:`RemoteShardList`: nothing else is read until a shard's tokens are. The first
read of a shard downloads it into the cache (verified against the manifest's sha256) and holds
it there (a shared lock, so no process on the node evicts it) while it is open; at most
``max_open`` shards are held open per process, the least recently read is let go first (its
file stays cached until room is needed). A shard's ``.csv.gz`` index is downloaded the first
time a reader asks for document information.

**Prefetch.** ``prefetch(shard_indices)`` (reached through ``InstanceDataset.prefetch`` with the
upcoming instances of the global order) downloads, in a background thread pool, the first
``prefetch_shards`` distinct shards of the list that are not cached yet, so a later read finds
them local. A failed prefetch is logged and retried by the read that needs the shard, which then
raises the error.

A folder on a store must hold ``manifest.json`` (its sha256s are what the cache is keyed by and
checked against); Dolma's manifest-less folders are read from local disk only.

**Two ways to read** (``open_shards(..., remote_read=...)``, ``data.remote_read``): ``cache``, the
above, for data that fit the node's cache; ``range`` (``ranges.RangeShardList``), for data much
larger than it (Dolma: ~6 TB against a 64 GiB cache, where the global shuffle would make every
instance cost a whole-shard download): each instance's tokens are fetched with a ranged GET,
prefetched ahead of the data order into a bounded in-memory buffer, and nothing is written to
disk. ``auto`` (the default) takes ``cache`` when the remote shards' total size fits
``cache_max_bytes``, else ``range``, and logs which and why.

**Integrity.** ``cache`` mode checks every downloaded shard against the manifest's sha256 before
using it. A ranged read cannot be: ``range`` mode checks what the store gives cheaply (at open,
``ShardSet.check_files`` lists every shard and compares its size with the manifest's; every
read must return exactly the bytes asked for) and otherwise *trusts the transport*: a ranged GET
carries no checksum of its bytes, so only TLS guards them (an ``http://`` endpoint, nothing).
Data that must be verified end to end should be read in ``cache`` mode, or checked once with
``open_shards(local_copy, verify=True)``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from olmo.data.shards.cache import Lease, ShardCache
from olmo.data.shards.format import MANIFEST_NAME, ShardFormatError
from olmo.data.shards.manifest import Manifest, parse_manifest
from olmo.data.shards.reader import ShardList, TokenShard
from olmo.storage import Location

log = logging.getLogger(__name__)

DEFAULT_PREFETCH_SHARDS = 4
DEFAULT_MAX_OPEN = 8


def read_remote_manifest(folder: Location) -> tuple[Manifest, str]:
    """(the manifest, the sha256 of its bytes) of a dataset folder on a store."""
    import hashlib

    where = folder / MANIFEST_NAME
    try:
        raw = where.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no {MANIFEST_NAME} at {where}: a token-shard folder on an object store needs one "
            "(data-prep writes it last, once every shard is uploaded)"
        ) from None
    return parse_manifest(raw, where=str(where)), hashlib.sha256(raw).hexdigest()


class RemoteTokenShard(TokenShard):
    """A shard read from the cache; its document index is downloaded when first needed."""

    def __init__(
        self, lease: Lease, dtype: Any, *, index: Location, sha256: str, cache: ShardCache, n: int
    ) -> None:
        super().__init__(
            lease.path,
            dtype,
            index_path=cache.path(sha256, ".csv.gz"),
            expected_tokens=n,
        )
        self.lease = lease
        self.remote_index = index
        self.sha256 = sha256
        self._cache = cache

    @property
    def has_index(self) -> bool:
        return self._index is not None or self.index_path.is_file() or self.remote_index.exists()

    def _load_index(self):  # type: ignore[no-untyped-def]
        if self._index is None and not self.index_path.is_file():
            with contextlib.suppress(FileNotFoundError):  # the base class reports it
                self._cache.index(self.remote_index, self.sha256)
        return super()._load_index()


class StoreShardList(ShardList):
    """A :class:`ShardList` whose entries may lie on an object store: what the two ways of
    reading them (``cache``: :class:`RemoteShardList`, ``range``: ``ranges.RangeShardList``)
    share. Local entries read as in the base class."""

    def __init__(self, dtype: Any) -> None:
        super().__init__(dtype)
        self._remote: dict[int, tuple[Location, Location, str]] = {}

    @staticmethod
    def check_counts(**settings: tuple[Any, int]) -> None:
        """ValueError unless every ``name=(value, least)`` is an integer >= least."""
        for name, (value, low) in settings.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    def add_remote(self, shard: Location, index: Location, num_tokens: int, sha256: str) -> None:
        """A shard on a store, as its manifest lists it."""
        self._remote[len(self)] = (shard, index, sha256)
        self.add(str(shard), str(index), num_tokens)

    def is_remote(self, i: int) -> bool:
        return i in self._remote

    @property
    def remote_bytes(self) -> int:
        """Total size of the shards on a store."""
        return sum(self._nbytes(i) for i in self._remote)

    def _nbytes(self, i: int) -> int:
        return self._sizes[i] * self.dtype.itemsize

    def check_files(self) -> list[Exception]:
        """Check every remote shard is on its store with the manifest's size (one listing per
        folder, nothing downloaded); the problems found."""
        problems: list[Exception] = []
        listings: dict[str, dict[str, dict[str, Any]]] = {}
        for i, (source, _, _) in self._remote.items():
            folder = str(source.parent)
            if folder not in listings:
                listings[folder] = source.parent.files()
            info = listings[folder].get(source.name)
            if info is None:
                problems.append(FileNotFoundError(f"token shard not found: {source}"))
            elif int(info["size"]) != self._nbytes(i):
                problems.append(
                    ShardFormatError(
                        f"{source}: {info['size']} bytes but the manifest says {self._sizes[i]} "
                        f"{self.dtype.name} tokens ({self._nbytes(i)} bytes)"
                    )
                )
        return problems


class RemoteShardList(StoreShardList):
    """Remote shards read through the node's cache (see the module doc)."""

    holds_arrays = False  # InstanceDataset asks for each shard's array every time

    def __init__(
        self,
        dtype: Any,
        cache: ShardCache,
        *,
        prefetch_shards: int = DEFAULT_PREFETCH_SHARDS,
        max_open: int = DEFAULT_MAX_OPEN,
    ) -> None:
        super().__init__(dtype)
        self.check_counts(prefetch_shards=(prefetch_shards, 0), max_open=(max_open, 1))
        self.cache = cache
        self.prefetch_shards = prefetch_shards
        self.max_open = max_open
        self._open: OrderedDict[int, RemoteTokenShard] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future[bool]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "_open": OrderedDict(),
            "_pool": None,
            "_pending": {},
            "_lock": None,
            "_made": {i: s for i, s in self._made.items() if i not in self._remote},
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        if i not in self._remote:
            return super().__getitem__(i)
        shard = self._open.get(i)
        if shard is not None:
            self._open.move_to_end(i)
            return shard
        source, index, sha256 = self._remote[i]
        lease = self.cache.lease(source, sha256, self._nbytes(i))
        try:
            shard = RemoteTokenShard(
                lease, self.dtype, index=index, sha256=sha256, cache=self.cache, n=self._sizes[i]
            )
        except BaseException:
            lease.release()
            raise
        self._open[i] = shard
        while len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.lease.release()  # its file stays cached (evictable) and its memmap valid
        return shard

    # ---- prefetch --------------------------------------------------------------------------

    def prefetch(self, shard_indices: Iterable[int]) -> list[int]:
        """Start downloading, in the background, the first ``prefetch_shards`` distinct remote
        shards of ``shard_indices`` (in order) that are neither cached nor being downloaded;
        returns the shards started."""
        if not self.prefetch_shards:
            return []
        with self._lock:
            self._pending = {i: f for i, f in self._pending.items() if not f.done()}
            wanted: list[int] = []
            for i in dict.fromkeys(int(i) for i in shard_indices):
                if len(wanted) + len(self._pending) >= self.prefetch_shards:
                    break
                if (
                    i in self._remote
                    and i not in self._pending
                    and i not in self._open
                    and not self.cache.contains(self._remote[i][2])
                ):
                    wanted.append(i)
            if wanted and self._pool is None:
                self._pool = ThreadPoolExecutor(self.prefetch_shards, "olmo-shard-prefetch")
            for i in wanted:
                source, _, sha256 = self._remote[i]
                assert self._pool is not None
                future = self._pool.submit(self.cache.ensure, source, sha256, self._nbytes(i))
                future.add_done_callback(_log_failure(source))
                self._pending[i] = future
        return wanted

    def wait_prefetched(self, timeout: float | None = None) -> None:
        """Wait for the downloads started by :meth:`prefetch` (errors are not raised here)."""
        with self._lock:
            pending = list(self._pending.values())
        for future in pending:
            with contextlib.suppress(Exception):  # logged by the callback; the read raises it
                future.result(timeout)

    def close(self) -> None:
        """Stop prefetching and let go of every open shard."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        while self._open:
            self._open.popitem()[1].lease.release()


def _log_failure(source: Location):  # type: ignore[no-untyped-def]
    def callback(future: Future[bool]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning("prefetching %s failed: %s", source, future.exception())

    return callback
