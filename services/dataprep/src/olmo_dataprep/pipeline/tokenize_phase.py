"""Phase 3, tokenize (per file): remove the duplicate paragraphs, decontaminate, tokenize the
kept documents in batches → staging shards in ``work/tok/`` and the per-document decisions
(``work/tok/fNNNNNN.parquet``, one row per input item).

The map table is read one row group at a time; each group's kept texts are tokenized with the
tokenizer's batch API (``TextTokenizer.encode_batch``, ``tokenizer.batch_size`` texts a call),
appended to the staging shards, and the group's decisions written as one row group of the
decision table, so at most one group of rows is held (the output does not depend on the
grouping: each text is encoded on its own)."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from olmo.data.shards import ShardWriter

from ..config import PipelineConfig
from ..dedup import Decontaminator
from ..tokenizer import TextTokenizer
from .dedup_phase import FileDecisions, remove_paragraphs
from .plan import InputFile, Layout
from .progress import StageTimer
from .tables import DECISION_SCHEMA, KEPT, TableWriter, iter_batches, write_json

_MAP_COLUMNS = ("pos", "id", "loc", "stage", "reason", "text")


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
    skip = set(config.source(f.source).skip)
    batch_size = config.tokenizer.batch_size
    writer = ShardWriter(
        layout.tok_dir(),
        dtype=tokenizer.dtype,
        eos_token_id=tokenizer.eos_token_id,
        max_tokens_per_shard=config.shards.max_tokens_per_shard,
        prefix=f.key,
    )
    with writer, TableWriter(layout.tok_table(f), DECISION_SCHEMA) as out:
        for data in iter_batches(layout.map_table(f), _MAP_COLUMNS):
            rows: dict[str, list[Any]] = {name: [] for name in DECISION_SCHEMA.names}
            kept: list[int] = []  # rows (in ``rows``) of the kept documents
            texts: list[str] = []
            for pos, doc_id, loc, stage, reason, text in zip(
                *(data[c] for c in _MAP_COLUMNS), strict=True
            ):
                if stage is None:
                    drop = decisions.drop(pos)
                    if drop is not None:
                        stage, reason = drop
                    else:
                        removed = decisions.removed(pos)
                        if removed:
                            text = remove_paragraphs(text, removed)
                        hit = None
                        if decon is not None and "decontamination" not in skip:
                            with timer.stage("decontamination"):
                                hit = decon.check(text)
                        if hit is not None:
                            stage, reason = "decontamination", hit
                        else:
                            stage = KEPT
                            kept.append(len(rows["id"]))
                            texts.append(text)
                rows["id"].append(doc_id)
                rows["loc"].append(loc)
                rows["stage"].append(stage)
                rows["reason"].append(reason)
                rows["tokens"].append(0)
                rows["copies"].append(1 if stage == KEPT else 0)
            count = len(rows["id"])
            rows["source"] = [f.source] * count
            rows["file"] = [str(f.path)] * count
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                with timer.stage("tokenize", docs=len(chunk)):
                    encoded = tokenizer.encode_batch(chunk)
                    for row, ids in zip(kept[start : start + batch_size], encoded, strict=True):
                        writer.add_document(
                            ids, doc_id=rows["id"][row], source=f.source, loc=rows["loc"][row]
                        )
                        rows["tokens"][row] = len(ids) + 1
                progress.update(sum(len(ids) + 1 for ids in encoded))
                progress.set_postfix_str(f"{f.source}: {f.path.name}", refresh=False)
            out.write(rows)
    write_json(layout.tok_done(f), {"shards": [s.to_dict() for s in writer.shards]})
