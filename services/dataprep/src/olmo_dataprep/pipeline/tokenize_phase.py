"""Phase 3, tokenize (per file): remove the duplicate paragraphs, decontaminate, tokenize the
kept documents in batches → staging shards in ``work/tok/`` and the per-document decisions
(``work/tok/fNNNNNN.parquet``, one row per input item)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from olmo.data.shards import ShardWriter

from ..config import PipelineConfig
from ..dedup import Decontaminator
from ..tokenizer import TextTokenizer
from .dedup_phase import FileDecisions, remove_paragraphs
from .plan import InputFile, Layout
from .progress import StageTimer
from .tables import DECISION_SCHEMA, KEPT, write_json, write_table


def tokenize_file(
    layout: Layout,
    f: InputFile,
    config: PipelineConfig,
    decisions: FileDecisions,
    tokenizer: TextTokenizer,
    decon: Decontaminator | None,
    timer: StageTimer,
    progress: tqdm,
) -> None:
    """One file's decisions and staging shards (see the module doc)."""
    table = pq.read_table(
        layout.map_table(f), columns=["pos", "id", "loc", "stage", "reason", "text"]
    )
    data = table.to_pydict()
    rows: dict[str, list[Any]] = {name: [] for name in DECISION_SCHEMA.names}
    batch: list[tuple[int, str, str, str]] = []  # (row, id, loc, text)
    tokens_col: list[int] = []
    skip = set(config.source(f.source).skip)

    def add_row(doc_id: str, loc: str, stage: str, reason: str | None) -> int:
        rows["id"].append(doc_id)
        rows["source"].append(f.source)
        rows["file"].append(str(f.path))
        rows["loc"].append(loc)
        rows["stage"].append(stage)
        rows["reason"].append(reason)
        tokens_col.append(0)
        return len(tokens_col) - 1

    writer = ShardWriter(
        layout.tok_dir(),
        dtype=tokenizer.dtype,
        eos_token_id=tokenizer.eos_token_id,
        max_tokens_per_shard=config.shards.max_tokens_per_shard,
        prefix=f.key,
    )

    def flush() -> None:
        if not batch:
            return
        with timer.stage("tokenize", docs=len(batch)):
            encoded = tokenizer.encode_batch([text for *_, text in batch])
            for (row, doc_id, loc, _), ids in zip(batch, encoded, strict=True):
                writer.add_document(ids, doc_id=doc_id, source=f.source, loc=loc)
                tokens_col[row] = len(ids) + 1
        progress.update(sum(len(ids) + 1 for ids in encoded))
        progress.set_postfix_str(f"{f.source}: {f.path.name}", refresh=False)
        batch.clear()

    with writer:
        for pos, doc_id, loc, stage, reason, text in zip(
            *(data[c] for c in ("pos", "id", "loc", "stage", "reason", "text")), strict=True
        ):
            if stage is not None:
                add_row(doc_id, loc, stage, reason)
                continue
            if pos in decisions.drops:
                add_row(doc_id, loc, *decisions.drops[pos])
                continue
            if pos in decisions.removed:
                text = remove_paragraphs(text, decisions.removed[pos])
            if decon is not None and "decontamination" not in skip:
                with timer.stage("decontamination"):
                    hit = decon.check(text)
                if hit is not None:
                    add_row(doc_id, loc, "decontamination", hit)
                    continue
            batch.append((add_row(doc_id, loc, KEPT, None), doc_id, loc, text))
            if len(batch) >= config.tokenizer.batch_size:
                flush()
        flush()
    rows["tokens"] = tokens_col
    rows["copies"] = [1 if stage == KEPT else 0 for stage in rows["stage"]]
    write_table(layout.tok_table(f), pa.table(rows, schema=DECISION_SCHEMA))
    write_json(layout.tok_done(f), {"shards": [s.to_dict() for s in writer.shards]})
