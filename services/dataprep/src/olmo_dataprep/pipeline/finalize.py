"""Finalizing a dataset (worker 0, after every file is mixed): ``summary.json`` (per-stage
counts, per-source tokens), then ``manifest.json``, written last: its presence means the
dataset is complete. Also the reader of a finished dataset's accounting.

**Accounting.** One row per input item in ``accounting/`` (id, source, file, loc, stage,
reason, tokens, copies): ``stage == "kept"`` rows are in the output ``copies`` times (tokens
per copy, EOS included); every other row names the stage and reason that dropped it, so
documents in = kept + dropped, checked here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from olmo.data.shards import ShardInfo, write_manifest

from ..config import PipelineConfig, config_hash
from ..tokenizer import TextTokenizer
from .plan import InputFile, Layout, PipelineError
from .tables import KEPT, STAGES, iter_batches, read_json, write_json


def summarize(
    layout: Layout, config: PipelineConfig, files: Sequence[InputFile], rates: dict[str, float]
) -> dict[str, Any]:
    """The run's accounting, per stage and reason and per source (``summary.json``)."""
    per_source: dict[str, dict[str, Any]] = {
        s.name: {
            "files": 0,
            "documents_in": 0,
            "documents_kept": 0,
            "copies_written": 0,
            "tokens": 0,
            "rate": rates[s.name],
            "weight": s.weight,
            "target_tokens": s.target_tokens,
        }
        for s in config.sources
    }
    dropped: dict[str, Counter[str]] = defaultdict(Counter)
    for f in files:
        src = per_source[f.source]
        src["files"] += 1
        columns = ["stage", "reason", "tokens", "copies"]
        for table in iter_batches(layout.accounting_table(f), columns):
            for stage, reason, tokens, copies in zip(*(table[c] for c in columns), strict=True):
                src["documents_in"] += 1
                if stage == KEPT:
                    src["documents_kept"] += 1
                    src["copies_written"] += copies
                    src["tokens"] += tokens * copies
                else:
                    dropped[stage][reason] += 1
    docs_in = sum(s["documents_in"] for s in per_source.values())
    kept = sum(s["documents_kept"] for s in per_source.values())
    ordered = {stage: dict(sorted(dropped[stage].items())) for stage in STAGES if stage in dropped}
    total_dropped = sum(sum(c.values()) for c in dropped.values())
    if docs_in != kept + total_dropped:  # the accounting invariant; cannot fail by construction
        raise PipelineError(f"accounting mismatch: {docs_in} in != {kept} kept + {total_dropped}")
    return {
        "documents_in": docs_in,
        "documents_kept": kept,
        "documents_dropped": total_dropped,
        "dropped": ordered,
        "sources": per_source,
        "copies_written": sum(s["copies_written"] for s in per_source.values()),
        "tokens": sum(s["tokens"] for s in per_source.values()),
    }


def finalize(
    layout: Layout,
    config: PipelineConfig,
    files: Sequence[InputFile],
    rates: dict[str, float],
    tokenizer: TextTokenizer,
    decontamination: dict[str, Any],
) -> dict[str, Any]:
    """Write ``summary.json``, then ``manifest.json``; return the summary. ``decontamination``
    is ``decontam.load_decontaminator``'s record of the set used; the summary keeps it with the
    number of documents it removed."""
    shards: list[ShardInfo] = []
    for f in files:
        shards.extend(ShardInfo.from_dict(s) for s in read_json(layout.final_done(f))["shards"])
    summary = summarize(layout, config, files, rates)
    removed = sum(summary["dropped"].get("decontamination", {}).values())
    summary["decontamination"] = {**decontamination, "documents_removed": removed}
    write_json(layout.summary, summary)
    identity = dict(tokenizer.identity())
    identity["path"] = layout.tokenizer.name
    sources = {
        name: {k: v for k, v in info.items() if k != "files"} | {"files": info["files"]}
        for name, info in summary["sources"].items()
    }
    write_manifest(
        layout.out,
        shards=shards,
        dtype=tokenizer.dtype,
        eos_token_id=tokenizer.eos_token_id,
        tokenizer=identity,
        sources=sources,
        pipeline_config_hash=config_hash(config),
        stage_counts={
            "documents_in": summary["documents_in"],
            "documents_kept": summary["documents_kept"],
            "dropped": summary["dropped"],
        },
    )
    return summary


def load_accounting(out: str | Path) -> pa.Table:
    """The per-document decisions of a finished dataset, all files in order."""
    files = sorted((Path(out) / "accounting").glob("f*.parquet"))
    if not files:
        raise FileNotFoundError(f"{out}: no accounting tables (is this a dataprep output?)")
    return pa.concat_tables(pq.read_table(p) for p in files)
