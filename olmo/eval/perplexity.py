"""Perplexity and bits per byte by Paloma's protocol.

Every document is scored on its own, never together with its neighbours: the sequence is the
document prefix (see ``olmo.eval.engine``: a BOS, or EOS for OLMo's tokenizer, as in training
where the previous document's EOS precedes it) followed by the document's tokens, and every
document token is predicted exactly once. Long documents are cut into plain non-overlapping
windows of ``max_sequence_length`` input tokens: window k feeds tokens ``[kL, (k+1)L)`` of
prefix+document and scores the next token at each position, so the first token a window predicts
sees only that window's first token as context (no sliding overlap), and no token is lost at a
window boundary.

Per source and aggregated over all sources (token-weighted, i.e. pooled sums):

- perplexity = exp(−Σ log p / tokens),
- bits per byte = −Σ log p / bytes × log2(e), bytes = UTF-8 bytes of the document text.

Softmax is over all ``embedding_size`` logits, as in training. Inputs per source are token-shard
folders / files (DESIGN contract 1, read with ``olmo.data.shards``; documents from the
``.csv.gz`` index, the trailing EOS not scored, the text obtained by decoding) or JSONL files
(``.jsonl``, ``.jsonl.gz``, ``.json``, ``.json.gz``) of ``{"text": ...}`` records, tokenized here.
The source name is the key of the mapping; a record's own ``source`` field is not used.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from olmo.data.shards import MANIFEST_NAME, dtype_for_vocab, open_shards
from olmo.eval.engine import (
    EngineStats,
    PromptTokenizer,
    RowTargets,
    check_token_ids,
    model_config,
    score_rows,
)
from olmo.evaldata import iter_text_records

__all__ = [
    "Document",
    "evaluate_perplexity",
    "iter_documents",
    "perplexity_metrics",
    "score_documents",
    "windows",
]

_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
_ROWS_PER_CHUNK = 64  # batches scored at a time (bounds memory for large sets)


@dataclass(frozen=True)
class Document:
    """One document to score: its token ids (no prefix, no EOS) and its text's UTF-8 size."""

    tokens: tuple[int, ...]
    num_bytes: int


def windows(num_tokens: int, max_length: int) -> list[tuple[int, int]]:
    """Input ranges ``[begin, end)`` over a sequence of ``num_tokens`` tokens (prefix included):
    non-overlapping chunks of at most ``max_length``; the last token is never an input."""
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    return [
        (begin, min(begin + max_length, num_tokens - 1))
        for begin in range(0, num_tokens - 1, max_length)
    ]


def _jsonl_documents(path: Path, tokenizer: PromptTokenizer) -> Iterator[Document]:
    for text in iter_text_records(path):
        yield Document(tokenizer.encode(text), len(text.encode("utf-8")))


def _shard_documents(path: Path, tokenizer: PromptTokenizer) -> Iterator[Document]:
    if (path.is_dir() and (path / MANIFEST_NAME).is_file()) or path.name == MANIFEST_NAME:
        shards = open_shards(path if path.is_dir() else path.parent)
    else:  # e.g. `dolma tokens` output: the dtype follows from the tokenizer's vocabulary
        shards = open_shards(path, dtype=dtype_for_vocab(tokenizer.tokenizer.get_vocab_size()))
    eos = shards.eos_token_id if shards.eos_token_id is not None else tokenizer.eos_token_id
    for shard in shards:
        array = shard.array
        if shard.has_index:
            spans = [(int(s), int(e)) for s, e in zip(shard.starts, shard.ends, strict=True)]
        else:  # no index: documents end at EOS
            ends = np.flatnonzero(array == eos) + 1
            starts = np.concatenate([[0], ends[:-1]]) if len(ends) else np.zeros(0, np.int64)
            spans = [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]
        for start, end in spans:
            tokens = array[start:end]
            if len(tokens) and tokens[-1] == eos:
                tokens = tokens[:-1]
            ids = tuple(int(t) for t in tokens)
            yield Document(ids, len(tokenizer.decode(ids).encode("utf-8")))


def iter_documents(
    paths: Sequence[str | Path], tokenizer: PromptTokenizer, limit: int | None = None
) -> Iterator[Document]:
    """The non-empty documents of one source's inputs, in order (at most ``limit``)."""
    count = 0
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"perplexity input not found: {path}")
        if path.is_file() and path.name.endswith(_JSONL_SUFFIXES):
            documents = _jsonl_documents(path, tokenizer)
        else:
            documents = _shard_documents(path, tokenizer)
        for document in documents:
            if limit is not None and count >= limit:
                return
            if document.tokens:
                count += 1
                yield document


def score_documents(
    model: Any,
    tokenizer: PromptTokenizer,
    documents: Iterator[Document] | Sequence[Document],
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    stats: EngineStats | None = None,
) -> dict[str, float | int]:
    """Sums over the documents: documents, tokens, bytes, nll (= −Σ log p)."""
    config = model_config(model)
    max_length = config.max_sequence_length
    prefix = tokenizer.prefix
    totals = {"documents": 0, "tokens": 0, "bytes": 0, "nll": 0.0}
    rows: list[tuple[int, ...]] = []
    targets: list[RowTargets] = []

    def flush() -> None:
        if not rows:
            return
        check_token_ids(rows, config.embedding_size)
        sums = score_rows(
            model, rows, targets, len(rows), batch_size=batch_size, device=device, stats=stats
        )
        totals["nll"] -= float(sums.sum())
        rows.clear()
        targets.clear()

    for document in documents:
        sequence = prefix + tuple(document.tokens)
        totals["documents"] += 1
        totals["tokens"] += len(document.tokens)
        totals["bytes"] += document.num_bytes
        for begin, end in windows(len(sequence), max_length):
            # Position j of this window predicts sequence[begin + j + 1]; prefix tokens are not
            # predicted (they only matter for a prefix longer than one token).
            first = max(0, len(prefix) - 1 - begin)
            positions = np.arange(first, end - begin)
            segment = np.full(len(positions), len(rows))
            rows.append(sequence[begin:end])
            targets.append(
                RowTargets(positions, np.asarray(sequence[begin + 1 + first : end + 1]), segment)
            )
        if len(rows) >= _ROWS_PER_CHUNK * batch_size:
            flush()
    flush()
    return totals


def perplexity_metrics(totals: Mapping[str, Any]) -> dict[str, float | int]:
    """documents, tokens, bytes, perplexity, bits_per_byte (and the nll they come from)."""
    tokens, num_bytes, nll = totals["tokens"], totals["bytes"], totals["nll"]
    return {
        "documents": int(totals["documents"]),
        "tokens": int(tokens),
        "bytes": int(num_bytes),
        "nll": float(nll),
        "perplexity": math.exp(nll / tokens) if tokens else float("nan"),
        "bits_per_byte": nll / num_bytes / math.log(2) if num_bytes else float("nan"),
    }


def evaluate_perplexity(
    model: Any,
    tokenizer: PromptTokenizer,
    sources: Mapping[str, Sequence[str | Path]],
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    stats: EngineStats | None = None,
) -> dict[str, Any]:
    """``{"sources": {name: metrics}, "aggregate": metrics}`` over the mapping source → paths."""
    if not sources:
        raise ValueError("perplexity: no sources given")
    per_source: dict[str, dict[str, Any]] = {}
    pooled = {"documents": 0, "tokens": 0, "bytes": 0, "nll": 0.0}
    for name, paths in sources.items():
        if isinstance(paths, str | Path):
            paths = [paths]
        totals = score_documents(
            model,
            tokenizer,
            iter_documents(paths, tokenizer, limit),
            batch_size=batch_size,
            device=device,
            stats=stats,
        )
        if not totals["tokens"]:
            raise ValueError(f"perplexity source {name!r} has no non-empty documents")
        per_source[name] = perplexity_metrics(totals)
        for key in pooled:
            pooled[key] += totals[key]
    return {"sources": per_source, "aggregate": perplexity_metrics(pooled)}
