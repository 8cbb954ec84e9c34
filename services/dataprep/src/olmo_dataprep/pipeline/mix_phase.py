"""Phase 4, mix (per file): per-source rates (a weight, or a token budget over the source's kept
tokens from every file) and copies per document from a seeded hash → the final shards
``part-fNNNNNN-NNNNN.npy`` and ``accounting/fNNNNNN.parquet``."""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from olmo.data.shards import ShardInfo, ShardWriter, TokenShard

from ..config import PipelineConfig
from ..tokenizer import TextTokenizer
from .plan import InputFile, Layout, PipelineError
from .progress import StageTimer
from .tables import DECISION_SCHEMA, KEPT, read_json, write_table

log = logging.getLogger("olmo_dataprep")

REASON_DOWNSAMPLED = "downsampled"


def copies_for(rate: float, seed: int, source: str, doc_key: str) -> int:
    """How many copies of a document go to the output: ``floor(rate)`` plus one more with
    probability ``rate - floor(rate)``, decided by a hash of (seed, source, document)."""
    whole = math.floor(rate)
    frac = rate - whole
    if frac <= 0.0:
        return int(whole)
    digest = hashlib.blake2b(f"{seed}\0{source}\0{doc_key}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    return int(whole) + (1 if u < frac else 0)


def source_rates(
    layout: Layout, config: PipelineConfig, files: Sequence[InputFile]
) -> dict[str, float]:
    """Each source's rate: its weight, or its token budget over its kept tokens (all files)."""
    kept_tokens: Counter[str] = Counter()
    for f in files:
        table = pq.read_table(layout.tok_table(f), columns=["stage", "tokens"]).to_pydict()
        kept_tokens[f.source] += sum(
            t for s, t in zip(table["stage"], table["tokens"], strict=True) if s == KEPT
        )
    rates: dict[str, float] = {}
    for source in config.sources:
        if source.target_tokens is None:
            rates[source.name] = float(source.weight)
        elif kept_tokens[source.name] == 0:
            log.warning("source %r kept no tokens: its target_tokens cannot be met", source.name)
            rates[source.name] = 0.0
        else:
            rates[source.name] = source.target_tokens / kept_tokens[source.name]
    return rates


def mix_file(
    layout: Layout,
    f: InputFile,
    config: PipelineConfig,
    rate: float,
    tokenizer: TextTokenizer,
    timer: StageTimer,
) -> list[ShardInfo]:
    """One file's copies of its kept documents → its final shards and accounting table."""
    table = pq.read_table(layout.tok_table(f)).to_pydict()
    staged = [ShardInfo.from_dict(s) for s in read_json(layout.tok_done(f))["shards"]]
    spans: list[np.ndarray] = []  # the kept documents' tokens (without EOS), in order
    for info in staged:
        shard = TokenShard(layout.tok_dir() / info.path, dtype=tokenizer.dtype)
        tokens = shard.tokens
        spans.extend(
            tokens[start : end - 1] for start, end in zip(shard.starts, shard.ends, strict=True)
        )
    kept_rows = [i for i, stage in enumerate(table["stage"]) if stage == KEPT]
    if len(kept_rows) != len(spans):
        raise PipelineError(f"{layout.tok_done(f)}: staged shards do not match the decisions")
    copies = table["copies"]
    with timer.stage("mixing", docs=len(kept_rows)):
        for row in kept_rows:
            # The document's id and place in its file, not the file's full path: the same
            # corpus gives the same sample wherever it lives.
            key = f"{table['id'][row]}\0{f.path.name}\0{row}"
            n = copies_for(rate, config.seed, f.source, key)
            copies[row] = n
            if n == 0:
                table["stage"][row], table["reason"][row] = "mixing", REASON_DOWNSAMPLED
        writer = ShardWriter(
            layout.out,
            dtype=tokenizer.dtype,
            eos_token_id=tokenizer.eos_token_id,
            max_tokens_per_shard=config.shards.max_tokens_per_shard,
            prefix=f"part-{f.key}",
        )
        with writer:
            rounds = max((copies[row] for row in kept_rows), default=0)
            for k in range(rounds):  # copy k of every document that has one: copies spread out
                for row, span in zip(kept_rows, spans, strict=True):
                    if copies[row] > k:
                        writer.add_document(
                            span, doc_id=table["id"][row], source=f.source, loc=table["loc"][row]
                        )
    table["copies"] = copies
    write_table(layout.accounting_table(f), pa.table(table, schema=DECISION_SCHEMA))
    return writer.shards
