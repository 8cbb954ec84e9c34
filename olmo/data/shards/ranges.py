"""Range mode: token shards on an object store read by ranged GETs, never downloaded whole.

For datasets much larger than the node's shard cache (``remote.py`` explains when ``auto`` picks
this mode). A remote shard's tokens are a :class:`RangeTokens` (array-like: ``tokens[a:b]`` is an
``ndarray``), so ``InstanceDataset`` and ``ShardSet.read`` read them exactly as local memmaps.

- **A read** of tokens ``[a, b)`` of shard ``i`` is served from the buffer when a block there
  covers it (waiting for it if its request is still in flight), else by one synchronous ranged GET
  (``Location.read_range``), which must return exactly the bytes asked for.
- **Prefetch.** :meth:`RangeShardList.prefetch_ranges` takes the token ranges about to be read (in
  read order: ``InstanceDataset.prefetch`` passes this rank's instances of the next steps, and
  ``get_batch`` its own batch before reading it, so a batch's misses are fetched concurrently);
  ranges already buffered or in flight are skipped, ranges of one shard that overlap, touch or lie
  within ``merge_gap`` bytes of each other are merged into one request (up to
  ``max_request_bytes``), and the requests run in a pool of ``prefetch_requests`` threads, first
  needed first. A failed request is logged; the read then retries it synchronously and raises.
- **Bounded memory.** Blocks buffered plus requests in flight hold at most ``buffer_bytes``: room
  for a new request is made by dropping the oldest finished blocks; when in-flight requests alone
  fill the bound, the rest of the ranges are not prefetched (their reads fetch them).
- **Integrity**: see ``remote.py`` (sizes checked, the transport trusted; no sha256).

Nothing is written to disk; a shard's ``.csv.gz`` document index is read into memory when a
reader first asks for document information (``inspect-batch``), not during training.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from olmo.data.shards.format import ShardFormatError
from olmo.data.shards.reader import TokenShard
from olmo.data.shards.remote import StoreShardList
from olmo.storage import Location

log = logging.getLogger(__name__)

DEFAULT_PREFETCH_REQUESTS = 8
DEFAULT_BUFFER_BYTES = 256 << 20
MERGE_GAP_BYTES = 256 << 10
"""Ranges of a shard this close are fetched by one request (a GET costs more than 256 KiB)."""
MAX_REQUEST_BYTES = 16 << 20

_Key = tuple[int, int, int]  # (shard, first byte, end byte)


class RangeTokens:
    """The tokens of a remote shard, read on demand: ``tokens[a:b]`` (step 1) is an ndarray,
    ``tokens[k]`` one token, ``len(tokens)`` the manifest's count."""

    def __init__(self, shards: RangeShardList, index: int, num_tokens: int) -> None:
        self._shards, self._index, self._len = shards, index, num_tokens
        self.dtype = shards.dtype
        self.shape = (num_tokens,)

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"RangeTokens(shard {self._index}, {self._len} {self.dtype.name} tokens)"

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            start, stop, step = key.indices(self._len)
            if step != 1:
                raise IndexError("a remote shard's tokens are sliced with step 1 only")
            return self._shards.read(self._index, start, max(start, stop))
        k = range(self._len)[key]  # an integer: negative indices, IndexError
        return self._shards.read(self._index, k, k + 1)[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)


class RangeTokenShard(TokenShard):
    """A remote shard read by ranges: ``tokens`` and ``array`` are :class:`RangeTokens`."""

    def __init__(self, shards: RangeShardList, i: int, source: Location, index: Location) -> None:
        n = shards.sizes[i]
        super().__init__(
            str(source), shards.dtype, index_path=str(index), expected_tokens=n, lazy=True
        )
        self._checked = True  # sizes are checked against the store's listing (check_files)
        self.source, self.remote_index = source, index
        self._tokens = self._array = RangeTokens(shards, i, n)  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RangeTokenShard({str(self.source)!r}, {self.dtype.name}, num_tokens={len(self)})"

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)  # its tokens are no memmap: they pickle as a reference

    def has_npy_header(self) -> bool:
        head = self.source.read_range(0, min(10, self.num_tokens * self.dtype.itemsize))
        return head[:6] == b"\x93NUMPY" and head[6:7] in (b"\x01", b"\x02", b"\x03")

    @property
    def has_index(self) -> bool:
        return self._index is not None or self.remote_index.exists()

    def _index_source(self) -> Any:
        return io.BytesIO(self.remote_index.read_bytes())


class RangeShardList(StoreShardList):
    """Remote shards read by ranged GETs through a bounded prefetch buffer (see the module doc)."""

    def __init__(
        self,
        dtype: Any,
        *,
        prefetch_requests: int = DEFAULT_PREFETCH_REQUESTS,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        merge_gap: int = MERGE_GAP_BYTES,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        super().__init__(dtype)
        self.check_counts(
            prefetch_requests=(prefetch_requests, 0),
            buffer_bytes=(buffer_bytes, 1),
            merge_gap=(merge_gap, 0),
            max_request_bytes=(max_request_bytes, 1),
        )
        self.prefetch_requests = prefetch_requests
        self.buffer_bytes = buffer_bytes
        self.merge_gap = merge_gap
        self.max_request_bytes = max_request_bytes
        self.requests = 0
        """Ranged GETs made (prefetched or not): what tests and logs count."""
        self.bytes_read = 0
        self.hits = 0
        """Reads served from the buffer (or a request in flight)."""
        self.misses = 0
        """Reads that made their own GET (not prefetched: prefetch off, or the buffer full)."""
        self.wait_seconds = 0.0
        """Time reads spent waiting for the store (a stall of the step, when prefetch is late)."""
        self._init_state()

    def _init_state(self) -> None:
        self._blocks: OrderedDict[_Key, Future[bytes]] = OrderedDict()  # oldest first
        self._by_shard: dict[int, dict[_Key, None]] = {}
        self._held = 0  # bytes of every block, finished or in flight
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.RLock()  # a done-callback may run in the thread holding it

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in _UNPICKLED}
        state["_made"] = {i: s for i, s in self._made.items() if i not in self._remote}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_state()

    @property
    def buffered_bytes(self) -> int:
        """Bytes held by the buffer (finished blocks and requests in flight)."""
        return self._held

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        if i not in self._remote:
            return super().__getitem__(i)
        shard = self._made.get(i)
        if shard is None:
            source, index, _ = self._remote[i]
            shard = self._made[i] = RangeTokenShard(self, i, source, index)
        return shard

    # ---- reading ---------------------------------------------------------------------------

    def read(self, i: int, start: int, end: int) -> np.ndarray:
        """Tokens ``[start, end)`` of remote shard ``i`` (a read-only array)."""
        size = self.dtype.itemsize
        first, last = start * size, end * size
        if first == last:
            return np.empty(0, dtype=self.dtype)
        with self._lock:
            key = self._covering(i, first, last)
            future = self._blocks.get(key) if key is not None else None
        began = time.perf_counter()
        try:
            if future is not None and key is not None:
                try:
                    data = future.result()
                except Exception:  # logged by the callback: fetch it here, raising what fails
                    pass
                else:
                    with self._lock:
                        self.hits += 1
                    return np.frombuffer(data, self.dtype, end - start, first - key[1])
            with self._lock:
                self.misses += 1
            return np.frombuffer(self._get(i, first, last), self.dtype)
        finally:
            waited = time.perf_counter() - began
            with self._lock:
                self.wait_seconds += waited

    def _get(self, i: int, first: int, last: int) -> bytes:
        source = self._remote[i][0]
        data = source.read_range(first, last)
        with self._lock:
            self.requests += 1
            self.bytes_read += len(data)
        if len(data) != last - first:
            raise ShardFormatError(
                f"{source}: a read of bytes [{first}, {last}) returned {len(data)} bytes; the "
                f"object is smaller than its manifest says ({self._nbytes(i)} bytes): was it "
                "changed on the store?"
            )
        return data

    def _covering(self, i: int, first: int, last: int) -> _Key | None:
        for key in self._by_shard.get(i, ()):
            if key[1] <= first and last <= key[2]:
                return key
        return None

    # ---- prefetch --------------------------------------------------------------------------

    def prefetch(self, shard_indices: Iterable[int]) -> list[int]:
        """Whole shards are never fetched in range mode: ``prefetch_ranges`` takes the ranges
        (``InstanceDataset.prefetch`` sends them). Returns []."""
        return []

    def prefetch_ranges(self, pieces: Iterable[tuple[int, int, int]]) -> list[int]:
        """Start fetching, in the background, the ``(shard, start, end)`` token ranges (in the
        order they will be read) that are neither buffered nor in flight, merged per shard and
        within the buffer's bound; returns the shards of the requests started, in order."""
        if not self.prefetch_requests:
            return []
        size = self.dtype.itemsize
        started: dict[int, None] = {}
        with self._lock:
            wanted: list[tuple[int, int, int, int]] = []
            for order, (i, start, end) in enumerate(pieces):
                first, last = int(start) * size, int(end) * size
                if i in self._remote and first < last and self._covering(i, first, last) is None:
                    wanted.append((int(i), first, last, order))
            for i, first, last in self._merge(wanted):
                if not self._make_room(last - first):
                    break  # the bound is taken by requests in flight: the reads fetch the rest
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.prefetch_requests, "olmo-range-prefetch")
                key = (i, first, last)
                future = self._pool.submit(self._get, i, first, last)
                self._blocks[key] = future
                self._by_shard.setdefault(i, {})[key] = None
                self._held += last - first
                future.add_done_callback(self._done(key))
                started[i] = None
        return list(started)

    def _merge(self, wanted: list[tuple[int, int, int, int]]) -> list[_Key]:
        """Byte ranges → requests: per shard, ranges within ``merge_gap`` of each other joined
        (up to ``max_request_bytes``); ordered by the first read each serves."""
        merged: list[tuple[int, int, int, int]] = []  # (order, shard, first, last)
        by_shard: dict[int, list[tuple[int, int, int]]] = {}
        for i, first, last, order in wanted:
            by_shard.setdefault(i, []).append((first, last, order))
        for i, ranges in by_shard.items():
            ranges.sort()
            cur_first, cur_last, cur_order = ranges[0]
            for first, last, order in ranges[1:]:
                joined = max(cur_last, last) - cur_first
                if first <= cur_last + self.merge_gap and joined <= self.max_request_bytes:
                    cur_last, cur_order = max(cur_last, last), min(cur_order, order)
                else:
                    merged.append((cur_order, i, cur_first, cur_last))
                    cur_first, cur_last, cur_order = first, last, order
            merged.append((cur_order, i, cur_first, cur_last))
        return [(i, first, last) for _, i, first, last in sorted(merged)]

    def _make_room(self, size: int) -> bool:
        """Drop the oldest finished blocks until ``size`` more bytes fit the bound."""
        if size > self.buffer_bytes:
            return False
        while self._held + size > self.buffer_bytes:
            oldest = next((k for k, f in self._blocks.items() if f.done()), None)
            if oldest is None:
                return False
            self._drop(oldest)
        return True

    def _drop(self, key: _Key) -> None:
        del self._blocks[key]
        del self._by_shard[key[0]][key]
        if not self._by_shard[key[0]]:
            del self._by_shard[key[0]]
        self._held -= key[2] - key[1]

    def _done(self, key: _Key):  # type: ignore[no-untyped-def]
        def callback(future: Future[bytes]) -> None:
            if future.cancelled() or future.exception() is None:
                return
            log.warning(
                "prefetching bytes [%d, %d) of %s failed: %s",
                key[1], key[2], self._remote[key[0]][0], future.exception(),
            )  # fmt: skip
            with self._lock:
                if self._blocks.get(key) is future:
                    self._drop(key)

        return callback

    def wait_prefetched(self, timeout: float | None = None) -> None:
        """Wait for the requests in flight (errors are not raised here: the reads raise them)."""
        with self._lock:
            pending = list(self._blocks.values())
        for future in pending:
            try:
                future.exception(timeout)
            except Exception:  # cancelled by close()
                continue

    def close(self) -> None:
        """Stop prefetching and empty the buffer."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self._lock:
            self._blocks.clear()
            self._by_shard.clear()
            self._held = 0
        if self.requests:
            log.info(
                "range reads: %d GETs, %.1f MiB, %d reads from the prefetch buffer, %d not, "
                "%.2f s waited",
                self.requests, self.bytes_read / (1 << 20), self.hits, self.misses,
                self.wait_seconds,
            )  # fmt: skip


_UNPICKLED = ("_blocks", "_by_shard", "_held", "_pool", "_lock", "_made")
