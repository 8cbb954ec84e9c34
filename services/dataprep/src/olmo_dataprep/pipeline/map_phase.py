"""Phase 1, map (per file, parallel): read, language ID, hashes (URL, normalised text,
paragraphs, MinHash) and the per-document stages that need no other document (quality, bad
words, PII masking) → ``work/map/fNNNNNN.parquet``, written one row group at a time as the file
is read (``tables.TableWriter``: at most ``GROUP_ROWS`` rows or ``GROUP_TEXT_CHARS`` characters of
text held), renamed into place when complete. Within a worker the files are mapped in a process
pool when several CPUs are usable; a stop (SIGTERM) kills the pool rather than waiting for it."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..badwords import REASON_BAD_WORDS, BadWordsFilter
from ..config import PipelineConfig
from ..content import scan_pii
from ..dedup import text_hash, url_hash
from ..langid import REASON_LANGUAGE, LanguageIdentifier
from ..minhash import signature, signature_to_bytes
from ..quality import check_document
from ..readers import Document, ReadError, generated_id, read_documents
from .plan import InputFile, Layout
from .progress import StageTimer, progress_bar
from .tables import GROUP_ROWS, GROUP_TEXT_CHARS, MAP_SCHEMA, TableWriter

log = logging.getLogger("olmo_dataprep")


class Mapper:
    """The per-document stages that need no other document."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.langid = LanguageIdentifier() if config.langid.enabled else None
        self.bad_words = BadWordsFilter(config.bad_words) if config.bad_words.enabled else None

    def map_file(self, f: InputFile, out: Path, timer: StageTimer, progress: tqdm) -> int:
        """Map one file into the table ``out`` (written as it goes); return its row count."""
        cfg = self.config
        items = read_documents(
            f.path,
            source=f.source,
            max_chars=cfg.read.max_chars,
            max_file_bytes=cfg.read.max_file_bytes,
        )
        with TableWriter(out, MAP_SCHEMA) as table:
            rows: dict[str, list[Any]] = {name: [] for name in MAP_SCHEMA.names}
            chars = 0
            pos = 0
            while True:
                with timer.stage("read"):
                    item = next(items, None)
                if item is None:
                    break
                row = self._map_item(f, item, timer)
                row["pos"] = pos
                pos += 1
                for name in MAP_SCHEMA.names:
                    rows[name].append(row.get(name))
                chars += len(row.get("text") or "")
                progress.update(1)
                if pos % GROUP_ROWS == 0 or chars >= GROUP_TEXT_CHARS:
                    table.write(rows)
                    rows = {name: [] for name in MAP_SCHEMA.names}
                    chars = 0
            table.write(rows)
        return pos

    def _map_item(
        self, f: InputFile, item: Document | ReadError, timer: StageTimer
    ) -> dict[str, Any]:
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


_PROCESS_MAPPER: Mapper | None = None


def exit_with_parent(parent_pid: int) -> None:
    """Pool initializer: end this helper process when its parent dies (a killed run must not
    leave orphans computing, or holding the parent's stdout open)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def map_in_process(config_json: str, f: InputFile, out: Path) -> tuple[int, dict[str, float]]:
    """Map one file in a pool process (the mapper, with its model, is built once per process)."""
    global _PROCESS_MAPPER
    if _PROCESS_MAPPER is None:
        _PROCESS_MAPPER = Mapper(PipelineConfig.model_validate_json(config_json))
    timer = StageTimer()
    with progress_bar(None, "", "doc", True) as silent:
        rows = _PROCESS_MAPPER.map_file(f, out, timer, silent)
    return rows, {**timer.seconds, **{f"{k}#docs": v for k, v in timer.docs.items()}}


def run_map_phase(
    layout: Layout,
    config: PipelineConfig,
    todo: Sequence[InputFile],
    timer: StageTimer,
    bar: tqdm,
    quiet: bool,
) -> None:
    """Map this worker's files: in this process, or in a pool when several CPUs are usable."""
    processes = config.processes or len(os.sched_getaffinity(0))
    processes = min(processes, len(todo))
    if processes <= 1:
        mapper = Mapper(config) if todo else None
        for f in todo:
            assert mapper is not None
            rows = mapper.map_file(f, layout.map_table(f), timer, bar)
            if quiet:
                log.info("mapped %s (%s): %d documents", f.path, f.source, rows)
        return
    context = multiprocessing.get_context("spawn")  # no fork: the parent may hold threads
    config_json = config.model_dump_json()
    pool = ProcessPoolExecutor(
        max_workers=processes,
        mp_context=context,
        initializer=exit_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        futures = {
            pool.submit(map_in_process, config_json, f, layout.map_table(f)): f for f in todo
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
        kill_pool(pool)
        raise
    pool.shutdown()


def kill_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the pool's processes now."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
    for process in processes:
        process.join(10)
