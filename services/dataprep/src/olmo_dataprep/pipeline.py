"""The pipeline runner: raw documents → filtered, deduplicated, mixed token shards, every
document accounted for, split over any number of workers with the same result.

Stages, in the recipe's order (``STAGES``): read → language ID → exact URL dedup → exact
document dedup → near-duplicate (MinHash, optional) → quality (Gopher + C4 lines) → bad words →
PII → exact paragraph dedup (Bloom filter) → decontamination → mixing → tokenization. The
first stage that rejects a document decides its ``(stage, reason)``.

**Order and workers.** Input files are numbered in one global order (sources in pipeline
order, files sorted within a source). Worker ``w`` of ``n`` owns files ``w, w+n, w+2n, ...``
and every per-file output is named after the file, never after the worker, so the dataset does
not depend on ``n``. Dedup keeps the first occurrence in the global order. A run is four
phases; workers meet at a file barrier after each one (so an Indexed Job needs all its pods
running at once: ``parallelism == completions``):

1. **map** (per file, parallel): read, language ID, hashes (URL, normalised text, paragraphs,
   MinHash) and the per-document stages (quality, bad words, PII masking) →
   ``work/map/fNNNNNN.parquet``.
2. **dedup** (every worker, same result): one pass over the *keys* of all files in global
   order decides URL, document, near-duplicate and paragraph dedup. Only hashes are read, so
   this pass is cheap next to the map phase; every worker computes it rather than waiting for
   a separate reduce job. Worker 0 then settles the tokenizer (``tokenizer.json``; when
   training one, on the kept text in global order).
3. **tokenize** (per file): remove duplicate paragraphs, decontaminate, tokenize in batches →
   staging shards ``work/tok/`` and the per-document decisions.
4. **mix** (per file): per-source rates (a weight, or a token budget over the source's kept
   tokens from every file), copies per document from a seeded hash → the final shards
   ``part-fNNNNNN-NNNNN.npy`` and ``accounting/fNNNNNN.parquet``. Worker 0 writes
   ``manifest.json`` (last: its presence means the dataset is complete) and ``summary.json``.

**Resume.** Every per-file output is written atomically and marked done; a re-run (after a
kill, a pod eviction) skips what is done and, the work being deterministic, produces the same
bytes. ``work/config.json`` pins the pipeline's hash: a different pipeline in the same output
folder is refused.

**Accounting.** One row per input item in ``accounting/`` (id, source, file, loc, stage,
reason, tokens, copies): ``stage == "kept"`` rows are in the output ``copies`` times (tokens
per copy, EOS included); every other row names the stage and reason that dropped it. A damaged
gzip file's unreadable tail is one row (its document count is unknowable).

This module must not import torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from olmo.data.shards import (
    MANIFEST_NAME,
    ShardInfo,
    ShardWriter,
    TokenShard,
    read_manifest,
    write_manifest,
)
from olmo.fileio import write_atomic

from . import __version__
from .badwords import REASON_BAD_WORDS, BadWordsFilter
from .config import PipelineConfig, SkippableStage, config_hash
from .content import scan_pii
from .dedup import (
    REASON_DEDUP_ALL_PARAGRAPHS,
    BloomFilter,
    Decontaminator,
    text_hash,
    url_hash,
)
from .langid import REASON_LANGUAGE, LanguageIdentifier
from .minhash import (
    REASON_NEAR_DUPLICATE,
    NearDuplicateIndex,
    signature,
    signature_from_bytes,
    signature_to_bytes,
)
from .quality import check_document
from .readers import Document, ReadError, generated_id, iter_input_files, read_documents
from .tokenizer import (
    OLMO_TOKENIZER,
    TextTokenizer,
    cached_olmo_tokenizer,
    resolve_tokenizer,
    train_bpe,
)

__all__ = [
    "KEPT",
    "STAGES",
    "InputFile",
    "Layout",
    "PipelineError",
    "RunResult",
    "copies_for",
    "load_accounting",
    "plan_inputs",
    "run_pipeline",
    "worker_files",
]

log = logging.getLogger("olmo_dataprep")

# Every stage in order: reading, the switchable stages (config.SkippableStage), then mixing.
STAGES = ("read", *get_args(SkippableStage), "mixing")
KEPT = "kept"
REASON_URL_DUPLICATE = "url_duplicate"
REASON_DUPLICATE = "duplicate"
REASON_DOWNSAMPLED = "downsampled"
TRAINED_TOKENIZER_NAME = "bpe-trained-on-corpus"

_MAP_SCHEMA = pa.schema(
    [
        ("pos", pa.int64()),
        ("id", pa.string()),
        ("loc", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("language", pa.string()),
        ("language_score", pa.float32()),
        ("url_hash", pa.binary()),
        ("text_hash", pa.binary()),
        ("minhash", pa.binary()),
        ("para_hashes", pa.list_(pa.binary())),
        ("text", pa.string()),
    ]
)
_DECISION_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("file", pa.string()),
        ("loc", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("tokens", pa.int64()),
        ("copies", pa.int64()),
    ]
)


class PipelineError(RuntimeError):
    """A run that cannot go on (a different pipeline in the output folder, a barrier timeout)."""


@dataclass(frozen=True)
class InputFile:
    index: int
    source: str
    path: Path

    @property
    def key(self) -> str:
        return f"f{self.index:06d}"


def plan_inputs(config: PipelineConfig) -> list[InputFile]:
    """Every input file in the global order: sources in pipeline order, files sorted."""
    files: list[InputFile] = []
    owner: dict[Path, str] = {}
    for source in config.sources:
        for path in iter_input_files(source.paths):
            resolved = path.resolve()
            if resolved in owner:
                raise PipelineError(
                    f"{path} is an input of both source {owner[resolved]!r} and {source.name!r}"
                )
            owner[resolved] = source.name
            files.append(InputFile(len(files), source.name, path))
    return files


def worker_files(
    files: Sequence[InputFile], worker_index: int, num_workers: int
) -> list[InputFile]:
    """The files of one worker: every ``num_workers``-th file from ``worker_index``."""
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    if not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index must be in [0, {num_workers}), got {worker_index}")
    return list(files[worker_index::num_workers])


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


class Layout:
    """Where everything of one run lives under the output folder."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.work = self.out / "work"
        self.manifest = self.out / MANIFEST_NAME
        self.summary = self.out / "summary.json"
        self.tokenizer = self.out / "tokenizer.json"
        self.accounting = self.out / "accounting"
        self.config = self.work / "config.json"
        self.logs = self.out / "logs"

    def map_table(self, f: InputFile) -> Path:
        return self.work / "map" / f"{f.key}.parquet"

    def tok_dir(self) -> Path:
        return self.work / "tok"

    def tok_done(self, f: InputFile) -> Path:
        return self.work / "tok" / f"{f.key}.json"

    def tok_table(self, f: InputFile) -> Path:
        return self.work / "tok" / f"{f.key}.parquet"

    def final_done(self, f: InputFile) -> Path:
        return self.work / "final" / f"{f.key}.json"

    def accounting_table(self, f: InputFile) -> Path:
        return self.accounting / f"{f.key}.parquet"


@dataclass
class RunResult:
    """What one worker did; ``summary`` is set by the worker that finalized the dataset."""

    out: Path
    worker_index: int
    num_workers: int
    files: int
    skipped_files: int
    finalized: bool
    summary: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.docs: Counter[str] = Counter()

    @contextmanager
    def stage(self, name: str, docs: int = 1) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start
            self.docs[name] += docs


def _table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", write_statistics=False)
    return sink.getvalue().to_pybytes()


def _write_table(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, _table_bytes(table))


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------------
# Phase 1: map


class _Mapper:
    """The per-document stages that need no other document."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.langid = LanguageIdentifier() if config.langid.enabled else None
        self.bad_words = BadWordsFilter(config.bad_words) if config.bad_words.enabled else None

    def map_file(self, f: InputFile, timer: _Timer, progress: tqdm) -> pa.Table:
        cfg = self.config
        rows: dict[str, list[Any]] = {name: [] for name in _MAP_SCHEMA.names}
        items = read_documents(f.path, source=f.source, max_chars=cfg.read.max_chars)
        pos = 0
        while True:
            with timer.stage("read"):
                item = next(items, None)
            if item is None:
                break
            row = self._map_item(f, item, timer)
            row["pos"] = pos
            pos += 1
            for name in _MAP_SCHEMA.names:
                rows[name].append(row.get(name))
            progress.update(1)
        return pa.table(rows, schema=_MAP_SCHEMA)

    def _map_item(self, f: InputFile, item: Document | ReadError, timer: _Timer) -> dict[str, Any]:
        cfg = self.config
        if isinstance(item, ReadError):
            log.warning("%s: %s (%s) %s", item.loc, item.reason, f.source, item.detail)
            doc_id = item.id if item.id is not None else generated_id(f.source, item.loc)
            return {"id": doc_id, "loc": item.loc, "stage": "read", "reason": item.reason}
        doc = item
        skip = set(cfg.source(f.source).skip)
        row: dict[str, Any] = {"id": doc.id, "loc": doc.loc}
        if self.langid is not None and "langid" not in skip:
            with timer.stage("langid"):
                verdict = self.langid.check(doc.text, cfg.langid)
            row["language"], row["language_score"] = verdict.language, verdict.score
            if not verdict.keep:
                row["stage"], row["reason"] = "langid", REASON_LANGUAGE
                return row
        with timer.stage("hashes"):
            if cfg.dedup.urls and doc.url and "url_dedup" not in skip:
                row["url_hash"] = url_hash(doc.url)
            if cfg.dedup.documents and "doc_dedup" not in skip:
                row["text_hash"] = text_hash(doc.text)
            if cfg.dedup.minhash.enabled and "near_dedup" not in skip:
                row["minhash"] = signature_to_bytes(signature(doc.text, cfg.dedup.minhash))
        text = doc.text
        if cfg.quality.enabled and "quality" not in skip:
            with timer.stage("quality"):
                result = check_document(text, cfg.quality)
            if not result.keep:
                row["stage"], row["reason"] = "quality", result.reason
                return row
            text = result.text
        if self.bad_words is not None and "bad_words" not in skip:
            with timer.stage("bad_words"):
                bad = self.bad_words.check(text)
            if not bad.keep:
                row["stage"], row["reason"] = "bad_words", REASON_BAD_WORDS
                return row
        if cfg.pii.enabled and "pii" not in skip:
            with timer.stage("pii"):
                pii = scan_pii(text, cfg.pii)
            if not pii.keep:
                row["stage"], row["reason"] = "pii", pii.reason
                return row
            text = pii.text
        if cfg.dedup.paragraphs.enabled and "paragraph_dedup" not in skip:
            with timer.stage("hashes"):
                row["para_hashes"] = [text_hash(p) for p in text.split("\n") if p.strip()]
        row["text"] = text
        return row


_PROCESS_MAPPER: _Mapper | None = None


def _exit_with_parent(parent_pid: int) -> None:
    """Pool initializer: end this helper process when its parent dies (a killed run must not
    leave orphans computing, or holding the parent's stdout open)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _map_in_process(config_json: str, f: InputFile, out: Path) -> tuple[int, dict[str, float]]:
    """Map one file in a pool process (the mapper, with its model, is built once per process)."""
    global _PROCESS_MAPPER
    if _PROCESS_MAPPER is None:
        _PROCESS_MAPPER = _Mapper(PipelineConfig.model_validate_json(config_json))
    timer = _Timer()
    with _progress(None, "", "doc", True) as silent:
        table = _PROCESS_MAPPER.map_file(f, timer, silent)
    _write_table(out, table)
    return table.num_rows, {**timer.seconds, **{f"{k}#docs": v for k, v in timer.docs.items()}}


def _map_phase(
    layout: Layout,
    config: PipelineConfig,
    todo: Sequence[InputFile],
    timer: _Timer,
    bar: tqdm,
    quiet: bool,
) -> None:
    """Map this worker's files: in this process, or in a pool when several CPUs are usable."""
    processes = config.processes or len(os.sched_getaffinity(0))
    processes = min(processes, len(todo))
    if processes <= 1:
        mapper = _Mapper(config) if todo else None
        for f in todo:
            assert mapper is not None
            table = mapper.map_file(f, timer, bar)
            _write_table(layout.map_table(f), table)
            if quiet:
                log.info("mapped %s (%s): %d documents", f.path, f.source, table.num_rows)
        return
    context = multiprocessing.get_context("spawn")  # no fork: the parent may hold threads
    config_json = config.model_dump_json()
    pool = ProcessPoolExecutor(
        max_workers=processes,
        mp_context=context,
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        futures = {
            pool.submit(_map_in_process, config_json, f, layout.map_table(f)): f for f in todo
        }
        for future in as_completed(futures):
            f = futures[future]
            rows, seconds = future.result()
            for key, value in seconds.items():
                if key.endswith("#docs"):
                    timer.docs[key[:-5]] += int(value)
                else:
                    timer.seconds[key] += value
            bar.update(rows)
            if quiet:
                log.info("mapped %s (%s): %d documents", f.path, f.source, rows)
    except BaseException:
        # A failure or a stop (SIGTERM): do not wait for the files being mapped (leaving the
        # pool's ``with`` waits for them); a re-run maps them again.
        _kill_pool(pool)
        raise
    pool.shutdown()


def _kill_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the pool's processes now."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
    for process in processes:
        process.join(10)


# ----------------------------------------------------------------------------------------------
# Phase 2: global dedup decisions


@dataclass
class _FileDecisions:
    """Dedup outcome for one file: ``drops[pos] = (stage, reason)``; ``removed[pos]`` the
    indices (among non-blank lines) of the duplicate paragraphs to remove."""

    drops: dict[int, tuple[str, str]] = field(default_factory=dict)
    removed: dict[int, list[int]] = field(default_factory=dict)


def _dedup_pass(
    layout: Layout, files: Sequence[InputFile], config: PipelineConfig, timer: _Timer
) -> dict[int, _FileDecisions]:
    """First occurrence in the global order wins, at every dedup level (see module doc)."""
    urls: set[bytes] = set()
    texts: set[bytes] = set()
    near = NearDuplicateIndex(config.dedup.minhash) if config.dedup.minhash.enabled else None
    para_cfg = config.dedup.paragraphs
    bloom = (
        BloomFilter(para_cfg.capacity, para_cfg.false_positive_rate) if para_cfg.enabled else None
    )
    columns = ["pos", "id", "stage", "url_hash", "text_hash", "minhash", "para_hashes"]
    decisions: dict[int, _FileDecisions] = {}
    for f in files:
        table = pq.read_table(layout.map_table(f), columns=columns).to_pydict()
        timer.docs["dedup"] += len(table["pos"])
        out = _FileDecisions()
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


def _remove_paragraphs(text: str, removed: Sequence[int]) -> str:
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


# ----------------------------------------------------------------------------------------------
# Tokenizer


def _kept_texts(
    layout: Layout, files: Sequence[InputFile], decisions: dict[int, _FileDecisions]
) -> Iterator[str]:
    for f in files:
        table = pq.read_table(layout.map_table(f), columns=["pos", "stage", "text"]).to_pydict()
        dec = decisions[f.index]
        for pos, stage, text in zip(table["pos"], table["stage"], table["text"], strict=True):
            if stage is None and pos not in dec.drops and text is not None:
                yield _remove_paragraphs(text, dec.removed.get(pos, ()))


def _settle_tokenizer(
    layout: Layout,
    config: PipelineConfig,
    files: Sequence[InputFile],
    decisions: dict[int, _FileDecisions],
    *,
    quiet: bool,
) -> None:
    """Worker 0: write the run's ``tokenizer.json`` (a copy of the chosen one, or trained)."""
    name = config.tokenizer.name
    if name == "auto":
        name = "olmo" if cached_olmo_tokenizer() is not None else "train"
    if name != "train":
        tokenizer = resolve_tokenizer(name)
        assert tokenizer is not None
        tokenizer.save(layout.tokenizer)
        return
    budget = config.tokenizer.train_max_chars

    def sample() -> Iterator[str]:
        used = 0
        for text in _kept_texts(layout, files, decisions):
            if used >= budget:
                return
            used += len(text)
            yield text

    if not quiet:
        log.info(
            "training a %d-token byte-level BPE on the kept text", config.tokenizer.train_vocab_size
        )
    trained = train_bpe(sample(), vocab_size=config.tokenizer.train_vocab_size)
    TextTokenizer.from_tokenizer(
        trained,
        eos_token_id=trained.token_to_id("<|endoftext|>"),
        pad_token_id=trained.token_to_id("<|padding|>"),
        name=TRAINED_TOKENIZER_NAME,
    ).save(layout.tokenizer)


def _load_run_tokenizer(layout: Layout, config: PipelineConfig) -> TextTokenizer:
    """The run's ``tokenizer.json``, named after where it came from (OLMo's is recognised by
    its sha256; a trained one is ``bpe-trained-on-corpus``; a given file keeps its name)."""
    spec = config.tokenizer.name
    if spec in ("auto", "train", "olmo"):
        tokenizer = TextTokenizer.from_file(layout.tokenizer)
        if tokenizer.sha256 != OLMO_TOKENIZER.sha256:
            tokenizer = TextTokenizer.from_file(layout.tokenizer, name=TRAINED_TOKENIZER_NAME)
        return tokenizer
    return TextTokenizer.from_file(layout.tokenizer, name=Path(spec).name)


# ----------------------------------------------------------------------------------------------
# Phase 3: tokenize


def _tokenize_file(
    layout: Layout,
    f: InputFile,
    config: PipelineConfig,
    decisions: _FileDecisions,
    tokenizer: TextTokenizer,
    decon: Decontaminator | None,
    timer: _Timer,
    progress: tqdm,
) -> None:
    table = pq.read_table(
        layout.map_table(f), columns=["pos", "id", "loc", "stage", "reason", "text"]
    )
    data = table.to_pydict()
    rows: dict[str, list[Any]] = {name: [] for name in _DECISION_SCHEMA.names}
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
                text = _remove_paragraphs(text, decisions.removed[pos])
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
    _write_table(layout.tok_table(f), pa.table(rows, schema=_DECISION_SCHEMA))
    _write_json(layout.tok_done(f), {"shards": [s.to_dict() for s in writer.shards]})


# ----------------------------------------------------------------------------------------------
# Phase 4: mix


def _source_rates(
    layout: Layout, config: PipelineConfig, files: Sequence[InputFile]
) -> dict[str, float]:
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


def _mix_file(
    layout: Layout,
    f: InputFile,
    config: PipelineConfig,
    rate: float,
    tokenizer: TextTokenizer,
    timer: _Timer,
) -> list[ShardInfo]:
    table = pq.read_table(layout.tok_table(f)).to_pydict()
    staged = [ShardInfo.from_dict(s) for s in _read_json(layout.tok_done(f))["shards"]]
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
    _write_table(layout.accounting_table(f), pa.table(table, schema=_DECISION_SCHEMA))
    return writer.shards


# ----------------------------------------------------------------------------------------------
# Finalize


def _summarize(
    layout: Layout, config: PipelineConfig, files: Sequence[InputFile], rates: dict[str, float]
) -> dict[str, Any]:
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
        table = pq.read_table(
            layout.accounting_table(f), columns=["stage", "reason", "tokens", "copies"]
        ).to_pydict()
        src = per_source[f.source]
        src["files"] += 1
        for stage, reason, tokens, copies in zip(
            table["stage"], table["reason"], table["tokens"], table["copies"], strict=True
        ):
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


def _finalize(
    layout: Layout,
    config: PipelineConfig,
    files: Sequence[InputFile],
    rates: dict[str, float],
    tokenizer: TextTokenizer,
) -> dict[str, Any]:
    shards: list[ShardInfo] = []
    for f in files:
        shards.extend(ShardInfo.from_dict(s) for s in _read_json(layout.final_done(f))["shards"])
    summary = _summarize(layout, config, files, rates)
    _write_json(layout.summary, summary)
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


# ----------------------------------------------------------------------------------------------
# Driver


def _wait_for(paths: Sequence[Path], what: str, timeout_s: float, quiet: bool) -> None:
    """The barrier between phases: wait until every path exists."""
    missing = [p for p in paths if not p.exists()]
    if not missing:
        return
    deadline = time.monotonic() + timeout_s
    if not quiet:
        log.info("waiting for the other workers: %d of %d %s to go", len(missing), len(paths), what)
    delay = 0.05
    while missing:
        if time.monotonic() > deadline:
            raise PipelineError(
                f"gave up after {timeout_s:.0f}s waiting for {len(missing)} {what} "
                f"(first: {missing[0]}); are all workers running (parallelism == completions)?"
            )
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
        missing = [p for p in missing if not p.exists()]


def _check_output(layout: Layout, config: PipelineConfig, files: Sequence[InputFile]) -> str:
    """Pin the run's identity in ``work/config.json``; refuse a different pipeline."""
    digest = config_hash(config)
    record = {
        "pipeline_config_hash": digest,
        "files": [[f.source, str(f.path)] for f in files],
        "dataprep_version": __version__,
    }
    if layout.config.exists():
        existing = _read_json(layout.config)
        if existing != record:
            raise PipelineError(
                f"{layout.out} holds a run of a different pipeline or input list "
                f"(hash {existing.get('pipeline_config_hash')}, this one {digest}); "
                "use another output folder or --overwrite"
            )
    elif layout.manifest.exists():
        raise PipelineError(f"{layout.out} already holds a dataset not made by this pipeline")
    else:
        _write_json(layout.config, record)
    return digest


def _progress(total: int | None, desc: str, unit: str, quiet: bool) -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        disable=quiet,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
    )


def run_pipeline(
    config: PipelineConfig,
    *,
    worker_index: int = 0,
    num_workers: int = 1,
    quiet: bool = False,
    overwrite: bool = False,
) -> RunResult:
    """Run this worker's share of the pipeline (see the module doc); worker 0 finalizes."""
    if config.output is None:
        raise PipelineError("the pipeline has no output folder")
    layout = Layout(config.output)
    if overwrite and worker_index == 0 and layout.out.exists():
        shutil.rmtree(layout.out)
    files = plan_inputs(config)
    mine = worker_files(files, worker_index, num_workers)
    layout.out.mkdir(parents=True, exist_ok=True)
    digest = _check_output(layout, config, files)
    result = RunResult(layout.out, worker_index, num_workers, len(mine), 0, False)
    if layout.manifest.exists() and read_manifest(layout.out).pipeline_config_hash == digest:
        if not quiet:
            log.info("%s is complete already (pipeline %s)", layout.out, digest[:12])
        result.skipped_files = len(mine)
        result.summary = _read_json(layout.summary) if worker_index == 0 else None
        return result
    timer = _Timer()
    timeout = config.barrier_timeout_s
    started = time.perf_counter()

    # 1. map
    todo = [f for f in mine if not layout.map_table(f).exists()]
    result.skipped_files = len(mine) - len(todo)
    with _progress(None, f"map [worker {worker_index}]", "doc", quiet) as bar:
        _map_phase(layout, config, todo, timer, bar, quiet)
    _wait_for([layout.map_table(f) for f in files], "mapped files", timeout, quiet)

    # 2. dedup, tokenizer
    with timer.stage("dedup", docs=0):
        decisions = _dedup_pass(layout, files, config, timer)
    if worker_index == 0 and not layout.tokenizer.exists():
        with timer.stage("tokenizer"):
            _settle_tokenizer(layout, config, files, decisions, quiet=quiet)
    _wait_for([layout.tokenizer], "tokenizer", timeout, quiet)
    tokenizer = _load_run_tokenizer(layout, config)

    # 3. tokenize
    decon = None
    if config.decontamination.enabled and config.decontamination.paragraph_files:
        decon = Decontaminator(min_words=config.decontamination.min_words)
        for path in config.decontamination.paragraph_files:
            with open(path, encoding="utf-8") as stream:
                for line in stream:
                    decon.add_text(line.rstrip("\n"))
    todo = [f for f in mine if not layout.tok_done(f).exists()]
    with _progress(None, f"tokenize [worker {worker_index}]", "tok", quiet) as bar:
        for f in todo:
            _tokenize_file(layout, f, config, decisions[f.index], tokenizer, decon, timer, bar)
            if quiet:
                log.info("tokenized %s", f.path)
    _wait_for([layout.tok_done(f) for f in files], "tokenized files", timeout, quiet)

    # 4. mix
    rates = _source_rates(layout, config, files)
    for f in mine:
        if layout.final_done(f).exists():
            continue
        shards = _mix_file(layout, f, config, rates[f.source], tokenizer, timer)
        _write_json(layout.final_done(f), {"shards": [s.to_dict() for s in shards]})
    if worker_index == 0:
        _wait_for([layout.final_done(f) for f in files], "mixed files", timeout, quiet)
        result.summary = _finalize(layout, config, files, rates, tokenizer)
        result.finalized = True
    result.timings = {
        "wall_s": time.perf_counter() - started,
        **{f"{k}_s": v for k, v in sorted(timer.seconds.items())},
        **{f"{k}_docs": v for k, v in sorted(timer.docs.items())},
    }
    _write_json(layout.logs / f"timings-worker{worker_index}.json", result.timings)
    return result


def load_accounting(out: str | Path) -> pa.Table:
    """The per-document decisions of a finished dataset, all files in order."""
    files = sorted((Path(out) / "accounting").glob("f*.parquet"))
    if not files:
        raise FileNotFoundError(f"{out}: no accounting tables (is this a dataprep output?)")
    return pa.concat_tables(pq.read_table(p) for p in files)
