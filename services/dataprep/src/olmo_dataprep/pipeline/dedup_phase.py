"""Phase 2, global dedup decisions: the first occurrence in the global order wins, at every
level (URL, document, near-duplicate, paragraph). Only hashes are read, one row group at a time.

**The state is partitioned, not replicated.** Every key (a URL, document or paragraph hash)
belongs to one of ``dedup.partitions`` partitions (a fixed number, so the result never depends on
the number of workers), and worker ``w`` of ``n`` owns partitions ``w, w+n, ...``: it reads every
file's keys but keeps only those of its partitions, so the exact URL and document sets
(``DigestSet``, about 16 bytes a hash) and the paragraph Bloom filters (one per partition, sized
``capacity / partitions``) are split over the workers. Which key is first is decided per
partition, in the global order, exactly as one pass over everything would decide it. The levels
depend on each other (a document dropped as a URL duplicate adds no text hash; only documents
that survive every document-level check add paragraphs), so they run one after another with a
file barrier between them, each writing its decisions per partition
(``work/dedup/<level>/pNNNN.npy``: the sorted row keys ``file index << 32 | pos``, for paragraphs
with the paragraph index as a second column). A worker then assembles its files' decisions from
every partition's files (memory-mapped; only its files' slices are read). Near-duplicate
detection (MinHash LSH, off by default) does not partition this way: when it is on, every worker
runs it over all files after the document level, as one index.

A file's decisions are kept as small integers (``FileDecisions``: one byte per row, and two
integers per removed paragraph), never texts, and only for the files the caller needs."""

from __future__ import annotations

import hashlib
import io
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Container, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from olmo.fileio import write_atomic

from ..config import PipelineConfig
from ..dedup import REASON_DEDUP_ALL_PARAGRAPHS, BloomFilter
from ..minhash import REASON_NEAR_DUPLICATE, NearDuplicateIndex, signature_from_bytes
from .plan import InputFile, Layout
from .progress import StageTimer
from .tables import GROUP_ROWS, iter_batches

REASON_URL_DUPLICATE = "url_duplicate"
REASON_DUPLICATE = "duplicate"

# The drops this pass decides; ``FileDecisions`` stores a row's as its index here plus one.
DROPS = (
    ("url_dedup", REASON_URL_DUPLICATE),
    ("doc_dedup", REASON_DUPLICATE),
    ("near_dedup", REASON_NEAR_DUPLICATE),
    ("paragraph_dedup", REASON_DEDUP_ALL_PARAGRAPHS),
)
_CODE = {drop: code for code, drop in enumerate(DROPS, start=1)}


class FileDecisions:
    """Dedup outcome for one file, by row (``pos``): the drop (``drop``) and the indices (among
    non-blank lines) of the duplicate paragraphs to remove (``removed``). Rows are added in
    order; storage is one byte per row and two integers per removed paragraph."""

    def __init__(self) -> None:
        self._codes = bytearray()  # per row: 0 (not dropped here) or DROPS index + 1
        self._removed_pos = array("q")  # one entry per removed paragraph, rows ascending
        self._removed_index = array("q")

    def add_rows(self, count: int) -> None:
        """Extend the file by ``count`` rows that nothing drops (yet)."""
        self._codes.extend(bytes(count))

    def set_drop(self, pos: int, stage: str, reason: str) -> None:
        self._codes[pos] = _CODE[(stage, reason)]

    def set_removed(self, pos: int, indices: Sequence[int]) -> None:
        """Paragraphs to remove from row ``pos`` (rows must come in ascending order)."""
        if self._removed_pos and self._removed_pos[-1] >= pos:
            raise ValueError(f"removed paragraphs of row {pos} given out of order")
        self._removed_pos.extend([pos] * len(indices))
        self._removed_index.extend(indices)

    def drop(self, pos: int) -> tuple[str, str] | None:
        """``(stage, reason)`` when a dedup stage drops row ``pos``."""
        code = self._codes[pos] if pos < len(self._codes) else 0
        return DROPS[code - 1] if code else None

    def removed(self, pos: int) -> list[int]:
        """The paragraphs to remove from row ``pos`` (empty for none)."""
        lo = bisect_left(self._removed_pos, pos)
        hi = bisect_right(self._removed_pos, pos, lo)
        return self._removed_index[lo:hi].tolist()


class DigestSet:
    """An exact set of digests (``bytes``; 16 bytes each, longer or shorter ones are hashed to
    16) in about 16 bytes a digest: the newest (fewer than ``recent_limit``) in a Python
    ``set``, the others in sorted runs of their two 64-bit halves, merged like the digits of a
    binary counter (a digest is re-sorted about log2(n / recent_limit) times in all).

    Lookups against the runs are batched: ``in_runs`` checks a group of digests at once, then
    ``check_and_add`` settles each one in order (seeing the digests added since, which are in
    the recent set); ``settle`` moves a full recent set into a run between groups.
    """

    def __init__(self, recent_limit: int = 1 << 16) -> None:
        self.recent_limit = recent_limit
        self._recent: set[bytes] = set()
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (high, low) sorted; longest first

    def __len__(self) -> int:
        return len(self._recent) + sum(len(high) for high, _ in self._runs)

    @staticmethod
    def _key(digest: bytes) -> bytes:
        return digest if len(digest) == 16 else hashlib.blake2b(digest, digest_size=16).digest()

    def in_runs(self, digests: Sequence[bytes | None]) -> list[bool]:
        """For each digest (None: False), whether it is in the runs (not the recent set)."""
        present = [i for i, d in enumerate(digests) if d is not None]
        found = np.zeros(len(present), dtype=bool)
        if present and self._runs:
            data = b"".join(self._key(digests[i]) for i in present)  # type: ignore[arg-type]
            halves = np.frombuffer(data, dtype=np.uint64).reshape(-1, 2)
            high, low = halves[:, 0], halves[:, 1]
            for run_high, run_low in self._runs:
                at = np.searchsorted(run_high, high)
                while True:  # digests sharing their high half are next to each other
                    inside = at < len(run_high)
                    clipped = np.minimum(at, len(run_high) - 1)
                    same = inside & (run_high[clipped] == high)
                    if not same.any():
                        break
                    found |= same & (run_low[clipped] == low)
                    at = np.where(same, at + 1, len(run_high))
        out = [False] * len(digests)
        for i, hit in zip(present, found.tolist(), strict=True):
            out[i] = hit
        return out

    def check_and_add(self, digest: bytes, in_runs: bool) -> bool:
        """True when ``digest`` is in the set (``in_runs`` from ``in_runs``); else add it."""
        key = self._key(digest)
        if in_runs or key in self._recent:
            return True
        self._recent.add(key)
        return False

    def settle(self) -> None:
        """Move the recent digests into a run once there are ``recent_limit`` of them."""
        if len(self._recent) < self.recent_limit:
            return
        halves = np.frombuffer(b"".join(self._recent), dtype=np.uint64).reshape(-1, 2)
        self._recent = set()
        high, low = halves[:, 0], halves[:, 1]
        while self._runs and len(self._runs[-1][0]) <= len(high):
            run_high, run_low = self._runs.pop()
            high, low = np.concatenate([run_high, high]), np.concatenate([run_low, low])
        order = np.lexsort((low, high))
        self._runs.append((high[order], low[order]))


_LEVELS = ("url", "doc", "para")
_ROW_BITS = 32


def _row_key(file_index: int, pos: int) -> int:
    return (file_index << _ROW_BITS) | pos


def partition_of(digest: bytes, partitions: int) -> int:
    """The partition of a key (its first four bytes, little-endian, modulo ``partitions``)."""
    return int.from_bytes(digest[:4], "little") % partitions


def _arrow_batches(path: Path, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """The ``columns`` of a table, one row group at a time, as Arrow record batches."""
    with pq.ParquetFile(path) as parquet:
        for group in range(parquet.num_row_groups):
            yield from parquet.iter_batches(
                batch_size=GROUP_ROWS, row_groups=[group], columns=list(columns), use_threads=False
            )


def _partitions(keys: pa.Array, partitions: int) -> np.ndarray:
    """``partition_of`` of every key of a binary array, vectorised (-1 for a null key)."""
    heads = pc.binary_slice(keys, 0, 4).cast(pa.binary(4))
    data = np.frombuffer(heads.buffers()[1], dtype="<u4", count=heads.offset + len(heads))
    out = (data[heads.offset :] % partitions).astype(np.int64)
    if heads.null_count:
        out[heads.is_null().to_numpy(zero_copy_only=False)] = -1
    return out


class _Drops:
    """One level's decisions, every partition's file memory-mapped, read one input file at a
    time: the dropped rows' ``pos`` (``pairs``: the ``(pos, paragraph index)`` of removed
    paragraphs)."""

    def __init__(self, paths: Sequence[Path], pairs: bool = False) -> None:
        self.pairs = pairs
        self.arrays = [a for a in (np.load(path, mmap_mode="r") for path in paths) if len(a)]

    def rows_of(self, file_index: int) -> np.ndarray:
        """One file's rows, sorted."""
        low, high = _row_key(file_index, 0), _row_key(file_index + 1, 0)
        parts = []
        for values in self.arrays:
            keys = values[:, 0] if self.pairs else values
            lo, hi = np.searchsorted(keys, [low, high])
            if hi > lo:
                parts.append(np.array(values[lo:hi]))
        if not parts:
            return np.empty((0, 2) if self.pairs else 0, dtype=np.int64)
        rows = np.concatenate(parts)
        if not self.pairs:
            return np.sort(rows - low)
        rows[:, 0] -= low
        return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


class DedupPass:
    """The partitioned dedup pass of one worker (see the module doc)."""

    def __init__(
        self,
        layout: Layout,
        files: Sequence[InputFile],
        config: PipelineConfig,
        timer: StageTimer,
        *,
        worker_index: int = 0,
        num_workers: int = 1,
        wait: Callable[[list[Path], str], None] | None = None,
    ) -> None:
        self.layout, self.files, self.config, self.timer = layout, files, config, timer
        self.partitions = config.dedup.partitions
        self.mine = [p for p in range(self.partitions) if p % num_workers == worker_index]
        self.owned = bytearray(self.partitions)
        for partition in self.mine:
            self.owned[partition] = 1
        self.wait = wait or (lambda paths, what: None)
        self.folder = layout.work / "dedup"

    def path(self, level: str, partition: int) -> Path:
        return self.folder / level / f"p{partition:04d}.npy"

    def _all(self, level: str) -> list[Path]:
        return [self.path(level, p) for p in range(self.partitions)]

    def _write(self, level: str, rows: dict[int, list]) -> None:
        for partition in self.mine:
            values = rows.get(partition, [])
            array = np.array(values, dtype=np.int64).reshape((-1, 2) if level == "para" else -1)
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            path = self.path(level, partition)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, buffer.getvalue())

    def _done(self, level: str) -> bool:
        return all(self.path(level, p).exists() for p in self.mine)

    def _level(self, level: str, column: str, skip: list[_Drops]) -> None:
        """One exact level (``url`` or ``doc``) for this worker's partitions: only the keys of
        its partitions are picked out (vectorised) and looked at one by one."""
        if self._done(level):
            return
        seen = DigestSet()
        rows: dict[int, list[int]] = {}
        owned = np.frombuffer(bytes(self.owned) + b"\0", dtype=np.uint8).astype(bool)
        for f in self.files:
            skipped = np.concatenate([d.rows_of(f.index) for d in skip] or [np.empty(0, np.int64)])
            for batch in _arrow_batches(self.layout.map_table(f), ["pos", "stage", column]):
                pos = batch.column(0).to_numpy()
                keys = batch.column(2)
                partition = _partitions(keys, self.partitions)
                pick = owned[partition]  # -1 (null) reads the trailing False
                pick &= ~pc.is_in(batch.column(1), pa.array(["read", "langid"])).to_numpy(
                    zero_copy_only=False
                )
                if len(skipped):
                    pick &= ~np.isin(pos, skipped)
                at = np.flatnonzero(pick)
                if not len(at):
                    continue
                picked = keys.take(pa.array(at)).to_pylist()
                for row, h, old in zip(at.tolist(), picked, seen.in_runs(picked), strict=True):
                    if seen.check_and_add(h, old):
                        key = _row_key(f.index, int(pos[row]))
                        rows.setdefault(int(partition[row]), []).append(key)
                seen.settle()
        self._write(level, rows)

    def _paragraphs(self, dropped: list[_Drops], near: dict[int, set[int]]) -> None:
        if self._done("para"):
            return
        cfg = self.config.dedup.paragraphs
        capacity = max(1, -(-cfg.capacity // self.partitions))
        blooms = {p: BloomFilter(capacity, cfg.false_positive_rate) for p in self.mine}
        rows: dict[int, list[tuple[int, int]]] = {}
        owned = np.frombuffer(bytes(self.owned) + b"\0", dtype=np.uint8).astype(bool)
        for f in self.files:
            skipped = np.concatenate(
                [d.rows_of(f.index) for d in dropped]
                + [np.fromiter(near.get(f.index, ()), dtype=np.int64)]
            )
            columns = ["pos", "stage", "para_hashes"]
            for batch in _arrow_batches(self.layout.map_table(f), columns):
                pos = batch.column(0).to_numpy()
                lists = batch.column(2)
                eligible = batch.column(1).is_null().to_numpy(
                    zero_copy_only=False
                ) & lists.is_valid().to_numpy(zero_copy_only=False)
                if len(skipped):
                    eligible &= ~np.isin(pos, skipped)
                flat = pc.list_flatten(lists)
                if not len(flat):
                    continue
                parent = pc.list_parent_indices(lists).to_numpy()
                partition = _partitions(flat, self.partitions)
                pick = np.flatnonzero(owned[partition] & eligible[parent])
                if not len(pick):
                    continue
                starts = lists.offsets.to_numpy()[:-1] - lists.offsets[0].as_py()
                index_in_doc = np.arange(len(flat)) - starts[parent]
                picked = flat.take(pa.array(pick)).to_pylist()
                for at, h in zip(pick.tolist(), picked, strict=True):
                    partition_at = int(partition[at])
                    if blooms[partition_at].add_if_absent(h):
                        row = _row_key(f.index, int(pos[parent[at]]))
                        rows.setdefault(partition_at, []).append((row, int(index_in_doc[at])))
        self._write("para", rows)

    def _near(self, dropped: list[_Drops]) -> dict[int, set[int]]:
        """Near duplicates (every worker, all files, one index): file index → rows."""
        out: dict[int, set[int]] = {}
        if not self.config.dedup.minhash.enabled:
            return out
        index = NearDuplicateIndex(self.config.dedup.minhash)
        for f in self.files:
            skipped: set[int] = set()
            for drops in dropped:
                skipped.update(drops.rows_of(f.index).tolist())
            for table in iter_batches(self.layout.map_table(f), ["pos", "id", "stage", "minhash"]):
                for pos, doc_id, stage, mh in zip(
                    table["pos"], table["id"], table["stage"], table["minhash"], strict=True
                ):
                    if stage in ("read", "langid") or mh is None or pos in skipped:
                        continue
                    if index.seen_or_add(f"{f.key}:{pos}:{doc_id}", signature_from_bytes(mh)):
                        out.setdefault(f.index, set()).add(pos)
        return out

    def run(self, keep: Container[int] | None = None) -> dict[int, FileDecisions]:
        """Decide every level (waiting for the other workers' partitions between levels) and
        return the decisions of the files whose index is in ``keep`` (all when None)."""
        cfg = self.config.dedup
        levels: list[tuple[str, str, str, bool]] = [
            ("url", "url_hash", "url_dedup", cfg.urls),
            ("doc", "text_hash", "doc_dedup", cfg.documents),
        ]
        dropped: list[_Drops] = []
        for level, column, _, enabled in levels:
            if enabled:
                self._level(level, column, dropped)
                self.wait(self._all(level), f"dedup partitions ({level})")
                dropped.append(_Drops(self._all(level)))
            else:
                dropped.append(_Drops([]))
        near = self._near(dropped)
        paragraphs = None
        if cfg.paragraphs.enabled:
            self._paragraphs(dropped, near)
            self.wait(self._all("para"), "dedup partitions (para)")
            paragraphs = _Drops(self._all("para"), pairs=True)
        decisions: dict[int, FileDecisions] = {}
        for f in self.files:
            if keep is not None and f.index not in keep:
                continue
            decisions[f.index] = self._decisions(f, dropped, near.get(f.index, set()), paragraphs)
        return decisions

    def _decisions(
        self,
        f: InputFile,
        dropped: list[_Drops],
        near: set[int],
        paragraphs: _Drops | None,
    ) -> FileDecisions:
        out = FileDecisions()
        drops: dict[int, tuple[str, str]] = {}
        for drops_of, stage in zip(dropped, ("url_dedup", "doc_dedup"), strict=True):
            reason = REASON_URL_DUPLICATE if stage == "url_dedup" else REASON_DUPLICATE
            for pos in drops_of.rows_of(f.index).tolist():
                drops.setdefault(pos, (stage, reason))
        for pos in near:
            drops.setdefault(pos, ("near_dedup", REASON_NEAR_DUPLICATE))
        removed: dict[int, list[int]] = {}
        if paragraphs is not None:
            for pos, i in paragraphs.rows_of(f.index).tolist():
                removed.setdefault(pos, []).append(i)
        for table in iter_batches(self.layout.map_table(f), ["pos", "para_hashes"]):
            out.add_rows(len(table["pos"]))
            self.timer.docs["dedup"] += len(table["pos"])
            for pos, paras in zip(table["pos"], table["para_hashes"], strict=True):
                drop = drops.get(pos)
                if drop is not None:
                    out.set_drop(pos, *drop)
                    continue
                gone = removed.get(pos)
                if not gone:
                    continue
                if len(gone) == len(paras):
                    out.set_drop(pos, "paragraph_dedup", REASON_DEDUP_ALL_PARAGRAPHS)
                else:
                    out.set_removed(pos, gone)
        return out


def dedup_pass(
    layout: Layout,
    files: Sequence[InputFile],
    config: PipelineConfig,
    timer: StageTimer,
    keep: Container[int] | None = None,
    *,
    worker_index: int = 0,
    num_workers: int = 1,
    wait: Callable[[list[Path], str], None] | None = None,
) -> dict[int, FileDecisions]:
    """This worker's share of the partitioned dedup pass (see the module doc); returns the
    decisions of the files whose index is in ``keep`` (all files when None)."""
    return DedupPass(
        layout, files, config, timer, worker_index=worker_index, num_workers=num_workers, wait=wait
    ).run(keep)


def remove_paragraphs(text: str, removed: Sequence[int]) -> str:
    """Drop the given non-blank lines (numbered among non-blank lines); others stay as they are."""
    drop = set(removed)
    kept: list[str] = []
    index = 0
    for line in text.split("\n"):
        if line.strip():
            if index in drop:
                index += 1
                continue
            index += 1
        kept.append(line)
    return "\n".join(kept)
