"""Phase 2, global dedup decisions (every worker, same result): one pass over the *keys* of all
files in global order decides URL, document, near-duplicate and paragraph dedup, the first
occurrence winning at every level. Only hashes are read, one row group at a time, so this pass is
cheap next to the map phase; every worker computes it rather than waiting for a separate reduce
job. A file's decisions are kept as small integers (``FileDecisions``: one byte per row, and
two integers per removed paragraph), never texts, and only for the files the caller needs.

The URL and document hashes seen so far (the state that spans files) are kept in a
``DigestSet``, about 16 bytes a hash where a Python ``set`` of ``bytes`` takes about 90; the
paragraph hashes go to a Bloom filter of fixed size (``dedup.paragraphs``)."""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Container, Sequence

import numpy as np

from ..config import PipelineConfig
from ..dedup import REASON_DEDUP_ALL_PARAGRAPHS, BloomFilter
from ..minhash import REASON_NEAR_DUPLICATE, NearDuplicateIndex, signature_from_bytes
from .plan import InputFile, Layout
from .progress import StageTimer
from .tables import iter_batches

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


def dedup_pass(
    layout: Layout,
    files: Sequence[InputFile],
    config: PipelineConfig,
    timer: StageTimer,
    keep: Container[int] | None = None,
) -> dict[int, FileDecisions]:
    """First occurrence in the global order wins, at every dedup level (see the module doc).
    Every file is read (the state of the pass spans them all), but only the decisions of the
    files whose index is in ``keep`` (all files when None) are returned."""
    urls = DigestSet()
    texts = DigestSet()
    near = NearDuplicateIndex(config.dedup.minhash) if config.dedup.minhash.enabled else None
    para_cfg = config.dedup.paragraphs
    bloom = (
        BloomFilter(para_cfg.capacity, para_cfg.false_positive_rate) if para_cfg.enabled else None
    )
    columns = ["pos", "id", "stage", "url_hash", "text_hash", "minhash", "para_hashes"]
    decisions: dict[int, FileDecisions] = {}
    for f in files:
        out = FileDecisions()
        for table in iter_batches(layout.map_table(f), columns):
            out.add_rows(len(table["pos"]))
            timer.docs["dedup"] += len(table["pos"])
            url_seen = urls.in_runs(table["url_hash"])
            text_seen = texts.in_runs(table["text_hash"])
            for pos, doc_id, stage, uh, th, mh, paras, old_url, old_text in zip(
                *(table[c] for c in columns), url_seen, text_seen, strict=True
            ):
                if stage in ("read", "langid"):
                    continue
                if uh is not None and urls.check_and_add(uh, old_url):
                    out.set_drop(pos, "url_dedup", REASON_URL_DUPLICATE)
                    continue
                if th is not None and texts.check_and_add(th, old_text):
                    out.set_drop(pos, "doc_dedup", REASON_DUPLICATE)
                    continue
                key = f"{f.key}:{pos}:{doc_id}"
                if (
                    near is not None
                    and mh is not None
                    and near.seen_or_add(key, signature_from_bytes(mh))
                ):
                    out.set_drop(pos, "near_dedup", REASON_NEAR_DUPLICATE)
                    continue
                if stage is not None or bloom is None or paras is None:
                    continue
                removed = [i for i, h in enumerate(paras) if bloom.add_if_absent(h)]
                if removed and len(removed) == len(paras):
                    out.set_drop(pos, "paragraph_dedup", REASON_DEDUP_ALL_PARAGRAPHS)
                elif removed:
                    out.set_removed(pos, removed)
            urls.settle()
            texts.settle()
        if keep is None or f.index in keep:
            decisions[f.index] = out
    return decisions


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
