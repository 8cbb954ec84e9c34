"""Phase 4, mix (per file): per-source rates (a weight, or a token budget over the source's kept
tokens from every file) and copies per document from a seeded hash → the final shards
``part-fNNNNNN-NNNNN.npy`` and ``accounting/fNNNNNN.parquet``.

A file is mixed in rounds (round ``k`` writes copy ``k`` of every document that has one, so
copies spread out), each a pass over the decision table, one row group at a time, and over the
staging shards, read sequentially with plain reads (not memory-mapped: mapped pages would count
in the worker's memory). A document's span in the staging shards follows from the token counts in
the decision table, so neither a staging index nor a list of spans is held; what is kept across
rounds is the number of copies per row (eight bytes a row)."""

from __future__ import annotations

import hashlib
import logging
import math
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from olmo.data.shards import ShardInfo, ShardWriter

from ..config import PipelineConfig
from ..tokenizer import TextTokenizer
from .plan import InputFile, Layout, PipelineError
from .progress import StageTimer
from .tables import DECISION_SCHEMA, KEPT, TableWriter, iter_batches, read_json

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
    kept_tokens: dict[str, int] = dict.fromkeys((s.name for s in config.sources), 0)
    for f in files:
        for table in iter_batches(layout.tok_table(f), ["stage", "tokens"]):
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


class _StagedTokens:
    """The staging shards of one file read front to back: ``next(n)`` is the next document of
    ``n`` tokens (EOS included), returned without its EOS."""

    def __init__(self, folder: Path, shards: Sequence[ShardInfo], dtype: np.dtype, eos: int):
        self._where = folder
        self._shards = list(shards)
        self._dtype = np.dtype(dtype)
        self._eos = eos
        self._index = -1
        self._left = 0  # tokens not yet read in the current shard
        self._file: IO[bytes] | None = None

    def _fail(self, why: str) -> PipelineError:
        return PipelineError(f"{self._where}: staged shards do not match the decisions ({why})")

    def next(self, n: int) -> np.ndarray:
        while self._left == 0:
            self._open_next()
        if n < 1 or n > self._left:
            raise self._fail(f"a document of {n} tokens, {self._left} left in the shard")
        assert self._file is not None
        data = self._file.read(n * self._dtype.itemsize)
        if len(data) != n * self._dtype.itemsize:
            raise self._fail("a shard is shorter than its record")
        self._left -= n
        tokens = np.frombuffer(data, dtype=self._dtype)
        if tokens[-1] != self._eos:
            raise self._fail("a document does not end with EOS")
        return tokens[:-1]

    def _open_next(self) -> None:
        self.close()
        self._index += 1
        if self._index >= len(self._shards):
            raise self._fail("more documents than staged")
        info = self._shards[self._index]
        self._file = open(self._where / info.path, "rb")  # noqa: SIM115 (closed by close())
        self._left = info.num_tokens

    def finish(self) -> None:
        """Check that every staged token was read."""
        self.close()
        if self._left or any(s.num_tokens for s in self._shards[self._index + 1 :]):
            raise self._fail("fewer documents than staged")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _kept_documents(
    layout: Layout, f: InputFile, staged: Sequence[ShardInfo], tokenizer: TextTokenizer
) -> Iterator[tuple[dict[str, list], Iterator[np.ndarray]]]:
    """The decision table one row group at a time, each with the tokens of its kept documents
    (an iterator to consume whole, in row order, before the next group)."""
    reader = _StagedTokens(layout.tok_dir(), staged, tokenizer.dtype, tokenizer.eos_token_id)
    try:
        for table in iter_batches(layout.tok_table(f), DECISION_SCHEMA.names):
            lengths = [
                n for stage, n in zip(table["stage"], table["tokens"], strict=True) if stage == KEPT
            ]
            yield table, (reader.next(n) for n in lengths)
        reader.finish()
    finally:
        reader.close()


def mix_file(
    layout: Layout,
    f: InputFile,
    config: PipelineConfig,
    rate: float,
    tokenizer: TextTokenizer,
    timer: StageTimer,
) -> list[ShardInfo]:
    """One file's copies of its kept documents → its final shards and accounting table."""
    staged = [ShardInfo.from_dict(s) for s in read_json(layout.tok_done(f))["shards"]]
    copies = array("q")  # per row of the file
    writer = ShardWriter(
        layout.out,
        dtype=tokenizer.dtype,
        eos_token_id=tokenizer.eos_token_id,
        max_tokens_per_shard=config.shards.max_tokens_per_shard,
        prefix=f"part-{f.key}",
    )
    with writer:
        # Round 0: decide the copies, write the accounting and every first copy.
        with TableWriter(layout.accounting_table(f), DECISION_SCHEMA) as accounting:
            for table, spans in _kept_documents(layout, f, staged, tokenizer):
                first = len(copies)
                kept_rows = [i for i, stage in enumerate(table["stage"]) if stage == KEPT]
                with timer.stage("mixing", docs=len(kept_rows)):
                    for i in kept_rows:
                        # The document's id and place in its file, not the file's full path:
                        # the same corpus gives the same sample wherever it lives.
                        key = f"{table['id'][i]}\0{f.path.name}\0{first + i}"
                        n = copies_for(rate, config.seed, f.source, key)
                        table["copies"][i] = n
                        if n == 0:
                            table["stage"][i], table["reason"][i] = "mixing", REASON_DOWNSAMPLED
                    for i, span in zip(kept_rows, spans, strict=True):
                        if table["copies"][i] > 0:
                            writer.add_document(
                                span, doc_id=table["id"][i], source=f.source, loc=table["loc"][i]
                            )
                copies.extend(table["copies"])
                accounting.write(table)
        # Later rounds: copy k of every document that has more than k.
        rounds = max(copies, default=0)
        for k in range(1, rounds):
            row = 0
            for table, spans in _kept_documents(layout, f, staged, tokenizer):
                with timer.stage("mixing", docs=0):
                    for i, stage in enumerate(table["stage"]):
                        if stage != KEPT:
                            continue
                        span = next(spans)
                        if copies[row + i] > k:
                            writer.add_document(
                                span, doc_id=table["id"][i], source=f.source, loc=table["loc"][i]
                            )
                row += len(table["stage"])
    return writer.shards
