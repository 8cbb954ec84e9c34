"""Running one worker's share of a pipeline: the four phases with a file barrier after each
(see the package doc), the output folder's pinned identity, resume and the worker's timings."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmo.data.shards import read_manifest
from olmo.storage import is_remote

from .. import __version__
from ..config import PipelineConfig, config_hash
from ..decontam import load_decontaminator
from .dedup_phase import dedup_pass
from .finalize import finalize
from .map_phase import run_map_phase
from .mix_phase import mix_file, source_rates
from .plan import InputFile, Layout, PipelineError, plan_inputs, worker_files
from .progress import StageTimer, progress_bar
from .publish import Publisher, staging_dir
from .run_tokenizer import load_run_tokenizer, settle_tokenizer, trains_tokenizer
from .tables import read_json, write_json
from .tokenize_phase import tokenize_file

log = logging.getLogger("olmo_dataprep")


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
    uri: str | None = None
    """The output on an object store (``out`` is then the local staging folder)."""


def _wait_for(
    paths: Sequence[Path], what: str, timeout_s: float, quiet: bool, hint: str = ""
) -> None:
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
                + hint
            )
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
        missing = [p for p in missing if not p.exists()]


def _check_output(
    layout: Layout, config: PipelineConfig, files: Sequence[InputFile], decontamination: str | None
) -> str:
    """Pin the run's identity in ``work/config.json``; refuse a different pipeline (or the same
    one with another decontamination set, e.g. after the eval data changed)."""
    digest = config_hash(config)
    record = {
        "pipeline_config_hash": digest,
        "files": [[f.source, str(f.path)] for f in files],
        "dataprep_version": __version__,
        "decontamination_id": decontamination,
    }
    if layout.config.exists():
        existing = read_json(layout.config)
        if existing != record:
            raise PipelineError(
                f"{layout.out} holds a run of a different pipeline or input list "
                f"(hash {existing.get('pipeline_config_hash')}, this one {digest}); "
                "use another output folder or --overwrite"
            )
    elif layout.manifest.exists():
        raise PipelineError(f"{layout.out} already holds a dataset not made by this pipeline")
    else:
        write_json(layout.config, record)
    return digest


def run_pipeline(
    config: PipelineConfig,
    *,
    worker_index: int = 0,
    num_workers: int = 1,
    quiet: bool = False,
    overwrite: bool = False,
) -> RunResult:
    """Run this worker's share of the pipeline (see the package doc); worker 0 finalizes."""
    if config.output is None:
        raise PipelineError("the pipeline has no output folder")
    remote = is_remote(config.output)
    layout = Layout(staging_dir(config.output) if remote else config.output)
    publisher = Publisher(config.output, layout) if remote else None
    if overwrite and worker_index == 0:
        if layout.out.exists():
            shutil.rmtree(layout.out)
        if publisher is not None:
            publisher.remote.remove()
    files = plan_inputs(config)
    mine = worker_files(files, worker_index, num_workers)
    # The decontamination set before any work: without it (no eval data) the run fails now.
    decon, decon_info = load_decontaminator(config)
    layout.out.mkdir(parents=True, exist_ok=True)
    digest = _check_output(layout, config, files, decon_info.get("id"))
    result = RunResult(layout.out, worker_index, num_workers, len(mine), 0, False)
    result.uri = config.output if remote else None
    if publisher is not None and (published := publisher.remote_manifest()) is not None:
        if published.pipeline_config_hash != digest:
            raise PipelineError(
                f"{config.output} already holds a dataset of a different pipeline (hash "
                f"{published.pipeline_config_hash}, this one {digest}); use another output or "
                "--overwrite"
            )
        if not quiet:
            log.info("%s is complete already (pipeline %s)", config.output, digest[:12])
        result.skipped_files = len(mine)
        result.summary = publisher.remote_summary() if worker_index == 0 else None
        return result
    if layout.manifest.exists() and read_manifest(layout.out).pipeline_config_hash == digest:
        if publisher is not None and worker_index == 0:  # finished here, not yet published
            publisher.finish()
        if not quiet:
            log.info("%s is complete already (pipeline %s)", result.uri or layout.out, digest[:12])
        result.skipped_files = len(mine)
        result.summary = read_json(layout.summary) if worker_index == 0 else None
        return result
    timer = StageTimer()
    timeout = config.barrier_timeout_s
    hint = (
        f" With an object-store output the workers meet in the local staging folder "
        f"({layout.out}): every worker needs the same one (OLMO_STAGING_DIR on a shared volume)"
        if remote and num_workers > 1
        else ""
    )
    started = time.perf_counter()

    # 1. map
    todo = [f for f in mine if not layout.map_table(f).exists()]
    result.skipped_files = len(mine) - len(todo)
    with progress_bar(None, f"map [worker {worker_index}]", "doc", quiet) as bar:
        run_map_phase(layout, config, todo, timer, bar, quiet)
    _wait_for([layout.map_table(f) for f in files], "mapped files", timeout, quiet, hint)

    # 2. dedup, tokenizer (decisions kept for this worker's files, all when training on them)
    settles = worker_index == 0 and not layout.tokenizer.exists()
    keep = None if settles and trains_tokenizer(config) else {f.index for f in mine}
    with timer.stage("dedup", docs=0):
        decisions = dedup_pass(
            layout,
            files,
            config,
            timer,
            keep,
            worker_index=worker_index,
            num_workers=num_workers,
            wait=lambda paths, what: _wait_for(paths, what, timeout, quiet, hint),
        )
    if settles:
        with timer.stage("tokenizer"):
            settle_tokenizer(layout, config, files, decisions, quiet=quiet)
    _wait_for([layout.tokenizer], "tokenizer", timeout, quiet, hint)
    tokenizer = load_run_tokenizer(layout, config)

    # 3. tokenize
    todo = [f for f in mine if not layout.tok_done(f).exists()]
    with progress_bar(None, f"tokenize [worker {worker_index}]", "tok", quiet) as bar:
        for f in todo:
            tokenize_file(layout, f, config, decisions[f.index], tokenizer, decon, timer, bar)
            if quiet:
                log.info("tokenized %s", f.path)
    _wait_for([layout.tok_done(f) for f in files], "tokenized files", timeout, quiet, hint)

    # 4. mix
    rates = source_rates(layout, config, files)
    for f in mine:
        if layout.final_done(f).exists():
            continue
        shards = mix_file(layout, f, config, rates[f.source], tokenizer, timer)
        if publisher is not None:  # uploaded before the file is marked done
            with timer.stage("upload", docs=0):
                publisher.file_done(f, shards)
        write_json(layout.final_done(f), {"shards": [s.to_dict() for s in shards]})
    if worker_index == 0:
        _wait_for([layout.final_done(f) for f in files], "mixed files", timeout, quiet, hint)
        result.summary = finalize(layout, config, files, rates, tokenizer, decon_info)
        if publisher is not None:
            with timer.stage("upload", docs=0):
                publisher.finish()  # manifest.json last
        result.finalized = True
    result.timings = {
        "wall_s": time.perf_counter() - started,
        **{f"{k}_s": v for k, v in sorted(timer.seconds.items())},
        **{f"{k}_docs": v for k, v in sorted(timer.docs.items())},
    }
    write_json(layout.logs / f"timings-worker{worker_index}.json", result.timings)
    if publisher is not None:
        publisher.upload_logs()
    return result
