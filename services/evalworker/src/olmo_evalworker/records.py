"""What the eval worker keeps on disk next to a run, besides the layout's own files.

The checkpoint layout (``olmo.checkpoints.layout``, DESIGN contract 3) owns ``RUN_DIR/eval/
stepNNNNNN.json`` and the ``EVALUATED`` marker. The worker adds, all under ``RUN_DIR/eval/``:

- ``stepNNNNNN.failed.json``: why the last attempts at a checkpoint failed (one record per
  checkpoint, rewritten on every failed attempt, removed when an attempt succeeds);
- ``metrics.jsonl``: one flat JSON line per evaluated checkpoint (the same numbers W&B gets);
- ``wandb-id``: the W&B run id of this run dir's eval run, so restarts resume it;
- ``worker.lock``: held (``flock``) by the one worker watching the run dir.

A checkpoint's identity is the sha256 of its ``COMPLETE`` marker (which lists the sha256 of
every file): results and failure records carry it, so a record left by an earlier checkpoint
that had the same step (a run restarted from scratch into the same folder) is never mistaken
for one about the current checkpoint.

Results also name the decontamination set the checkpoint's training data were prepared with
(``training_decontamination``): data-prep records it in the ``summary.json`` beside each
dataset's ``manifest.json``, and the checkpoint's ``config.yaml`` names the datasets
(``data.paths``).

A run directory may be on an object store (``s3://bucket/runs/x``): then every one of these files
is an object under ``RUN/eval/`` (written whole by one PUT; ``metrics.jsonl`` is rewritten whole
to append, as only the one worker of a run writes it), and the worker's local files (the lock,
the downloaded checkpoint, W&B's files) live in its cache folder (``cache_dir``). The functions
here take and return a ``Path`` for a local run directory and an ``olmo.storage.Location`` for
one on a store (``Where``: both have ``/``, ``name``, ``exists``, ``read_text``).

Standard library and PyYAML only (plus the torch-free ``olmo.checkpoints``, ``olmo.fileio`` and
``olmo.storage``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from olmo.checkpoints import layout
from olmo.fileio import write_atomic
from olmo.json_records import read_json_object
from olmo.storage import Location, is_remote, location

__all__ = [
    "FAILED_SUFFIX",
    "LOCK_FILE",
    "METRICS_FILE",
    "WANDB_ID_FILE",
    "append_metrics_line",
    "cache_dir",
    "checkpoint_path",
    "complete_sha256",
    "decontamination_names",
    "download_checkpoint",
    "eval_dir",
    "failure_path",
    "flat_metrics",
    "headlines",
    "local_dir",
    "metrics_path",
    "read_json",
    "read_metrics",
    "remove",
    "results_path",
    "run_root",
    "training_decontamination",
    "verification_problem",
    "write_json",
]

FAILED_SUFFIX = ".failed.json"
METRICS_FILE = "metrics.jsonl"
WANDB_ID_FILE = "wandb-id"
LOCK_FILE = "worker.lock"
DATA_SUMMARY = "summary.json"
"""What data-prep writes beside ``manifest.json``; its ``decontamination`` record names the set."""
_DECONTAMINATION_KEYS = ("enabled", "name", "id", "paragraphs", "min_words", "documents_removed")
STAGING_ENV = "OLMO_STAGING_DIR"
"""Local scratch of pods that use object storage: where a checkpoint is downloaded to."""

Where = Path | Location
PathOrUri = str | os.PathLike[str] | Location


def run_root(path: PathOrUri) -> Where:
    """A run directory or checkpoint folder as a ``Path`` (local) or a ``Location`` (a URI)."""
    if isinstance(path, Location):
        return path if path.is_remote else Path(path.uri)
    text = os.fspath(path)
    return location(text) if is_remote(text) else Path(text)


def eval_dir(run_dir: PathOrUri) -> Where:
    """``RUN_DIR/eval`` (the layout's ``EVAL_DIR``)."""
    return run_root(run_dir) / layout.EVAL_DIR


def failure_path(run_dir: PathOrUri, step: int) -> Where:
    """``RUN_DIR/eval/stepNNNNNN.failed.json``."""
    return eval_dir(run_dir) / f"{layout.step_dir_name(step)}{FAILED_SUFFIX}"


def metrics_path(run_dir: PathOrUri) -> Where:
    """``RUN_DIR/eval/metrics.jsonl``."""
    return eval_dir(run_dir) / METRICS_FILE


def results_path(run_dir: PathOrUri, step: int) -> Where:
    """``RUN_DIR/eval/stepNNNNNN.json`` (the layout's ``eval_result_path``)."""
    return eval_dir(run_dir) / f"{layout.step_dir_name(step)}.json"


def checkpoint_path(run_dir: PathOrUri, step: int) -> Where:
    """``RUN_DIR/checkpoints/stepNNNNNN``."""
    return run_root(run_dir) / layout.CHECKPOINTS_DIR / layout.step_dir_name(step)


def cache_dir(run_dir: PathOrUri, root: str | os.PathLike[str] | None = None) -> Path:
    """The local folder of a worker watching a run on a store: ``ROOT/<bucket-prefix-hash>``,
    ROOT being ``root``, else ``$OLMO_STAGING_DIR``, else ``TMPDIR/olmo-eval``. It holds the
    worker lock, W&B's files and (under ``checkpoints/``) the one checkpoint being evaluated."""
    base = Path(root or os.environ.get(STAGING_ENV) or Path(tempfile.gettempdir()) / "olmo-eval")
    uri = str(run_root(run_dir))
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", uri.split("://", 1)[-1]).strip("-")[-80:]
    return base / f"{name}-{hashlib.sha256(uri.encode()).hexdigest()[:8]}"


def local_dir(run_dir: PathOrUri, cache: str | os.PathLike[str] | None = None) -> Path:
    """Where the worker keeps its local files (the lock, W&B's): ``RUN_DIR/eval`` for a local
    run dir, ``cache_dir(run_dir, cache)`` for one on a store."""
    root = run_root(run_dir)
    return cache_dir(root, cache) if isinstance(root, Location) else root / layout.EVAL_DIR


def download_checkpoint(ckpt: Location, cache: Path) -> Path:
    """A local copy of the checkpoint ``ckpt`` as ``CACHE/checkpoints/stepNNNNNN``, every file
    sha256-checked (ValueError otherwise, or when ``ckpt`` is not complete), after removing
    whatever an earlier worker left there: the cache holds one checkpoint at most."""
    from olmo.checkpoints import objectstore
    from olmo.checkpoints.folders import remove_tree

    folder = cache / layout.CHECKPOINTS_DIR
    if folder.exists():
        remove_tree(folder)
    folder.mkdir(parents=True)
    return objectstore.download_checkpoint(ckpt, folder)


def read_json(where: Where) -> dict[str, Any] | None:
    """A JSON object file's content, on disk or on a store; None if missing or not an object."""
    if not isinstance(where, Location):
        return read_json_object(where)
    try:
        data = json.loads(where.read_bytes())
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def remove(where: Where) -> None:
    """Delete a file on disk or on a store; a missing one is fine."""
    if isinstance(where, Location):
        where.remove()
    else:
        with contextlib.suppress(FileNotFoundError):
            where.unlink()


def complete_sha256(ckpt_dir: PathOrUri) -> str | None:
    """sha256 of the checkpoint's ``COMPLETE`` marker bytes (its identity); None if unreadable."""
    try:
        return hashlib.sha256((run_root(ckpt_dir) / layout.COMPLETE).read_bytes()).hexdigest()
    except OSError:
        return None


def verification_problem(ckpt_dir: PathOrUri) -> str | None:
    """None when every file ``COMPLETE`` lists exists with its recorded sha256; else why not.

    The worker checks this itself before calling any evaluator, so a checkpoint whose files
    changed after it was written is never marked ``EVALUATED``, whatever the evaluator reads.
    """
    return layout.completeness_problem(ckpt_dir, verify=True)


def write_json(path: str | os.PathLike[str] | Location, data: Mapping[str, Any]) -> None:
    """Atomically write ``data`` as indented JSON (readers never see a partial file; on a store
    one PUT is visible whole)."""
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if isinstance(path, Location):
        path.write_text(text)
    else:
        write_atomic(path, text)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def headlines(results: Mapping[str, Any]) -> dict[str, float]:
    """``{task: headline accuracy}`` of an evaluation result."""
    tasks = results.get("tasks") or {}
    return {
        name: float(t["headline"])
        for name, t in tasks.items()
        if isinstance(t, Mapping) and _finite(t.get("headline"))
    }


def flat_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """One flat ``{name: number}`` view of a result, the names the trainer's in-loop eval uses:
    ``eval/<task>/headline``, ``eval/<task>/acc_<norm>``, ``eval/ppl/<source>/perplexity``,
    ``eval/ppl/<source>/bits_per_byte`` (source ``aggregate`` pools all sources)."""
    flat: dict[str, float] = {}
    for name, task in (results.get("tasks") or {}).items():
        if not isinstance(task, Mapping):
            continue
        if _finite(task.get("headline")):
            flat[f"eval/{name}/headline"] = float(task["headline"])
        for norm, value in (task.get("acc") or {}).items():
            if _finite(value):
                flat[f"eval/{name}/acc_{norm}"] = float(value)
    ppl = results.get("perplexity") or {}
    sources = dict(ppl.get("sources") or {})
    if ppl.get("aggregate"):
        sources["aggregate"] = ppl["aggregate"]
    for source, values in sources.items():
        for key in ("perplexity", "bits_per_byte"):
            if isinstance(values, Mapping) and _finite(values.get(key)):
                flat[f"eval/ppl/{source}/{key}"] = float(values[key])
    return flat


def read_metrics(run_dir: PathOrUri) -> list[dict[str, Any]]:
    """The lines of ``metrics.jsonl`` (unparsable lines, e.g. a torn last line, are skipped)."""
    try:
        text = metrics_path(run_dir).read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return []
    lines = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            lines.append(data)
    return lines


def append_metrics_line(run_dir: PathOrUri, line: Mapping[str, Any]) -> bool:
    """Append ``line`` to ``metrics.jsonl`` unless a line for the same checkpoint (step and
    ``complete_sha256``) is already there; True if appended. Idempotent, so the worker can
    redo this step after a crash."""
    key = (line.get("step"), line.get("complete_sha256"))
    if any((m.get("step"), m.get("complete_sha256")) == key for m in read_metrics(run_dir)):
        return False
    path = metrics_path(run_dir)
    text = json.dumps(line, sort_keys=True) + "\n"
    if isinstance(path, Location):  # no append on a store: rewrite it whole (one writer)
        try:
            old = path.read_text()
        except FileNotFoundError:
            old = ""
        path.write_text(old + ("\n" if old and not old.endswith("\n") else "") + text)
        return True
    with open(path, "a+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:  # a crash mid-append can leave a line without its newline
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                text = "\n" + text
        f.write(text.encode())
        f.flush()
        os.fsync(f.fileno())
    return True


def _data_folders(checkpoint: Path) -> list[tuple[str, Where | None]]:
    """``(data path as configured, its folder or None when not found)`` for each of the run
    config's ``data.paths`` (relative paths: as given, then relative to the run dir; a URI is
    looked up on its store)."""
    import yaml

    try:
        config = yaml.safe_load((checkpoint / layout.CONFIG_FILE).read_text()) or {}
        paths = config.get("data", {}).get("paths", []) or []
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return []
    run_dir = checkpoint.parent.parent
    out: list[tuple[str, Where | None]] = []
    for raw in paths:
        if is_remote(str(raw)):
            out.append((str(raw), _remote_data_folder(str(raw))))
            continue
        data = Path(str(raw))
        candidates = [data] if data.is_absolute() else [data, run_dir / data]
        found = None
        for candidate in candidates:
            if candidate.exists():
                found = candidate if candidate.is_dir() else candidate.parent
                break
        out.append((str(raw), found))
    return out


def _remote_data_folder(uri: str) -> Location | None:
    try:
        data = location(uri)
        return data.parent if data.is_file() else data if data.exists() else None
    except Exception:  # an unreachable store: reported as "not found"
        return None


def training_decontamination(checkpoint: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Which decontamination set the checkpoint's training data were prepared with, from the
    data-prep ``summary.json`` beside each of the run config's datasets::

        {"sets": ["olmo-core9-1a2b3c4d"],             # distinct set names, sorted
         "data": [{"path": ..., "enabled": true, "name": ..., "id": ..., "paragraphs": ...,
                   "min_words": 13, "documents_removed": 5}]}

    A dataset without that record has ``name: null`` and a ``note`` saying why (not a data-prep
    output, or prepared before sets were recorded); ``enabled: false`` means it was prepared
    with the stage off. None when the checkpoint has no run config (e.g. an HF directory)."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / layout.CONFIG_FILE).is_file():
        return None
    data: list[dict[str, Any]] = []
    for raw, folder in _data_folders(checkpoint):
        entry: dict[str, Any] = {"path": raw, "name": None}
        summary = None
        if folder is None:
            entry["note"] = "not found"
        else:
            entry["path"] = str(folder)
            try:
                summary = json.loads((folder / DATA_SUMMARY).read_text())
            except (OSError, ValueError):
                entry["note"] = f"no readable {DATA_SUMMARY} (not a data-prep output)"
        if isinstance(summary, dict):
            record = summary.get("decontamination")
            if isinstance(record, Mapping):
                entry.update({k: record[k] for k in _DECONTAMINATION_KEYS if k in record})
            else:
                entry["note"] = f"{DATA_SUMMARY} has no decontamination record (older data-prep)"
        data.append(entry)
    return {"sets": decontamination_names({"data": data}), "data": data}


def decontamination_names(record: Mapping[str, Any] | None) -> list[str]:
    """The distinct set names of a ``training_decontamination`` record, sorted."""
    if not isinstance(record, Mapping):
        return []
    names = {d.get("name") for d in record.get("data") or [] if isinstance(d, Mapping)}
    return sorted(n for n in names if isinstance(n, str))
