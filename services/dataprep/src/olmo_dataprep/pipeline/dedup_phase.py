"""Phase 2, global dedup decisions (every worker, same result): one pass over the *keys* of all
files in global order decides URL, document, near-duplicate and paragraph dedup, the first
occurrence winning at every level. Only hashes are read, so this pass is cheap next to the map
phase; every worker computes it rather than waiting for a separate reduce job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from ..config import PipelineConfig
from ..dedup import REASON_DEDUP_ALL_PARAGRAPHS, BloomFilter
from ..minhash import REASON_NEAR_DUPLICATE, NearDuplicateIndex, signature_from_bytes
from .plan import InputFile, Layout
from .progress import StageTimer

REASON_URL_DUPLICATE = "url_duplicate"
REASON_DUPLICATE = "duplicate"


@dataclass
class FileDecisions:
    """Dedup outcome for one file: ``drops[pos] = (stage, reason)``; ``removed[pos]`` the
    indices (among non-blank lines) of the duplicate paragraphs to remove."""

    drops: dict[int, tuple[str, str]] = field(default_factory=dict)
    removed: dict[int, list[int]] = field(default_factory=dict)


def dedup_pass(
    layout: Layout, files: Sequence[InputFile], config: PipelineConfig, timer: StageTimer
) -> dict[int, FileDecisions]:
    """First occurrence in the global order wins, at every dedup level (see the module doc)."""
    urls: set[bytes] = set()
    texts: set[bytes] = set()
    near = NearDuplicateIndex(config.dedup.minhash) if config.dedup.minhash.enabled else None
    para_cfg = config.dedup.paragraphs
    bloom = (
        BloomFilter(para_cfg.capacity, para_cfg.false_positive_rate) if para_cfg.enabled else None
    )
    columns = ["pos", "id", "stage", "url_hash", "text_hash", "minhash", "para_hashes"]
    decisions: dict[int, FileDecisions] = {}
    for f in files:
        table = pq.read_table(layout.map_table(f), columns=columns).to_pydict()
        timer.docs["dedup"] += len(table["pos"])
        out = FileDecisions()
        for pos, doc_id, stage, uh, th, mh, paras in zip(*(table[c] for c in columns), strict=True):
            if stage in ("read", "langid"):
                continue
            if uh is not None:
                if uh in urls:
                    out.drops[pos] = ("url_dedup", REASON_URL_DUPLICATE)
                    continue
                urls.add(uh)
            if th is not None:
                if th in texts:
                    out.drops[pos] = ("doc_dedup", REASON_DUPLICATE)
                    continue
                texts.add(th)
            key = f"{f.key}:{pos}:{doc_id}"
            if (
                near is not None
                and mh is not None
                and near.seen_or_add(key, signature_from_bytes(mh))
            ):
                out.drops[pos] = ("near_dedup", REASON_NEAR_DUPLICATE)
                continue
            if stage is not None or bloom is None or paras is None:
                continue
            removed = [i for i, h in enumerate(paras) if bloom.add_if_absent(h)]
            if removed and len(removed) == len(paras):
                out.drops[pos] = ("paragraph_dedup", REASON_DEDUP_ALL_PARAGRAPHS)
            elif removed:
                out.removed[pos] = removed
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
